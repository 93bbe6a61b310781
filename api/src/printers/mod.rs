//! Printers: pure functions from objects (Kubernetes JSON) to kubectl's tables, YAML, JSON
//! and names. Nothing here does I/O; `now` is passed in so that ages are testable.

pub mod cluster;
pub mod describe;
pub mod format;
pub mod network;
pub mod output;
pub mod pods;
pub mod rbac;
pub mod table;
pub mod workloads;

#[cfg(test)]
mod tests;

use crate::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use crate::kinds::ResourceInfo;
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use table::{Table, Widths};

#[derive(Debug, thiserror::Error)]
#[error("cannot print {what}: {source}")]
pub struct PrintError {
    what: String,
    #[source]
    source: serde_json::Error,
}

#[derive(Debug, Clone)]
pub struct PrintOptions {
    /// `-o wide`: the extra columns.
    pub wide: bool,
    /// `--show-labels`: a trailing LABELS column.
    pub show_labels: bool,
    /// `-A`: a leading NAMESPACE column.
    pub with_namespace: bool,
    /// Names printed as `kind/name` (several kinds in one `get`).
    pub with_kind: bool,
    pub now: Timestamp,
}

impl PrintOptions {
    pub fn new(now: Timestamp) -> Self {
        Self {
            wide: false,
            show_labels: false,
            with_namespace: false,
            with_kind: false,
            now,
        }
    }
}

type RowFn = fn(&Value, &PrintOptions) -> Result<Vec<String>, PrintError>;

fn typed<K: DeserializeOwned>(v: &Value) -> Result<K, PrintError> {
    serde_json::from_value(v.clone()).map_err(|source| PrintError {
        what: crate::decode::describe(v),
        source,
    })
}

macro_rules! row_fn {
    ($ty:ty, $f:path) => {
        |v: &Value, o: &PrintOptions| -> Result<Vec<String>, PrintError> {
            let obj: $ty = typed(v)?;
            Ok($f(&obj, o))
        }
    };
}

/// The column headers and row function of a kind (plain columns, wide extras).
fn printer_for(info: &ResourceInfo) -> (&'static [&'static str], &'static [&'static str], RowFn) {
    use crate::k8s::api::{
        apps::v1 as apps, coordination::v1 as coord, core::v1 as core, networking::v1 as net,
        rbac::v1 as rbac_v1,
    };
    match info.plural {
        "pods" => (pods::HEADERS, pods::WIDE, row_fn!(core::Pod, pods::row)),
        "replicasets" => (
            workloads::REPLICASET_HEADERS,
            workloads::WIDE_WITH_SELECTOR,
            row_fn!(apps::ReplicaSet, workloads::replicaset_row),
        ),
        "deployments" => (
            workloads::DEPLOYMENT_HEADERS,
            workloads::WIDE_WITH_SELECTOR,
            row_fn!(apps::Deployment, workloads::deployment_row),
        ),
        "daemonsets" => (
            workloads::DAEMONSET_HEADERS,
            workloads::WIDE_WITH_SELECTOR,
            row_fn!(apps::DaemonSet, workloads::daemonset_row),
        ),
        "statefulsets" => (
            workloads::STATEFULSET_HEADERS,
            workloads::WIDE_CONTAINERS,
            row_fn!(apps::StatefulSet, workloads::statefulset_row),
        ),
        "controllerrevisions" => (
            workloads::CONTROLLERREVISION_HEADERS,
            &[],
            row_fn!(apps::ControllerRevision, workloads::controllerrevision_row),
        ),
        "services" => (
            network::SERVICE_HEADERS,
            network::SERVICE_WIDE,
            row_fn!(core::Service, network::service_row),
        ),
        "endpoints" => (
            network::ENDPOINTS_HEADERS,
            &[],
            row_fn!(core::Endpoints, network::endpoints_row),
        ),
        "ingresses" => (
            network::INGRESS_HEADERS,
            &[],
            row_fn!(net::Ingress, network::ingress_row),
        ),
        "ingressclasses" => (
            network::INGRESSCLASS_HEADERS,
            &[],
            row_fn!(net::IngressClass, network::ingressclass_row),
        ),
        "nodes" => (
            cluster::NODE_HEADERS,
            cluster::NODE_WIDE,
            row_fn!(core::Node, cluster::node_row),
        ),
        "namespaces" => (
            cluster::NAMESPACE_HEADERS,
            &[],
            row_fn!(core::Namespace, cluster::namespace_row),
        ),
        "events" => (
            cluster::EVENT_HEADERS,
            &[],
            row_fn!(core::Event, cluster::event_row),
        ),
        "persistentvolumeclaims" => (
            cluster::PVC_HEADERS,
            cluster::PVC_WIDE,
            row_fn!(core::PersistentVolumeClaim, cluster::pvc_row),
        ),
        "persistentvolumes" => (
            cluster::PV_HEADERS,
            &[],
            row_fn!(core::PersistentVolume, cluster::pv_row),
        ),
        "leases" => (
            cluster::LEASE_HEADERS,
            &[],
            row_fn!(coord::Lease, cluster::lease_row),
        ),
        "configmaps" => (
            cluster::CONFIGMAP_HEADERS,
            &[],
            row_fn!(core::ConfigMap, cluster::configmap_row),
        ),
        "secrets" => (
            cluster::SECRET_HEADERS,
            &[],
            row_fn!(core::Secret, cluster::secret_row),
        ),
        "roles" => (
            rbac::ROLE_HEADERS,
            &[],
            row_fn!(rbac_v1::Role, rbac::role_row),
        ),
        "clusterroles" => (
            rbac::ROLE_HEADERS,
            &[],
            row_fn!(rbac_v1::ClusterRole, rbac::cluster_role_row),
        ),
        "rolebindings" => (
            rbac::BINDING_HEADERS,
            rbac::BINDING_WIDE,
            row_fn!(rbac_v1::RoleBinding, rbac::role_binding_row),
        ),
        "clusterrolebindings" => (
            rbac::BINDING_HEADERS,
            rbac::BINDING_WIDE,
            row_fn!(rbac_v1::ClusterRoleBinding, rbac::cluster_role_binding_row),
        ),
        _ => (&["NAME", "AGE"], &[], generic_row),
    }
}

fn generic_row(v: &Value, o: &PrintOptions) -> Result<Vec<String>, PrintError> {
    let meta: ObjectMeta = typed(v.get("metadata").unwrap_or(&Value::Null))?;
    Ok(vec![
        meta.name.unwrap_or_default(),
        format::age(o.now, meta.creation_timestamp.as_ref()),
    ])
}

/// Column headers for a kind under these options.
pub fn headers(info: &ResourceInfo, opts: &PrintOptions) -> Vec<String> {
    let (plain, wide, _) = printer_for(info);
    let mut out: Vec<String> = Vec::new();
    if opts.with_namespace && info.namespaced {
        out.push("NAMESPACE".into());
    }
    if info.plural == "events" && opts.wide {
        out.extend(cluster::EVENT_WIDE_HEADERS.iter().map(|s| s.to_string()));
    } else {
        out.extend(plain.iter().map(|s| s.to_string()));
        if opts.wide {
            out.extend(wide.iter().map(|s| s.to_string()));
        }
    }
    if opts.show_labels {
        out.push("LABELS".into());
    }
    out
}

/// One table row for an object.
pub fn row(
    info: &ResourceInfo,
    obj: &Value,
    opts: &PrintOptions,
) -> Result<Vec<String>, PrintError> {
    let (_, _, f) = printer_for(info);
    let mut cells = f(obj, opts)?;
    // Events have no NAME column; every other kind starts with it.
    if opts.with_kind && info.plural != "events" {
        if let Some(name) = cells.first_mut() {
            *name = format!("{}/{}", info.qualified(), name);
        }
    }
    if opts.with_namespace && info.namespaced {
        cells.insert(0, crate::object::namespace(obj).to_string());
    }
    if opts.show_labels {
        let labels: Option<std::collections::BTreeMap<String, String>> = obj
            .pointer("/metadata/labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok());
        cells.push(format::labels(labels.as_ref()));
    }
    Ok(cells)
}

/// The whole table for a list of objects of one kind.
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    opts: &PrintOptions,
) -> Result<Table, PrintError> {
    let mut t = Table::new(headers(info, opts));
    for obj in objects {
        t.rows.push(row(info, obj, opts)?);
    }
    Ok(t)
}
