//! Rows for the workload controllers: Deployment, ReplicaSet, DaemonSet, StatefulSet and
//! ControllerRevision, as kubectl prints them.

use crate::k8s::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use crate::k8s::api::core::v1::PodTemplateSpec;

use super::format::{age, label_selector, labels};
use super::PrintOptions;

pub const DEPLOYMENT_HEADERS: &[&str] = &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"];
pub const REPLICASET_HEADERS: &[&str] = &["NAME", "DESIRED", "CURRENT", "READY", "AGE"];
pub const DAEMONSET_HEADERS: &[&str] = &[
    "NAME",
    "DESIRED",
    "CURRENT",
    "READY",
    "UP-TO-DATE",
    "AVAILABLE",
    "NODE SELECTOR",
    "AGE",
];
pub const STATEFULSET_HEADERS: &[&str] = &["NAME", "READY", "AGE"];
pub const CONTROLLERREVISION_HEADERS: &[&str] = &["NAME", "CONTROLLER", "REVISION", "AGE"];
pub const WIDE_WITH_SELECTOR: &[&str] = &["CONTAINERS", "IMAGES", "SELECTOR"];
pub const WIDE_CONTAINERS: &[&str] = &["CONTAINERS", "IMAGES"];

/// `CONTAINERS` and `IMAGES` cells of a pod template.
fn containers_and_images(t: Option<&PodTemplateSpec>) -> [String; 2] {
    let containers = t
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    [
        containers
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
            .join(","),
        containers
            .iter()
            .map(|c| c.image.clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(","),
    ]
}

pub fn deployment_row(d: &Deployment, opts: &PrintOptions) -> Vec<String> {
    let spec = d.spec.clone().unwrap_or_default();
    let st = d.status.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let mut cells = vec![
        d.metadata.name.clone().unwrap_or_default(),
        format!("{}/{}", st.ready_replicas.unwrap_or(0), desired),
        st.updated_replicas.unwrap_or(0).to_string(),
        st.available_replicas.unwrap_or(0).to_string(),
        age(opts.now, d.metadata.creation_timestamp.as_ref()),
    ];
    if opts.wide {
        cells.extend(containers_and_images(Some(&spec.template)));
        cells.push(label_selector(Some(&spec.selector)));
    }
    cells
}

pub fn replicaset_row(rs: &ReplicaSet, opts: &PrintOptions) -> Vec<String> {
    let spec = rs.spec.clone().unwrap_or_default();
    let st = rs.status.clone().unwrap_or_default();
    let mut cells = vec![
        rs.metadata.name.clone().unwrap_or_default(),
        spec.replicas.unwrap_or(1).to_string(),
        st.replicas.to_string(),
        st.ready_replicas.unwrap_or(0).to_string(),
        age(opts.now, rs.metadata.creation_timestamp.as_ref()),
    ];
    if opts.wide {
        cells.extend(containers_and_images(spec.template.as_ref()));
        cells.push(label_selector(Some(&spec.selector)));
    }
    cells
}

pub fn daemonset_row(ds: &DaemonSet, opts: &PrintOptions) -> Vec<String> {
    let spec = ds.spec.clone().unwrap_or_default();
    let st = ds.status.clone().unwrap_or_default();
    let node_selector = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref());
    let mut cells = vec![
        ds.metadata.name.clone().unwrap_or_default(),
        st.desired_number_scheduled.to_string(),
        st.current_number_scheduled.to_string(),
        st.number_ready.to_string(),
        st.updated_number_scheduled.unwrap_or(0).to_string(),
        st.number_available.unwrap_or(0).to_string(),
        labels(node_selector),
        age(opts.now, ds.metadata.creation_timestamp.as_ref()),
    ];
    if opts.wide {
        cells.extend(containers_and_images(Some(&spec.template)));
        cells.push(label_selector(Some(&spec.selector)));
    }
    cells
}

pub fn statefulset_row(sts: &StatefulSet, opts: &PrintOptions) -> Vec<String> {
    let spec = sts.spec.clone().unwrap_or_default();
    let st = sts.status.clone().unwrap_or_default();
    let mut cells = vec![
        sts.metadata.name.clone().unwrap_or_default(),
        format!(
            "{}/{}",
            st.ready_replicas.unwrap_or(0),
            spec.replicas.unwrap_or(1)
        ),
        age(opts.now, sts.metadata.creation_timestamp.as_ref()),
    ];
    if opts.wide {
        cells.extend(containers_and_images(Some(&spec.template)));
    }
    cells
}

/// `daemonset.apps/mi-app` for a controller reference, `<none>` without one.
pub fn controller_name(
    owners: Option<&Vec<crate::k8s::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
) -> String {
    match owners.and_then(|o| crate::rules::owner::controller_in(o)) {
        None => "<none>".to_string(),
        Some(o) => {
            let group = o.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            let kind = o.kind.to_ascii_lowercase();
            if group.is_empty() {
                format!("{kind}/{}", o.name)
            } else {
                format!("{kind}.{group}/{}", o.name)
            }
        }
    }
}

pub fn controllerrevision_row(cr: &ControllerRevision, opts: &PrintOptions) -> Vec<String> {
    vec![
        cr.metadata.name.clone().unwrap_or_default(),
        controller_name(cr.metadata.owner_references.as_ref()),
        cr.revision.to_string(),
        age(opts.now, cr.metadata.creation_timestamp.as_ref()),
    ]
}
