//! The ReplicaSet planner: which pods to adopt, release, create and delete, and the status,
//! from the ReplicaSet and the pods of its namespace. No I/O.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::rules::owner;
use corral_api::selector::LabelSelectorExpr;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;

use crate::pods;
use crate::util;
use crate::Error;

/// Kubernetes creates or deletes at most this many pods per sync.
pub const BURST: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set our controller reference on an orphan that matches the selector.
    Adopt(Arc<Pod>),
    /// Drop our controller reference from a pod whose labels stopped matching.
    Release(Arc<Pod>),
    /// Create this pod (name chosen by the executor from `generateName`).
    Create(Box<Pod>),
    Delete(Arc<Pod>),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The new status, when it differs from the stored one.
    pub status: Option<ReplicaSetStatus>,
    /// Reconcile again after this long (a ready pod becomes available).
    pub requeue_after: Option<Duration>,
}

/// Pods of `pods` the ReplicaSet controls after adoption and release, and the claim actions.
pub fn claim(
    owner_uid: &str,
    deleting: bool,
    selector: &LabelSelectorExpr,
    pods: &[Arc<Pod>],
) -> (Vec<Arc<Pod>>, Vec<Action>) {
    let mut owned = Vec::new();
    let mut actions = Vec::new();
    for pod in pods {
        let labels = util::labels(&pod.metadata);
        let matches = selector.matches(&labels);
        match owner::controller_of(&pod.metadata) {
            Some(o) if o.uid == owner_uid => {
                if matches || deleting {
                    owned.push(pod.clone());
                } else {
                    actions.push(Action::Release(pod.clone()));
                }
            }
            Some(_) => {}
            None => {
                if matches && !deleting && pod.metadata.deletion_timestamp.is_none() {
                    actions.push(Action::Adopt(pod.clone()));
                    owned.push(pod.clone());
                }
            }
        }
    }
    (owned, actions)
}

pub fn plan(rs: &ReplicaSet, pods: &[Arc<Pod>], now: Timestamp) -> Result<Plan, Error> {
    let spec = rs.spec.clone().unwrap_or_default();
    let selector = util::selector_of("replicaset", &rs.metadata, Some(&spec.selector))?;
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let (owned, mut actions) = claim(util::uid(&rs.metadata), deleting, &selector, pods);
    let active: Vec<Arc<Pod>> = owned
        .iter()
        .filter(|p| pods::is_active(p))
        .cloned()
        .collect();
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);

    if !deleting {
        if active.len() < want {
            let n = (want - active.len()).min(BURST);
            let owner = owner::controller_ref(rs);
            let prefix = format!("{}-", util::name(&rs.metadata));
            for _ in 0..n {
                actions.push(Action::Create(Box::new(pods::from_template(
                    spec.template.as_ref(),
                    util::namespace(&rs.metadata),
                    prefix.clone(),
                    owner.clone(),
                ))));
            }
        } else if active.len() > want {
            let n = (active.len() - want).min(BURST);
            for pod in pods_to_delete(&active, n) {
                actions.push(Action::Delete(pod));
            }
        }
    }

    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let l = util::labels(&p.metadata);
            template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .count();
    let mut requeue_after: Option<Duration> = None;
    let mut ready = 0;
    let mut available = 0;
    for p in &active {
        if let Some(left) = pods::available_in(p, min_ready, now) {
            ready += 1;
            if left.is_zero() {
                available += 1;
            } else {
                requeue_after = Some(requeue_after.map_or(left, |r| r.min(left)));
            }
        }
    }
    let old = rs.status.clone().unwrap_or_default();
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        observed_generation: rs.metadata.generation,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    Ok(Plan {
        actions,
        status: (status != old).then_some(status),
        requeue_after,
    })
}

/// The `n` pods Kubernetes would delete first: unscheduled before scheduled, pending before
/// running, not ready before ready, crowded nodes first, recently ready before long ready,
/// more restarts first, newer before older.
pub fn pods_to_delete(active: &[Arc<Pod>], n: usize) -> Vec<Arc<Pod>> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in active {
        if let Some(node) = pods::node_name(p) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |p: &Pod| pods::node_name(p).map_or(0, |n| per_node[n]);
    let mut sorted: Vec<Arc<Pod>> = active.to_vec();
    sorted.sort_by(|a, b| delete_order(a, b, rank(a), rank(b)));
    sorted.truncate(n);
    sorted
}

fn phase_ordinal(p: &Pod) -> u8 {
    match pods::phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn delete_order(a: &Pod, b: &Pod, rank_a: usize, rank_b: usize) -> Ordering {
    // `Less` means "delete a first".
    let assigned = |p: &Pod| pods::node_name(p).is_some();
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_ordinal(a).cmp(&phase_ordinal(b)))
        .then_with(|| pods::is_ready(a).cmp(&pods::is_ready(b)))
        .then_with(|| rank_b.cmp(&rank_a))
        .then_with(|| match (pods::ready_since(a), pods::ready_since(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| pods::restarts(b).cmp(&pods::restarts(a)))
        .then_with(|| pods::created(&b.metadata).cmp(&pods::created(&a.metadata)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}
