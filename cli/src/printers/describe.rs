//! `describe` text in kubectl's layout: tab-separated lines run through Go's tabwriter rules
//! (minwidth 0, padding 2), so nested sections align the way kubectl's do.

use std::collections::BTreeMap;

use corral_api::k8s::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use corral_api::k8s::api::core::v1::{
    Container, ContainerState, ContainerStatus, Endpoints, Event, Node, Pod, PodTemplateSpec,
    Service,
};
use corral_api::k8s::api::networking::v1::Ingress;
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use jiff::Timestamp;
use serde_json::Value;

use super::cluster::{event_count, event_last_seen, node_roles};
use super::format::{label_selector, rfc1123z, since};
use super::network::format_endpoints;
use super::table::elastic;

/// What `describe` fetched besides the object itself.
#[derive(Debug, Clone, Default)]
pub struct Related {
    /// Events whose involvedObject is the object.
    pub events: Vec<Event>,
    /// Pods selected by a controller, or running on a node.
    pub pods: Vec<Pod>,
    /// ReplicaSets owned by a Deployment.
    pub replicasets: Vec<ReplicaSet>,
    /// The Endpoints of a Service.
    pub endpoints: Option<Endpoints>,
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Accumulates tab-separated lines; `finish` aligns them.
#[derive(Default)]
struct Doc(String);

impl Doc {
    fn w(&mut self, level: usize, text: &str) {
        for _ in 0..level {
            self.0.push_str("  ");
        }
        self.0.push_str(text);
    }
    fn kv(&mut self, level: usize, key: &str, value: impl std::fmt::Display) {
        self.w(level, &format!("{key}:\t{value}\n"));
    }
    fn map(
        &mut self,
        prefix: &str,
        title: &str,
        map: Option<&BTreeMap<String, String>>,
        sep: &str,
    ) {
        self.0.push_str(&format!("{prefix}{title}:\t"));
        let entries: Vec<_> = map
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != LAST_APPLIED)
            .collect();
        if entries.is_empty() {
            self.0.push_str("<none>\n");
            return;
        }
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                self.0.push_str(&format!("{prefix}\t"));
            }
            self.0.push_str(&format!("{k}{sep}{v}\n"));
        }
    }
    fn labels(&mut self, prefix: &str, title: &str, map: Option<&BTreeMap<String, String>>) {
        self.map(prefix, title, map, "=");
    }
    fn annotations(&mut self, prefix: &str, map: Option<&BTreeMap<String, String>>) {
        self.map(prefix, "Annotations", map, ": ");
    }
    fn finish(self) -> String {
        elastic(&self.0, 0, 2)
    }
}

fn time_or_unset(t: Option<&corral_api::k8s::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    t.map(rfc1123z).unwrap_or_else(|| "<unset>".into())
}

fn controlled_by(doc: &mut Doc, meta: &ObjectMeta) {
    if let Some(o) = corral_api::object::controller_of(meta.owner_references.as_ref()) {
        doc.kv(0, "Controlled By", format!("{}/{}", o.kind, o.name));
    }
}

fn ports(c: &Container, host: bool) -> String {
    c.ports
        .iter()
        .flatten()
        .map(|p| {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            let n = if host {
                p.host_port.unwrap_or(0)
            } else {
                p.container_port
            };
            format!("{n}/{proto}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn state(doc: &mut Doc, title: &str, s: &ContainerState) {
    if let Some(r) = &s.running {
        doc.kv(2, title, "Running");
        doc.kv(3, "Started", time_or_unset(r.started_at.as_ref()));
    } else if let Some(t) = &s.terminated {
        doc.kv(2, title, "Terminated");
        if let Some(r) = t.reason.as_ref().filter(|r| !r.is_empty()) {
            doc.kv(3, "Reason", r);
        }
        if let Some(m) = t.message.as_ref().filter(|m| !m.is_empty()) {
            doc.kv(3, "Message", m);
        }
        doc.kv(3, "Exit Code", t.exit_code);
        if let Some(sig) = t.signal.filter(|s| *s > 0) {
            doc.kv(3, "Signal", sig);
        }
        doc.kv(3, "Started", time_or_unset(t.started_at.as_ref()));
        doc.kv(3, "Finished", time_or_unset(t.finished_at.as_ref()));
    } else {
        doc.kv(2, title, "Waiting");
        if let Some(r) = s
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_ref())
            .filter(|r| !r.is_empty())
        {
            doc.kv(3, "Reason", r);
        }
    }
}

/// kubectl's `describeContainers`; `space` is the extra indent used inside pod templates.
fn containers(
    doc: &mut Doc,
    title: &str,
    list: &[Container],
    statuses: &[ContainerStatus],
    space: &str,
) {
    doc.0.push_str(&format!("{space}{title}:\n"));
    for c in list {
        let status = statuses.iter().find(|s| s.name == c.name);
        // kubectl indents a template's container names by one extra space.
        let name_indent = if space.is_empty() { "" } else { " " };
        doc.0.push_str(&format!("  {name_indent}{}:\n", c.name));
        if let Some(id) = status.and_then(|s| s.container_id.as_ref()) {
            doc.kv(2, "Container ID", id);
        }
        doc.kv(2, "Image", c.image.as_deref().unwrap_or(""));
        if let Some(s) = status {
            doc.kv(2, "Image ID", &s.image_id);
        }
        let p = ports(c, false);
        if p.contains(',') {
            doc.kv(2, "Ports", p);
        } else {
            doc.kv(2, "Port", if p.is_empty() { "<none>".into() } else { p });
        }
        let hp = ports(c, true);
        if hp.contains(',') {
            doc.kv(2, "Host Ports", hp);
        } else {
            doc.kv(
                2,
                "Host Port",
                if hp.is_empty() { "<none>".into() } else { hp },
            );
        }
        if let Some(cmd) = c.command.as_ref().filter(|c| !c.is_empty()) {
            doc.w(2, "Command:\n");
            for part in cmd {
                doc.w(3, &format!("{part}\n"));
            }
        }
        if let Some(args) = c.args.as_ref().filter(|a| !a.is_empty()) {
            doc.w(2, "Args:\n");
            for part in args {
                doc.w(3, &format!("{part}\n"));
            }
        }
        if let Some(s) = status {
            if let Some(st) = &s.state {
                state(doc, "State", st);
            } else {
                doc.kv(2, "State", "Waiting");
            }
            if let Some(last) = s.last_state.as_ref().filter(|l| l.terminated.is_some()) {
                state(doc, "Last State", last);
            }
            doc.kv(2, "Ready", if s.ready { "True" } else { "False" });
            doc.kv(2, "Restart Count", s.restart_count);
        }
        if let Some(res) = &c.resources {
            for (title, map) in [("Limits", &res.limits), ("Requests", &res.requests)] {
                if let Some(m) = map.as_ref().filter(|m| !m.is_empty()) {
                    doc.w(2, &format!("{title}:\n"));
                    for (k, q) in m {
                        doc.kv(3, k, &q.0);
                    }
                }
            }
        }
        let env = c.env.clone().unwrap_or_default();
        if env.is_empty() {
            doc.kv(2, "Environment", "<none>");
        } else {
            doc.w(2, "Environment:\n");
            for e in env {
                let v = e.value.unwrap_or_else(|| {
                    if e.value_from.is_some() {
                        "<set from a reference>".into()
                    } else {
                        String::new()
                    }
                });
                doc.kv(3, &e.name, v);
            }
        }
        let mounts = c.volume_mounts.clone().unwrap_or_default();
        if mounts.is_empty() {
            doc.kv(2, "Mounts", "<none>");
        } else {
            doc.w(2, "Mounts:\n");
            for m in mounts {
                let rw = if m.read_only == Some(true) {
                    "ro"
                } else {
                    "rw"
                };
                doc.w(3, &format!("{} from {} ({rw})\n", m.mount_path, m.name));
            }
        }
    }
}

fn volumes(doc: &mut Doc, spec: &corral_api::k8s::api::core::v1::PodSpec, space: &str) {
    let vols = spec.volumes.clone().unwrap_or_default();
    if vols.is_empty() {
        doc.0.push_str(&format!("{space}Volumes:\t<none>\n"));
        return;
    }
    doc.0.push_str(&format!("{space}Volumes:\n"));
    for v in vols {
        doc.0.push_str(&format!("{space}  {}:\n", v.name));
        let (typ, detail) = if let Some(e) = &v.empty_dir {
            (
                "EmptyDir (a temporary directory that shares a pod's lifetime)",
                format!("Medium:\t{}", e.medium.clone().unwrap_or_default()),
            )
        } else if let Some(h) = &v.host_path {
            (
                "HostPath (bare host directory volume)",
                format!("Path:\t{}", h.path),
            )
        } else if let Some(c) = &v.persistent_volume_claim {
            ("PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)", format!("ClaimName:\t{}", c.claim_name))
        } else if let Some(c) = &v.config_map {
            (
                "ConfigMap (a volume populated by a ConfigMap)",
                format!("Name:\t{}", c.name),
            )
        } else {
            ("<unknown>", String::new())
        };
        doc.0.push_str(&format!("{space}    Type:\t{typ}\n"));
        if !detail.is_empty() {
            doc.0.push_str(&format!("{space}    {detail}\n"));
        }
    }
}

fn pod_template(doc: &mut Doc, t: Option<&PodTemplateSpec>) {
    doc.w(0, "Pod Template:\n");
    let Some(t) = t else {
        doc.w(1, "<unset>\n");
        return;
    };
    let meta = t.metadata.clone().unwrap_or_default();
    doc.labels("  ", "Labels", meta.labels.as_ref());
    if meta.annotations.as_ref().is_some_and(|a| !a.is_empty()) {
        doc.annotations("  ", meta.annotations.as_ref());
    }
    let spec = t.spec.clone().unwrap_or_default();
    if let Some(sa) = spec.service_account_name.as_ref().filter(|s| !s.is_empty()) {
        doc.kv(1, "Service Account", sa);
    }
    if let Some(init) = spec.init_containers.as_ref().filter(|c| !c.is_empty()) {
        containers(doc, "Init Containers", init, &[], "  ");
    }
    containers(doc, "Containers", &spec.containers, &[], "  ");
    volumes(doc, &spec, "  ");
    doc.labels("  ", "Node-Selectors", spec.node_selector.as_ref());
    tolerations(doc, "  ", &spec);
}

fn tolerations(doc: &mut Doc, prefix: &str, spec: &corral_api::k8s::api::core::v1::PodSpec) {
    let list = spec.tolerations.clone().unwrap_or_default();
    doc.0.push_str(&format!("{prefix}Tolerations:\t"));
    if list.is_empty() {
        doc.0.push_str("<none>\n");
        return;
    }
    for (i, t) in list.iter().enumerate() {
        if i > 0 {
            doc.0.push_str(&format!("{prefix}\t"));
        }
        let mut s = t.key.clone().unwrap_or_default();
        if let Some(v) = t.value.as_ref().filter(|v| !v.is_empty()) {
            s.push_str(&format!("={v}"));
        } else if t.operator.as_deref() == Some("Exists") && s.is_empty() {
            s = "op=Exists".into();
        } else if t.operator.as_deref() == Some("Exists") {
            s.push_str(" op=Exists");
        }
        if let Some(e) = t.effect.as_ref().filter(|e| !e.is_empty()) {
            s.push_str(&format!(":{e}"));
        }
        if let Some(secs) = t.toleration_seconds {
            s.push_str(&format!(" for {secs}s"));
        }
        doc.0.push_str(&format!("{s}\n"));
    }
}

/// The Events section: `<none>`, or kubectl's table sorted by time.
fn events(doc: &mut Doc, evs: &[Event], now: Timestamp) {
    if evs.is_empty() {
        doc.0.push_str("Events:\t<none>\n");
        return;
    }
    let mut evs = evs.to_vec();
    evs.sort_by_key(event_last_seen);
    doc.0
        .push_str("Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    doc.w(1, "----\t------\t----\t----\t-------\n");
    for e in &evs {
        let first = e
            .event_time
            .as_ref()
            .map(|t| t.0)
            .or(e.first_timestamp.as_ref().map(|t| t.0))
            .or(e.last_timestamp.as_ref().map(|t| t.0));
        let first = first
            .map(|t| since(now, t))
            .unwrap_or_else(|| "<unknown>".into());
        let count = event_count(e);
        let interval = if count > 1 {
            let last = event_last_seen(e)
                .map(|t| since(now, t))
                .unwrap_or_else(|| "<unknown>".into());
            format!("{last} (x{count} over {first})")
        } else {
            first
        };
        let from = e
            .source
            .as_ref()
            .and_then(|s| s.component.clone())
            .filter(|c| !c.is_empty())
            .or(e.reporting_component.clone())
            .unwrap_or_default();
        doc.w(
            1,
            &format!(
                "{}\t{}\t{}\t{}\t{}\n",
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                interval,
                from,
                e.message.clone().unwrap_or_default().trim()
            ),
        );
    }
}

fn pods_status(pods: &[Pod]) -> String {
    let count = |phase: &str| {
        pods.iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase))
            .count()
    };
    format!(
        "{} Running / {} Waiting / {} Succeeded / {} Failed",
        count("Running"),
        count("Pending"),
        count("Succeeded"),
        count("Failed")
    )
}

pub fn pod(p: &Pod, rel: &Related, now: Timestamp) -> String {
    let mut d = Doc::default();
    let meta = &p.metadata;
    let spec = p.spec.clone().unwrap_or_default();
    let status = p.status.clone().unwrap_or_default();
    d.kv(0, "Name", meta.name.as_deref().unwrap_or(""));
    d.kv(0, "Namespace", meta.namespace.as_deref().unwrap_or(""));
    if let Some(prio) = spec.priority {
        d.kv(0, "Priority", prio);
    }
    if let Some(sa) = spec.service_account_name.as_ref().filter(|s| !s.is_empty()) {
        d.kv(0, "Service Account", sa);
    }
    let node = match spec.node_name.as_deref() {
        Some(n) if !n.is_empty() => match status.host_ip.as_deref() {
            Some(ip) if !ip.is_empty() => format!("{n}/{ip}"),
            _ => n.to_string(),
        },
        _ => "<none>".into(),
    };
    d.kv(0, "Node", node);
    if let Some(t) = &status.start_time {
        d.kv(0, "Start Time", rfc1123z(t));
    }
    d.labels("", "Labels", meta.labels.as_ref());
    d.annotations("", meta.annotations.as_ref());
    if let Some(t) = &meta.deletion_timestamp {
        d.kv(
            0,
            "Status",
            format!("Terminating (lasts {})", since(now, t.0)),
        );
        d.kv(
            0,
            "Termination Grace Period",
            format!("{}s", meta.deletion_grace_period_seconds.unwrap_or(30)),
        );
    } else {
        d.kv(0, "Status", status.phase.as_deref().unwrap_or("Pending"));
    }
    if let Some(r) = status.reason.as_ref().filter(|r| !r.is_empty()) {
        d.kv(0, "Reason", r);
    }
    if let Some(m) = status.message.as_ref().filter(|m| !m.is_empty()) {
        d.kv(0, "Message", m);
    }
    d.kv(0, "IP", status.pod_ip.as_deref().unwrap_or(""));
    let ips = status.pod_ips.clone().unwrap_or_default();
    if ips.is_empty() {
        d.kv(0, "IPs", "<none>");
    } else {
        d.w(0, "IPs:\n");
        for ip in ips {
            d.kv(1, "IP", ip.ip);
        }
    }
    controlled_by(&mut d, meta);
    if let Some(n) = status
        .nominated_node_name
        .as_ref()
        .filter(|n| !n.is_empty())
    {
        d.kv(0, "NominatedNodeName", n);
    }
    if let Some(init) = spec.init_containers.as_ref().filter(|c| !c.is_empty()) {
        let st = status.init_container_statuses.clone().unwrap_or_default();
        containers(&mut d, "Init Containers", init, &st, "");
    }
    let st = status.container_statuses.clone().unwrap_or_default();
    containers(&mut d, "Containers", &spec.containers, &st, "");
    let conditions = status.conditions.clone().unwrap_or_default();
    if !conditions.is_empty() {
        d.w(0, "Conditions:\n  Type\tStatus\n");
        for c in &conditions {
            d.w(1, &format!("{} \t{} \n", c.type_, c.status));
        }
    }
    volumes(&mut d, &spec, "");
    if let Some(q) = &status.qos_class {
        d.kv(0, "QoS Class", q);
    }
    d.labels("", "Node-Selectors", spec.node_selector.as_ref());
    tolerations(&mut d, "", &spec);
    events(&mut d, &rel.events, now);
    d.finish()
}

fn header(d: &mut Doc, meta: &ObjectMeta, with_time: bool) {
    d.kv(0, "Name", meta.name.as_deref().unwrap_or(""));
    if let Some(ns) = meta.namespace.as_ref().filter(|n| !n.is_empty()) {
        d.kv(0, "Namespace", ns);
    }
    if with_time {
        d.kv(
            0,
            "CreationTimestamp",
            time_or_unset(meta.creation_timestamp.as_ref()),
        );
    }
}

pub fn deployment(dep: &Deployment, rel: &Related, now: Timestamp) -> String {
    let mut d = Doc::default();
    let spec = dep.spec.clone().unwrap_or_default();
    let st = dep.status.clone().unwrap_or_default();
    header(&mut d, &dep.metadata, true);
    d.labels("", "Labels", dep.metadata.labels.as_ref());
    d.annotations("", dep.metadata.annotations.as_ref());
    d.kv(0, "Selector", label_selector(Some(&spec.selector)));
    d.kv(
        0,
        "Replicas",
        format!(
            "{} desired | {} updated | {} total | {} available | {} unavailable",
            spec.replicas.unwrap_or(1),
            st.updated_replicas.unwrap_or(0),
            st.replicas.unwrap_or(0),
            st.available_replicas.unwrap_or(0),
            st.unavailable_replicas.unwrap_or(0)
        ),
    );
    let strategy = spec.strategy.clone().unwrap_or_default();
    let typ = strategy
        .type_
        .clone()
        .unwrap_or_else(|| "RollingUpdate".into());
    d.kv(0, "StrategyType", &typ);
    d.kv(0, "MinReadySeconds", spec.min_ready_seconds.unwrap_or(0));
    if typ == "RollingUpdate" {
        use corral_api::k8s::apimachinery::pkg::util::intstr::IntOrString;
        let show = |v: Option<&IntOrString>| match v {
            Some(IntOrString::Int(i)) => i.to_string(),
            Some(IntOrString::String(s)) => s.clone(),
            None => "25%".into(),
        };
        let ru = strategy.rolling_update.clone().unwrap_or_default();
        d.kv(
            0,
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                show(ru.max_unavailable.as_ref()),
                show(ru.max_surge.as_ref())
            ),
        );
    }
    pod_template(&mut d, Some(&spec.template));
    let conditions = st.conditions.clone().unwrap_or_default();
    if !conditions.is_empty() {
        d.w(0, "Conditions:\n  Type\tStatus\tReason\n");
        d.w(1, "----\t------\t------\n");
        for c in &conditions {
            d.w(
                1,
                &format!(
                    "{} \t{}\t{}\n",
                    c.type_,
                    c.status,
                    c.reason.clone().unwrap_or_default()
                ),
            );
        }
    }
    let revision = |rs: &ReplicaSet| {
        rs.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .and_then(|r| r.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let newest = rel.replicasets.iter().max_by_key(|rs| revision(rs));
    let describe_rs = |rs: &ReplicaSet| {
        format!(
            "{} ({}/{} replicas created)",
            rs.metadata.name.clone().unwrap_or_default(),
            rs.status.as_ref().map_or(0, |s| s.replicas),
            rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
        )
    };
    let old: Vec<String> = rel
        .replicasets
        .iter()
        .filter(|rs| Some(*rs) != newest)
        .filter(|rs| {
            rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) > 0
                || rs.status.as_ref().is_some_and(|s| s.replicas > 0)
        })
        .map(describe_rs)
        .collect();
    d.kv(
        0,
        "OldReplicaSets",
        if old.is_empty() {
            "<none>".into()
        } else {
            old.join(", ")
        },
    );
    d.kv(
        0,
        "NewReplicaSet",
        newest.map(describe_rs).unwrap_or_else(|| "<none>".into()),
    );
    events(&mut d, &rel.events, now);
    d.finish()
}

pub fn replicaset(rs: &ReplicaSet, rel: &Related, now: Timestamp) -> String {
    let mut d = Doc::default();
    let spec = rs.spec.clone().unwrap_or_default();
    let st = rs.status.clone().unwrap_or_default();
    header(&mut d, &rs.metadata, false);
    d.kv(0, "Selector", label_selector(Some(&spec.selector)));
    d.labels("", "Labels", rs.metadata.labels.as_ref());
    d.annotations("", rs.metadata.annotations.as_ref());
    controlled_by(&mut d, &rs.metadata);
    d.kv(
        0,
        "Replicas",
        format!(
            "{} current / {} desired",
            st.replicas,
            spec.replicas.unwrap_or(1)
        ),
    );
    d.kv(0, "Pods Status", pods_status(&rel.pods));
    pod_template(&mut d, spec.template.as_ref());
    events(&mut d, &rel.events, now);
    d.finish()
}

pub fn daemonset(ds: &DaemonSet, rel: &Related, now: Timestamp) -> String {
    let mut d = Doc::default();
    let spec = ds.spec.clone().unwrap_or_default();
    let st = ds.status.clone().unwrap_or_default();
    header(&mut d, &ds.metadata, false);
    d.kv(0, "Selector", label_selector(Some(&spec.selector)));
    let ns = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref());
    d.kv(0, "Node-Selector", super::format::labels(ns));
    d.labels("", "Labels", ds.metadata.labels.as_ref());
    d.annotations("", ds.metadata.annotations.as_ref());
    d.kv(
        0,
        "Desired Number of Nodes Scheduled",
        st.desired_number_scheduled,
    );
    d.kv(
        0,
        "Current Number of Nodes Scheduled",
        st.current_number_scheduled,
    );
    d.kv(
        0,
        "Number of Nodes Scheduled with Up-to-date Pods",
        st.updated_number_scheduled.unwrap_or(0),
    );
    d.kv(
        0,
        "Number of Nodes Scheduled with Available Pods",
        st.number_available.unwrap_or(0),
    );
    d.kv(0, "Number of Nodes Misscheduled", st.number_misscheduled);
    d.kv(0, "Pods Status", pods_status(&rel.pods));
    pod_template(&mut d, Some(&spec.template));
    events(&mut d, &rel.events, now);
    d.finish()
}

pub fn statefulset(sts: &StatefulSet, rel: &Related, now: Timestamp) -> String {
    let mut d = Doc::default();
    let spec = sts.spec.clone().unwrap_or_default();
    let st = sts.status.clone().unwrap_or_default();
    header(&mut d, &sts.metadata, true);
    d.kv(0, "Selector", label_selector(Some(&spec.selector)));
    d.labels("", "Labels", sts.metadata.labels.as_ref());
    d.annotations("", sts.metadata.annotations.as_ref());
    d.kv(
        0,
        "Replicas",
        format!(
            "{} desired | {} total",
            spec.replicas.unwrap_or(1),
            st.replicas
        ),
    );
    d.kv(
        0,
        "Update Strategy",
        spec.update_strategy
            .as_ref()
            .and_then(|u| u.type_.clone())
            .unwrap_or_else(|| "RollingUpdate".into()),
    );
    d.kv(0, "Pods Status", pods_status(&rel.pods));
    pod_template(&mut d, Some(&spec.template));
    events(&mut d, &rel.events, now);
    d.finish()
}

pub fn service(svc: &Service, rel: &Related, now: Timestamp) -> String {
    let mut d = Doc::default();
    let spec = svc.spec.clone().unwrap_or_default();
    header(&mut d, &svc.metadata, false);
    d.labels("", "Labels", svc.metadata.labels.as_ref());
    d.annotations("", svc.metadata.annotations.as_ref());
    d.kv(0, "Selector", super::format::labels(spec.selector.as_ref()));
    d.kv(0, "Type", spec.type_.as_deref().unwrap_or("ClusterIP"));
    if let Some(p) = &spec.ip_family_policy {
        d.kv(0, "IP Family Policy", p);
    }
    if let Some(f) = spec.ip_families.as_ref().filter(|f| !f.is_empty()) {
        d.kv(0, "IP Families", f.join(","));
    }
    d.kv(0, "IP", spec.cluster_ip.as_deref().unwrap_or("<none>"));
    if let Some(ips) = spec.cluster_ips.as_ref().filter(|i| !i.is_empty()) {
        d.kv(0, "IPs", ips.join(","));
    }
    let ep_text = rel
        .endpoints
        .as_ref()
        .map(format_endpoints)
        .unwrap_or_else(|| "<none>".into());
    for p in spec.ports.iter().flatten() {
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        let name = p
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "<unset>".into());
        d.kv(0, "Port", format!("{name}  {}/{proto}", p.port));
        use corral_api::k8s::apimachinery::pkg::util::intstr::IntOrString;
        let target = match &p.target_port {
            Some(IntOrString::Int(i)) => format!("{i}/{proto}"),
            Some(IntOrString::String(s)) => format!("{s}/{proto}"),
            None => format!("{}/{proto}", p.port),
        };
        d.kv(0, "TargetPort", target);
        if let Some(np) = p.node_port.filter(|n| *n > 0) {
            d.kv(0, "NodePort", format!("{name}  {np}/{proto}"));
        }
        d.kv(0, "Endpoints", &ep_text);
    }
    d.kv(
        0,
        "Session Affinity",
        spec.session_affinity.as_deref().unwrap_or("None"),
    );
    events(&mut d, &rel.events, now);
    d.finish()
}

pub fn ingress(ing: &Ingress, rel: &Related, now: Timestamp) -> String {
    let mut d = Doc::default();
    let spec = ing.spec.clone().unwrap_or_default();
    d.kv(0, "Name", ing.metadata.name.as_deref().unwrap_or(""));
    d.labels("", "Labels", ing.metadata.labels.as_ref());
    d.kv(
        0,
        "Namespace",
        ing.metadata.namespace.as_deref().unwrap_or(""),
    );
    let addr: Vec<String> = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip.or(i.hostname))
        .collect();
    d.kv(0, "Address", addr.join(","));
    d.kv(
        0,
        "Ingress Class",
        spec.ingress_class_name.as_deref().unwrap_or("<none>"),
    );
    let backend = |b: &corral_api::k8s::api::networking::v1::IngressBackend| match &b.service {
        Some(s) => {
            let port = s
                .port
                .as_ref()
                .map(|p| {
                    p.number
                        .map(|n| n.to_string())
                        .or(p.name.clone())
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            format!("{}:{port}", s.name)
        }
        None => "<resource>".into(),
    };
    d.kv(
        0,
        "Default backend",
        spec.default_backend
            .as_ref()
            .map(backend)
            .unwrap_or_else(|| "<default>".into()),
    );
    d.w(0, "Rules:\n");
    d.w(1, "Host\tPath\tBackends\n");
    d.w(1, "----\t----\t--------\n");
    for r in spec.rules.iter().flatten() {
        let host = r
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "*".into());
        d.w(1, &format!("{host}\t\n"));
        for p in r.http.iter().flat_map(|h| h.paths.iter()) {
            d.w(
                1,
                &format!(
                    "\t{}\t{}\n",
                    p.path.as_deref().unwrap_or("/"),
                    backend(&p.backend)
                ),
            );
        }
    }
    d.annotations("", ing.metadata.annotations.as_ref());
    events(&mut d, &rel.events, now);
    d.finish()
}

pub fn node(n: &Node, rel: &Related, now: Timestamp) -> String {
    let mut d = Doc::default();
    let spec = n.spec.clone().unwrap_or_default();
    let st = n.status.clone().unwrap_or_default();
    d.kv(0, "Name", n.metadata.name.as_deref().unwrap_or(""));
    d.kv(0, "Roles", node_roles(n));
    d.labels("", "Labels", n.metadata.labels.as_ref());
    d.annotations("", n.metadata.annotations.as_ref());
    d.kv(
        0,
        "CreationTimestamp",
        time_or_unset(n.metadata.creation_timestamp.as_ref()),
    );
    let taints: Vec<String> = spec
        .taints
        .iter()
        .flatten()
        .map(|t| match &t.value {
            Some(v) if !v.is_empty() => format!("{}={v}:{}", t.key, t.effect),
            _ => format!("{}:{}", t.key, t.effect),
        })
        .collect();
    if taints.is_empty() {
        d.kv(0, "Taints", "<none>");
    } else {
        d.kv(0, "Taints", taints.join("\n\t"));
    }
    d.kv(0, "Unschedulable", spec.unschedulable.unwrap_or(false));
    let conditions = st.conditions.clone().unwrap_or_default();
    d.w(0, "Conditions:\n");
    d.w(
        1,
        "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n",
    );
    d.w(
        1,
        "----\t------\t-----------------\t------------------\t------\t-------\n",
    );
    for c in &conditions {
        d.w(
            1,
            &format!(
                "{} \t{} \t{} \t{} \t{} \t{}\n",
                c.type_,
                c.status,
                time_or_unset(c.last_heartbeat_time.as_ref()),
                time_or_unset(c.last_transition_time.as_ref()),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default()
            ),
        );
    }
    d.w(0, "Addresses:\n");
    for a in st.addresses.iter().flatten() {
        d.kv(1, &a.type_, &a.address);
    }
    for (title, map) in [("Capacity", &st.capacity), ("Allocatable", &st.allocatable)] {
        if let Some(m) = map.as_ref().filter(|m| !m.is_empty()) {
            d.w(0, &format!("{title}:\n"));
            for (k, q) in m {
                d.kv(1, k, &q.0);
            }
        }
    }
    if let Some(info) = &st.node_info {
        d.w(0, "System Info:\n");
        d.kv(1, "Machine ID", &info.machine_id);
        d.kv(1, "Kernel Version", &info.kernel_version);
        d.kv(1, "OS Image", &info.os_image);
        d.kv(1, "Operating System", &info.operating_system);
        d.kv(1, "Architecture", &info.architecture);
        d.kv(
            1,
            "Container Runtime Version",
            &info.container_runtime_version,
        );
        d.kv(1, "Kubelet Version", &info.kubelet_version);
    }
    if let Some(cidr) = spec.pod_cidr.as_ref() {
        d.kv(0, "PodCIDR", cidr);
    }
    let running: Vec<&Pod> = rel
        .pods
        .iter()
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
        })
        .collect();
    d.kv(
        0,
        "Non-terminated Pods",
        format!("({} in total)", running.len()),
    );
    if !running.is_empty() {
        d.w(1, "Namespace\tName\tAge\n");
        d.w(1, "---------\t----\t---\n");
        for p in running {
            d.w(
                1,
                &format!(
                    "{}\t{}\t{}\n",
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default(),
                    super::format::age(now, p.metadata.creation_timestamp.as_ref())
                ),
            );
        }
    }
    events(&mut d, &rel.events, now);
    d.finish()
}

fn title_case(key: &str) -> String {
    let mut out = String::new();
    for (i, ch) in key.chars().enumerate() {
        if i == 0 {
            out.extend(ch.to_uppercase());
        } else if ch.is_uppercase() {
            out.push(' ');
            out.push(ch);
        } else {
            out.push(ch);
        }
    }
    out
}

fn generic_value(d: &mut Doc, level: usize, key: &str, v: &Value) {
    match v {
        Value::Object(m) if m.is_empty() => d.kv(level, &title_case(key), "<none>"),
        Value::Object(m) => {
            d.w(level, &format!("{}:\n", title_case(key)));
            for (k, v) in m {
                generic_value(d, level + 1, k, v);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let parts: Vec<String> = items.iter().map(scalar).collect();
            d.kv(level, &title_case(key), parts.join(", "));
        }
        Value::Array(items) => {
            d.w(level, &format!("{}:\n", title_case(key)));
            for item in items {
                if let Value::Object(m) = item {
                    for (i, (k, v)) in m.iter().enumerate() {
                        let _ = i;
                        generic_value(d, level + 1, k, v);
                    }
                }
            }
        }
        other => d.kv(level, &title_case(key), scalar(other)),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

/// Kinds without a dedicated describer: metadata, then the remaining fields, nested.
pub fn generic(obj: &Value, rel: &Related, now: Timestamp) -> String {
    let mut d = Doc::default();
    let meta: ObjectMeta = obj
        .get("metadata")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default();
    header(&mut d, &meta, false);
    d.labels("", "Labels", meta.labels.as_ref());
    d.annotations("", meta.annotations.as_ref());
    d.kv(
        0,
        "API Version",
        scalar(obj.get("apiVersion").unwrap_or(&Value::Null)),
    );
    d.kv(0, "Kind", scalar(obj.get("kind").unwrap_or(&Value::Null)));
    if let Value::Object(m) = obj {
        for (k, v) in m {
            if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                generic_value(&mut d, 0, k, v);
            }
        }
    }
    events(&mut d, &rel.events, now);
    d.finish()
}
