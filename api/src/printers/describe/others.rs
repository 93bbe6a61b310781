//! Describers for Service, Ingress, Node and, for every other kind, a generic layout.

use crate::k8s::api::core::v1::{ConfigMap, Node, Pod, Secret, Service};
use crate::k8s::api::networking::v1::Ingress;
use crate::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use jiff::Timestamp;
use serde_json::Value;

use super::{events, header, time_or_unset, Doc, Related};
use crate::printers::cluster::node_roles;
use crate::printers::network::format_endpoints;

pub fn service(svc: &Service, rel: &Related, now: Timestamp) -> String {
    let mut d = Doc::default();
    let spec = svc.spec.clone().unwrap_or_default();
    header(&mut d, &svc.metadata, false);
    d.labels("", "Labels", svc.metadata.labels.as_ref());
    d.annotations("", svc.metadata.annotations.as_ref());
    d.kv(
        0,
        "Selector",
        crate::printers::format::labels(spec.selector.as_ref()),
    );
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
        use crate::k8s::apimachinery::pkg::util::intstr::IntOrString;
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
    let backend = |b: &crate::k8s::api::networking::v1::IngressBackend| match &b.service {
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
            let eps = match rel.backends.get(&s.name) {
                Some(ep) => format_endpoints(ep),
                None => format!("<error: endpoints {:?} not found>", s.name),
            };
            format!("{}:{port} ({eps})", s.name)
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
                2,
                &format!(
                    "\t{} \t{}\n",
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
                    crate::printers::format::age(now, p.metadata.creation_timestamp.as_ref())
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

pub fn namespace(ns: &crate::k8s::api::core::v1::Namespace) -> String {
    let mut d = Doc::default();
    d.kv(0, "Name", ns.metadata.name.as_deref().unwrap_or(""));
    d.labels("", "Labels", ns.metadata.labels.as_ref());
    d.annotations("", ns.metadata.annotations.as_ref());
    d.kv(
        0,
        "Status",
        ns.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Active"),
    );
    // A Terminating namespace says what its deletion waits for (kubectl's table).
    let conditions = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    if !conditions.is_empty() {
        d.w(0, "Conditions:\n");
        d.w(1, "Type\tStatus\tLastTransitionTime\tReason\tMessage\n");
        d.w(1, "----\t------\t------------------\t------\t-------\n");
        for c in conditions {
            d.w(
                1,
                &format!(
                    "{} \t{} \t{} \t{} \t{}\n",
                    c.type_,
                    c.status,
                    time_or_unset(c.last_transition_time.as_ref()),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default()
                ),
            );
        }
    }
    d.0.push_str("\nNo resource quota.\n\nNo LimitRange resource.\n");
    d.finish()
}

/// kubectl's ConfigMap description: every key with its value, binary keys with their size.
pub fn configmap(cm: &ConfigMap, rel: &Related, now: Timestamp) -> String {
    let mut d = Doc::default();
    header(&mut d, &cm.metadata, false);
    d.labels("", "Labels", cm.metadata.labels.as_ref());
    d.annotations("", cm.metadata.annotations.as_ref());
    d.0.push_str("\nData\n====\n");
    for (k, v) in cm.data.iter().flatten() {
        d.0.push_str(&format!("{k}:\n----\n{v}\n"));
    }
    d.0.push_str("\nBinaryData\n====\n");
    for (k, v) in cm.binary_data.iter().flatten() {
        d.0.push_str(&format!("{k}: {} bytes\n", v.0.len()));
    }
    d.0.push('\n');
    events(&mut d, &rel.events, now);
    d.finish()
}

/// kubectl's Secret description: the type and each key's size, never the values.
pub fn secret(s: &Secret) -> String {
    let mut d = Doc::default();
    header(&mut d, &s.metadata, false);
    d.labels("", "Labels", s.metadata.labels.as_ref());
    d.annotations("", s.metadata.annotations.as_ref());
    d.0.push('\n');
    d.kv(0, "Type", s.type_.as_deref().unwrap_or(""));
    d.0.push_str("\nData\n====\n");
    for (k, v) in s.data.iter().flatten() {
        d.kv(0, k, format!("{} bytes", v.0.len()));
    }
    d.finish()
}
