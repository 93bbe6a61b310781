//! Rows for cluster and bookkeeping kinds: Node, Namespace, Event, PersistentVolumeClaim,
//! PersistentVolume, Lease, ConfigMap and Secret.

use std::collections::BTreeSet;

use crate::k8s::api::coordination::v1::Lease;
use crate::k8s::api::core::v1::{
    ConfigMap, Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Secret,
};
use jiff::Timestamp;

use super::format::{age, since};
use super::PrintOptions;

pub const NODE_HEADERS: &[&str] = &["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
pub const NODE_WIDE: &[&str] = &[
    "INTERNAL-IP",
    "EXTERNAL-IP",
    "OS-IMAGE",
    "KERNEL-VERSION",
    "CONTAINER-RUNTIME",
];
pub const NAMESPACE_HEADERS: &[&str] = &["NAME", "STATUS", "AGE"];
pub const EVENT_HEADERS: &[&str] = &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"];
pub const EVENT_WIDE_HEADERS: &[&str] = &[
    "LAST SEEN",
    "TYPE",
    "REASON",
    "OBJECT",
    "SUBOBJECT",
    "SOURCE",
    "MESSAGE",
    "FIRST SEEN",
    "COUNT",
    "NAME",
];
pub const PVC_HEADERS: &[&str] = &[
    "NAME",
    "STATUS",
    "VOLUME",
    "CAPACITY",
    "ACCESS MODES",
    "STORAGECLASS",
    "VOLUMEATTRIBUTESCLASS",
    "AGE",
];
pub const PVC_WIDE: &[&str] = &["VOLUMEMODE"];
pub const PV_HEADERS: &[&str] = &[
    "NAME",
    "CAPACITY",
    "ACCESS MODES",
    "RECLAIM POLICY",
    "STATUS",
    "CLAIM",
    "STORAGECLASS",
    "VOLUMEATTRIBUTESCLASS",
    "REASON",
    "AGE",
];
pub const LEASE_HEADERS: &[&str] = &["NAME", "HOLDER", "AGE"];
pub const CONFIGMAP_HEADERS: &[&str] = &["NAME", "DATA", "AGE"];
pub const SECRET_HEADERS: &[&str] = &["NAME", "TYPE", "DATA", "AGE"];

/// `Ready`, `NotReady`, `Unknown`, with `,SchedulingDisabled` for a cordoned node.
pub fn node_status(node: &Node) -> String {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let mut status = vec![match ready {
        Some(c) if c.status == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

/// Roles from `node-role.kubernetes.io/<role>` labels and the `kubernetes.io/role` label.
pub fn node_roles(node: &Node) -> String {
    let mut roles = BTreeSet::new();
    for (k, v) in node.metadata.labels.iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.insert(v.clone());
        }
    }
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

pub fn node_row(node: &Node, opts: &PrintOptions) -> Vec<String> {
    let status = node.status.clone().unwrap_or_default();
    let info = status.node_info.clone().unwrap_or_default();
    let mut cells = vec![
        node.metadata.name.clone().unwrap_or_default(),
        node_status(node),
        node_roles(node),
        age(opts.now, node.metadata.creation_timestamp.as_ref()),
        info.kubelet_version.clone(),
    ];
    if opts.wide {
        let address = |typ: &str| {
            status
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == typ)
                .map(|a| a.address.clone())
                .unwrap_or_else(|| "<none>".into())
        };
        let unknown = |s: &str| {
            if s.is_empty() {
                "<unknown>".to_string()
            } else {
                s.to_string()
            }
        };
        cells.extend([
            address("InternalIP"),
            address("ExternalIP"),
            unknown(&info.os_image),
            unknown(&info.kernel_version),
            unknown(&info.container_runtime_version),
        ]);
    }
    cells
}

pub fn namespace_row(ns: &Namespace, opts: &PrintOptions) -> Vec<String> {
    vec![
        ns.metadata.name.clone().unwrap_or_default(),
        ns.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Active".into()),
        age(opts.now, ns.metadata.creation_timestamp.as_ref()),
    ]
}

/// The time an event was last seen: lastTimestamp, else firstTimestamp, else eventTime.
pub fn event_last_seen(ev: &Event) -> Option<Timestamp> {
    if let Some(series) = &ev.series {
        if let Some(t) = &series.last_observed_time {
            return Some(t.0);
        }
    }
    ev.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or(ev.first_timestamp.as_ref().map(|t| t.0))
        .or(ev.event_time.as_ref().map(|t| t.0))
}

fn event_first_seen(ev: &Event) -> Option<Timestamp> {
    ev.first_timestamp
        .as_ref()
        .map(|t| t.0)
        .or(ev.event_time.as_ref().map(|t| t.0))
}

pub fn event_count(ev: &Event) -> i32 {
    match (&ev.series, ev.count) {
        (Some(s), _) => s.count.unwrap_or(1),
        (None, Some(c)) if c > 0 => c,
        _ => 1,
    }
}

/// `pod/mi-app-x`, as kubectl names an event's object.
pub fn event_object(ev: &Event) -> String {
    let kind = ev
        .involved_object
        .kind
        .clone()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ev.involved_object.name.as_deref() {
        Some(n) if !n.is_empty() => format!("{kind}/{n}"),
        _ => kind,
    }
}

pub fn event_source(ev: &Event) -> String {
    let component = ev
        .source
        .as_ref()
        .and_then(|s| s.component.clone())
        .filter(|s| !s.is_empty())
        .or(ev.reporting_component.clone())
        .unwrap_or_default();
    match ev
        .source
        .as_ref()
        .and_then(|s| s.host.clone())
        .filter(|h| !h.is_empty())
    {
        Some(host) => format!("{component}, {host}"),
        None => component,
    }
}

fn ts_cell(now: Timestamp, t: Option<Timestamp>) -> String {
    t.map(|t| since(now, t))
        .unwrap_or_else(|| "<unknown>".into())
}

pub fn event_row(ev: &Event, opts: &PrintOptions) -> Vec<String> {
    let last = ts_cell(opts.now, event_last_seen(ev));
    let kind = ev.type_.clone().unwrap_or_default();
    let reason = ev.reason.clone().unwrap_or_default();
    let message = ev.message.clone().unwrap_or_default().trim().to_string();
    if opts.wide {
        vec![
            last,
            kind,
            reason,
            event_object(ev),
            ev.involved_object.field_path.clone().unwrap_or_default(),
            event_source(ev),
            message,
            ts_cell(opts.now, event_first_seen(ev)),
            event_count(ev).to_string(),
            ev.metadata.name.clone().unwrap_or_default(),
        ]
    } else {
        vec![last, kind, reason, event_object(ev), message]
    }
}

/// `RWO,ROX,RWX,RWOP` as kubectl abbreviates access modes.
pub fn access_modes(modes: Option<&Vec<String>>) -> String {
    let mut out: Vec<&str> = Vec::new();
    for m in modes.into_iter().flatten() {
        let short = match m.as_str() {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        };
        if !out.contains(&short) {
            out.push(short);
        }
    }
    out.join(",")
}

pub fn pvc_row(pvc: &PersistentVolumeClaim, opts: &PrintOptions) -> Vec<String> {
    let spec = pvc.spec.clone().unwrap_or_default();
    let status = pvc.status.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_else(|| "Pending".into());
    let phase = if pvc.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        phase
    };
    let volume = spec.volume_name.clone().unwrap_or_default();
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            status
                .capacity
                .as_ref()
                .and_then(|c| c.get("storage"))
                .map(|q| q.0.clone())
                .unwrap_or_default(),
            access_modes(status.access_modes.as_ref()),
        )
    };
    let mut cells = vec![
        pvc.metadata.name.clone().unwrap_or_default(),
        phase,
        volume,
        capacity,
        modes,
        spec.storage_class_name.clone().unwrap_or_default(),
        spec.volume_attributes_class_name
            .clone()
            .unwrap_or_else(|| "<unset>".into()),
        age(opts.now, pvc.metadata.creation_timestamp.as_ref()),
    ];
    if opts.wide {
        cells.push(
            spec.volume_mode
                .clone()
                .unwrap_or_else(|| "Filesystem".into()),
        );
    }
    cells
}

pub fn pv_row(pv: &PersistentVolume, opts: &PrintOptions) -> Vec<String> {
    let spec = pv.spec.clone().unwrap_or_default();
    let status = pv.status.clone().unwrap_or_default();
    let claim = spec
        .claim_ref
        .as_ref()
        .map(|c| {
            format!(
                "{}/{}",
                c.namespace.clone().unwrap_or_default(),
                c.name.clone().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    vec![
        pv.metadata.name.clone().unwrap_or_default(),
        spec.capacity
            .as_ref()
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_default(),
        access_modes(spec.access_modes.as_ref()),
        spec.persistent_volume_reclaim_policy
            .clone()
            .unwrap_or_else(|| "Retain".into()),
        status.phase.clone().unwrap_or_default(),
        claim,
        spec.storage_class_name.clone().unwrap_or_default(),
        spec.volume_attributes_class_name
            .clone()
            .unwrap_or_else(|| "<unset>".into()),
        status.reason.clone().unwrap_or_default(),
        age(opts.now, pv.metadata.creation_timestamp.as_ref()),
    ]
}

pub fn lease_row(lease: &Lease, opts: &PrintOptions) -> Vec<String> {
    vec![
        lease.metadata.name.clone().unwrap_or_default(),
        lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default(),
        age(opts.now, lease.metadata.creation_timestamp.as_ref()),
    ]
}

pub fn secret_row(s: &Secret, opts: &PrintOptions) -> Vec<String> {
    vec![
        s.metadata.name.clone().unwrap_or_default(),
        s.type_.clone().unwrap_or_default(),
        s.data.as_ref().map_or(0, |d| d.len()).to_string(),
        age(opts.now, s.metadata.creation_timestamp.as_ref()),
    ]
}

pub fn configmap_row(cm: &ConfigMap, opts: &PrintOptions) -> Vec<String> {
    let n =
        cm.data.as_ref().map_or(0, |d| d.len()) + cm.binary_data.as_ref().map_or(0, |d| d.len());
    vec![
        cm.metadata.name.clone().unwrap_or_default(),
        n.to_string(),
        age(opts.now, cm.metadata.creation_timestamp.as_ref()),
    ]
}
