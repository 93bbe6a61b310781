//! Pod predicates shared by the workload controllers: active, ready, available, and pods built
//! from a template.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// Counts towards replicas: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !is_terminal(pod)
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Succeeded or Failed.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod last became ready (None when not ready).
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let c = ready_condition(pod).filter(|c| c.status == "True")?;
    Some(
        c.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// Ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    available_in(pod, min_ready_seconds, now) == Some(Duration::ZERO)
}

/// How long until the ready pod becomes available (zero: available now; None: not ready).
pub fn available_in(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    let since = ready_since(pod)?;
    if min_ready_seconds <= 0 {
        return Some(Duration::ZERO);
    }
    let at = since.as_millisecond() + i64::from(min_ready_seconds) * 1000;
    let left = at - now.as_millisecond();
    Some(Duration::from_millis(left.max(0) as u64))
}

pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

pub fn created(meta: &ObjectMeta) -> Timestamp {
    meta.creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A new pod from a workload's template: its labels, annotations and spec, the owner's
/// controller reference, and `generateName` (the executor picks the final name).
pub fn from_template(
    template: Option<&PodTemplateSpec>,
    namespace: &str,
    generate_name: String,
    owner: OwnerReference,
) -> Pod {
    let (labels, annotations, spec) = match template {
        Some(t) => {
            let m = t.metadata.clone().unwrap_or_default();
            (m.labels, m.annotations, t.spec.clone())
        }
        None => (None, None, None),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: Some(namespace.to_string()),
            labels,
            annotations,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// Fills `metadata.name` from `generateName` with Kubernetes' 5 random characters.
pub fn with_generated_name(mut pod: Pod) -> Pod {
    if pod.metadata.name.is_none() {
        let prefix = pod.metadata.generate_name.clone().unwrap_or_default();
        pod.metadata.name = Some(format!("{prefix}{}", corral_api::object::random_suffix(5)));
    }
    pod
}

pub type Pods = [Arc<Pod>];
