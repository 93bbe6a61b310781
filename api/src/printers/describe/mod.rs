//! `describe` text in kubectl's layout: tab-separated lines run through Go's tabwriter rules
//! (minwidth 0, padding 2), so nested sections align the way kubectl's do. This module holds
//! the shared sections (containers, pod template, events); `workloads` and `others` the kinds.

mod others;
mod workloads;

pub use others::{configmap, generic, ingress, namespace, node, secret, service};
pub use workloads::{daemonset, deployment, pod, replicaset, statefulset};

use std::collections::BTreeMap;

use crate::k8s::api::apps::v1::ReplicaSet;
use crate::k8s::api::core::v1::{
    Container, ContainerState, ContainerStatus, Endpoints, Event, Pod, PodTemplateSpec,
};
use crate::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use jiff::Timestamp;

use super::cluster::{event_count, event_last_seen};
use super::format::{rfc1123z, since};
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
    /// Endpoints of the Services an Ingress routes to, by Service name.
    pub backends: BTreeMap<String, Endpoints>,
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Accumulates tab-separated lines; `finish` aligns them.
#[derive(Default)]
pub(super) struct Doc(pub(super) String);

impl Doc {
    pub(super) fn w(&mut self, level: usize, text: &str) {
        for _ in 0..level {
            self.0.push_str("  ");
        }
        self.0.push_str(text);
    }
    pub(super) fn kv(&mut self, level: usize, key: &str, value: impl std::fmt::Display) {
        self.w(level, &format!("{key}:\t{value}\n"));
    }
    pub(super) fn map(
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
    pub(super) fn labels(
        &mut self,
        prefix: &str,
        title: &str,
        map: Option<&BTreeMap<String, String>>,
    ) {
        self.map(prefix, title, map, "=");
    }
    pub(super) fn annotations(&mut self, prefix: &str, map: Option<&BTreeMap<String, String>>) {
        self.map(prefix, "Annotations", map, ": ");
    }
    pub(super) fn finish(self) -> String {
        elastic(&self.0, 0, 2)
    }
}

pub(super) fn time_or_unset(
    t: Option<&crate::k8s::apimachinery::pkg::apis::meta::v1::Time>,
) -> String {
    t.map(rfc1123z).unwrap_or_else(|| "<unset>".into())
}

pub(super) fn controlled_by(doc: &mut Doc, meta: &ObjectMeta) {
    if let Some(o) = crate::rules::owner::controller_of(meta) {
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
pub(super) fn containers(
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

pub(super) fn volumes(doc: &mut Doc, spec: &crate::k8s::api::core::v1::PodSpec, space: &str) {
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

pub(super) fn pod_template(doc: &mut Doc, t: Option<&PodTemplateSpec>) {
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

pub(super) fn tolerations(doc: &mut Doc, prefix: &str, spec: &crate::k8s::api::core::v1::PodSpec) {
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
pub(super) fn events(doc: &mut Doc, evs: &[Event], now: Timestamp) {
    if evs.is_empty() {
        doc.0.push_str("Events:\t<none>\n");
        return;
    }
    let mut evs = evs.to_vec();
    // By last seen (whole seconds on the wire), then by eventTime (microseconds): events of
    // the same second keep the order they happened in (Scheduled, Pulled, Created, Started).
    evs.sort_by_key(|e| (event_last_seen(e), e.event_time.as_ref().map(|t| t.0)));
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

pub(super) fn pods_status(pods: &[Pod]) -> String {
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

pub(super) fn header(d: &mut Doc, meta: &ObjectMeta, with_time: bool) {
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
