//! Describers for pods and the workload controllers.

use crate::k8s::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use crate::k8s::api::core::v1::Pod;
use jiff::Timestamp;

use super::{
    containers, controlled_by, events, header, pod_template, pods_status, tolerations, volumes,
    Doc, Related,
};
use crate::printers::format::{label_selector, rfc1123z, since};

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
        use crate::k8s::apimachinery::pkg::util::intstr::IntOrString;
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
    d.kv(0, "Node-Selector", crate::printers::format::labels(ns));
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
