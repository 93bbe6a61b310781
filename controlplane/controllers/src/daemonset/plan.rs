//! The DaemonSet planner, after Kubernetes' daemon controller: one pod per eligible node,
//! pinned there by required node affinity on `metadata.name` (the scheduler binds it),
//! ControllerRevisions for the template history, RollingUpdate (maxUnavailable / maxSurge)
//! and OnDelete, and the status. No I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use corral_api::rules::revision::{revision_data, revision_hash, CONTROLLER_REVISION_HASH_LABEL};
use corral_api::rules::taints::{self, HARD_EFFECTS, NO_EXECUTE};
use corral_api::rules::{node_selector, owner};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;

use crate::replicaset::plan::{claim, Action as RsAction};
use crate::{pods, util, Error};
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// Reconcile again this long after deleting a failed daemon pod (Kubernetes backs off too).
pub const FAILED_POD_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Adopt(Arc<Pod>),
    Release(Arc<Pod>),
    CreatePod {
        node: String,
        pod: Box<Pod>,
    },
    DeletePod(Arc<Pod>),
    CreateRevision(Box<ControllerRevision>),
    /// Bump an existing revision's number (the template went back to it).
    UpdateRevision(Box<ControllerRevision>),
    DeleteRevision(Arc<ControllerRevision>),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: Option<DaemonSetStatus>,
    pub requeue_after: Option<Duration>,
}

/// Tolerations Kubernetes adds to every daemon pod so it runs on not-ready, unreachable,
/// pressured and cordoned nodes.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut t = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        t.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    t.into_iter()
        .map(|(k, e)| Toleration {
            key: Some(k.into()),
            operator: Some("Exists".into()),
            effect: Some(e.into()),
            ..Default::default()
        })
        .collect()
}

/// The template with the daemon tolerations added (missing ones only).
fn tolerations_for(template: &PodTemplateSpec) -> Vec<Toleration> {
    let spec = template.spec.clone().unwrap_or_default();
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    for t in default_tolerations(spec.host_network.unwrap_or(false)) {
        let covered = tolerations
            .iter()
            .any(|x| x.key == t.key && x.effect == t.effect && x.operator == t.operator);
        if !covered {
            tolerations.push(t);
        }
    }
    tolerations
}

/// The node a daemon pod is for: its binding, or the node its affinity pins it to.
pub fn target_node(pod: &Pod) -> Option<String> {
    if let Some(n) = pods::node_name(pod) {
        return Some(n.to_string());
    }
    pod.spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

/// Kubernetes' ReplaceDaemonSetPodNodeNameNodeAffinity: the required terms become one term
/// pinning the pod to `node` (the controller already checked the others hold).
fn pin_to(affinity: Option<Affinity>, node: &str) -> Affinity {
    let mut a = affinity.unwrap_or_default();
    let na = a.node_affinity.get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    });
    a
}

type NewAndOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

struct NodeState<'a> {
    node: &'a Node,
    should_run: bool,
    should_continue: bool,
    /// Owned pods targeting the node, not being deleted, oldest first.
    pods: Vec<Arc<Pod>>,
}

pub fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    pods_in_ns: &[Arc<Pod>],
    revisions_in_ns: &[Arc<ControllerRevision>],
    now: Timestamp,
) -> Result<Plan, Error> {
    let spec = ds.spec.clone().unwrap_or_default();
    let selector = util::selector_of("daemonset", &ds.metadata, Some(&spec.selector))?;
    let deleting = ds.metadata.deletion_timestamp.is_some();
    let uid = util::uid(&ds.metadata).to_string();
    let (owned, claims) = claim(&uid, deleting, &selector, pods_in_ns);
    let mut actions: Vec<Action> = claims
        .into_iter()
        .filter_map(|a| match a {
            RsAction::Adopt(p) => Some(Action::Adopt(p)),
            RsAction::Release(p) => Some(Action::Release(p)),
            _ => None,
        })
        .collect();
    let mut requeue_after: Option<Duration> = None;
    let mut requeue = |d: Duration| {
        requeue_after = Some(requeue_after.map_or(d, |r: Duration| r.min(d)));
    };

    // History: the revision of the current template.
    let data = revision_data(&spec.template);
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    let mine: Vec<&Arc<ControllerRevision>> = revisions_in_ns
        .iter()
        .filter(|r| owner::is_controlled_by(&r.metadata, &uid))
        .collect();
    let max_revision = mine.iter().map(|r| r.revision).max().unwrap_or(0);
    let current = mine
        .iter()
        .filter(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
        .max_by_key(|r| r.revision);
    let hash = match current {
        Some(cur) => {
            if cur.revision < max_revision {
                let mut bumped = (***cur).clone();
                bumped.revision = max_revision + 1;
                actions.push(Action::UpdateRevision(Box::new(bumped)));
            }
            cur.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
                .cloned()
                .unwrap_or_else(|| revision_hash(&data, collisions))
        }
        None => {
            let hash = revision_hash(&data, collisions);
            if !deleting {
                let mut labels = spec
                    .template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.clone());
                actions.push(Action::CreateRevision(Box::new(ControllerRevision {
                    metadata: ObjectMeta {
                        name: Some(format!("{}-{}", util::name(&ds.metadata), hash)),
                        namespace: ds.metadata.namespace.clone(),
                        labels: Some(labels),
                        owner_references: Some(vec![owner::controller_ref(ds)]),
                        ..Default::default()
                    },
                    data: Some(RawExtension(data.clone())),
                    revision: max_revision + 1,
                })));
            }
            hash
        }
    };
    let is_updated = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
            == Some(&hash)
    };

    // Nodes and the pods on them.
    let template = &spec.template;
    let tolerations = tolerations_for(template);
    let pod_spec = template.spec.clone().unwrap_or_default();
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    let mut failed: Vec<Arc<Pod>> = Vec::new();
    for p in &owned {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if pods::phase(p) == "Failed" {
            failed.push(p.clone());
            continue;
        }
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p.clone());
        }
    }
    let mut states: Vec<NodeState> = Vec::new();
    for node in nodes {
        let name = util::name(&node.metadata).to_string();
        let fits = node_selector::node_matches(
            node,
            pod_spec.node_selector.as_ref(),
            pod_spec.affinity.as_ref(),
        );
        let node_taints = taints::node_taints(node);
        let should_run = fits
            && node.metadata.deletion_timestamp.is_none()
            && taints::untolerated(&node_taints, &tolerations, HARD_EFFECTS)
                .next()
                .is_none();
        let should_continue = fits
            && taints::untolerated(&node_taints, &tolerations, &[NO_EXECUTE])
                .next()
                .is_none();
        let mut on_node = by_node.remove(&name).unwrap_or_default();
        on_node.sort_by_key(|p| (pods::created(&p.metadata), p.metadata.name.clone()));
        states.push(NodeState {
            node,
            should_run,
            should_continue,
            pods: on_node,
        });
    }

    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        != Some("OnDelete");
    let desired = states.iter().filter(|s| s.should_run).count() as i32;
    let ru = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let invalid = |field: &str, m: String| Error::Invalid {
        object: format!(
            "daemonset \"{}/{}\"",
            util::namespace(&ds.metadata),
            util::name(&ds.metadata)
        ),
        message: format!("spec.updateStrategy.rollingUpdate.{field}: {m}"),
    };
    let max_surge = if rolling {
        util::scaled_value(ru.max_surge.as_ref(), "0", desired, true)
            .map_err(|m| invalid("maxSurge", m))?
    } else {
        0
    };
    let mut max_unavailable = util::scaled_value(ru.max_unavailable.as_ref(), "1", desired, true)
        .map_err(|m| invalid("maxUnavailable", m))?;
    if desired > 0 && max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }

    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut managed = false;
    if !deleting {
        // Failed daemon pods are deleted; the replacement follows after a back-off.
        for p in &failed {
            actions.push(Action::DeletePod(p.clone()));
            managed = true;
            requeue(FAILED_POD_BACKOFF);
        }
        let failed_nodes: Vec<String> = failed.iter().filter_map(|p| target_node(p)).collect();
        for s in &states {
            let name = util::name(&s.node.metadata);
            if s.should_run {
                if s.pods.is_empty() {
                    if failed_nodes.iter().any(|n| n == name) {
                        continue;
                    }
                    actions.push(Action::CreatePod {
                        node: name.to_string(),
                        pod: Box::new(new_pod(ds, template, &tolerations, &hash, name)),
                    });
                    managed = true;
                } else if s.pods.len() > 1 {
                    // Keep the oldest; with surge, the oldest updated and the oldest old one.
                    let mut keep: Vec<&Arc<Pod>> = Vec::new();
                    if max_surge > 0 {
                        keep.extend(s.pods.iter().find(|p| is_updated(p)));
                        keep.extend(s.pods.iter().find(|p| !is_updated(p)));
                    } else {
                        keep.push(&s.pods[0]);
                    }
                    for p in &s.pods {
                        if !keep.iter().any(|k| Arc::ptr_eq(k, p)) {
                            actions.push(Action::DeletePod(p.clone()));
                            managed = true;
                        }
                    }
                }
            } else if !s.should_continue {
                for p in &s.pods {
                    actions.push(Action::DeletePod(p.clone()));
                    managed = true;
                }
            }
        }
        // Unbound pods pinned to nodes that no longer exist.
        for (_, ps) in by_node.iter() {
            for p in ps {
                if pods::node_name(p).is_none() {
                    actions.push(Action::DeletePod(p.clone()));
                    managed = true;
                }
            }
        }
        if rolling && !managed {
            actions.extend(rolling_update(
                &states,
                &is_updated,
                max_surge,
                max_unavailable,
                min_ready,
                now,
                ds,
                template,
                &tolerations,
                &hash,
            ));
        }
    }

    // Status.
    let mut st = DaemonSetStatus {
        desired_number_scheduled: desired,
        observed_generation: ds.metadata.generation,
        collision_count: collisions,
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for s in &states {
        if s.should_run {
            if let Some(p) = s.pods.first() {
                st.current_number_scheduled += 1;
                if pods::is_ready(p) {
                    ready += 1;
                }
                match pods::available_in(p, min_ready, now) {
                    Some(d) if d.is_zero() => available += 1,
                    Some(d) => requeue(d),
                    None => {}
                }
                if s.pods.iter().any(|p| is_updated(p)) {
                    updated += 1;
                }
            }
        } else if !s.pods.is_empty() {
            st.number_misscheduled += 1;
        }
    }
    st.number_ready = ready;
    st.number_available = Some(available);
    st.number_unavailable = Some(desired - available);
    st.updated_number_scheduled = Some(updated);
    let old = ds.status.clone().unwrap_or_default();

    // History beyond revisionHistoryLimit that no pod uses any more.
    if let Some(limit) = spec.revision_history_limit {
        let live_hashes: Vec<String> = owned
            .iter()
            .filter_map(|p| {
                p.metadata
                    .labels
                    .as_ref()?
                    .get(CONTROLLER_REVISION_HASH_LABEL)
                    .cloned()
            })
            .collect();
        let mut old_revs: Vec<&Arc<ControllerRevision>> = mine
            .iter()
            .copied()
            .filter(|r| {
                let h = r
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL));
                h != Some(&hash) && !h.is_some_and(|h| live_hashes.contains(h))
            })
            .collect();
        old_revs.sort_by_key(|r| r.revision);
        let excess = old_revs.len() as i64 - i64::from(limit.max(0));
        for r in old_revs.into_iter().take(excess.max(0) as usize) {
            actions.push(Action::DeleteRevision(r.clone()));
        }
    }

    Ok(Plan {
        actions,
        status: (st != old).then_some(st),
        requeue_after,
    })
}

fn new_pod(
    ds: &DaemonSet,
    template: &PodTemplateSpec,
    tolerations: &[Toleration],
    hash: &str,
    node: &str,
) -> Pod {
    let mut pod = pods::from_template(
        Some(template),
        util::namespace(&ds.metadata),
        format!("{}-", util::name(&ds.metadata)),
        owner::controller_ref(ds),
    );
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.into());
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.tolerations = Some(tolerations.to_vec());
    spec.affinity = Some(pin_to(spec.affinity.take(), node));
    pod
}

/// Kubernetes' rollingUpdate for DaemonSets: without surge, delete old pods while at most
/// maxUnavailable nodes are down; with surge, start new pods beside old ones on at most
/// maxSurge nodes and delete the old pod once the new one is available.
#[allow(clippy::too_many_arguments)]
fn rolling_update(
    states: &[NodeState],
    is_updated: &dyn Fn(&Pod) -> bool,
    max_surge: i32,
    max_unavailable: i32,
    min_ready: i32,
    now: Timestamp,
    ds: &DaemonSet,
    template: &PodTemplateSpec,
    tolerations: &[Toleration],
    hash: &str,
) -> Vec<Action> {
    let available = |p: &Pod| pods::is_available(p, min_ready, now);
    let mut actions = Vec::new();
    // (updated pod, old pod) on the node; None when there are several of either.
    let on_node = |s: &NodeState| -> Option<NewAndOld> {
        let new: Vec<_> = s.pods.iter().filter(|p| is_updated(p)).cloned().collect();
        let old: Vec<_> = s.pods.iter().filter(|p| !is_updated(p)).cloned().collect();
        if new.len() > 1 || old.len() > 1 {
            return None;
        }
        Some((new.into_iter().next(), old.into_iter().next()))
    };
    let running: Vec<&NodeState> = states.iter().filter(|s| s.should_run).collect();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut free = Vec::new();
        let mut candidates = Vec::new();
        for s in &running {
            match on_node(s) {
                None => unavailable += 1,
                Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !available(&new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !available(&old) {
                        free.push(old);
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let budget = (max_unavailable - unavailable).max(0) as usize;
        for p in free.into_iter().chain(candidates.into_iter().take(budget)) {
            actions.push(Action::DeletePod(p));
        }
    } else {
        let mut surging = 0;
        let mut allowed = Vec::new();
        let mut candidates = Vec::new();
        for s in &running {
            let name = util::name(&s.node.metadata).to_string();
            match on_node(s) {
                None => surging += 1,
                Some((_, None)) => {}
                Some((None, Some(old))) => {
                    if !available(&old) {
                        allowed.push(name);
                    } else if surging < max_surge {
                        candidates.push(name);
                    }
                }
                Some((Some(new), Some(old))) => {
                    if available(&new) {
                        actions.push(Action::DeletePod(old));
                    } else {
                        surging += 1;
                    }
                }
            }
        }
        let budget = (max_surge - surging).max(0) as usize;
        for node in allowed
            .into_iter()
            .chain(candidates.into_iter().take(budget))
        {
            actions.push(Action::CreatePod {
                pod: Box::new(new_pod(ds, template, tolerations, hash, &node)),
                node,
            });
        }
    }
    actions
}
