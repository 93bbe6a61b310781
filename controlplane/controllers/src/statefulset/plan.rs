//! The StatefulSet planner, after Kubernetes' stateful set controller: pods `NAME-0..N-1`
//! with stable names, one PVC per claim template and ordinal (`CLAIM-NAME-ORDINAL`),
//! OrderedReady (one at a time, in order; scale down in reverse) or Parallel management,
//! RollingUpdate in reverse ordinal order down to the partition, OnDelete. A pod name is
//! never created while a pod with that name still exists (terminating included). No I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use corral_api::rules::owner;
use corral_api::rules::revision::{
    revision_data, revision_hash, template_of, CONTROLLER_REVISION_HASH_LABEL,
};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;

use crate::{pods, util, Error};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateClaim(Box<PersistentVolumeClaim>),
    CreatePod(Box<Pod>),
    DeletePod(Arc<Pod>),
    CreateRevision(Box<ControllerRevision>),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: Option<StatefulSetStatus>,
}

/// `NAME-<ordinal>` → ordinal, for pods of this set.
pub fn ordinal_of(set: &str, pod: &str) -> Option<usize> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        .then(|| rest.parse().ok())
        .flatten()
}

pub fn claim_name(claim: &str, set: &str, ordinal: usize) -> String {
    format!("{claim}-{set}-{ordinal}")
}

fn running_and_ready(p: &Pod) -> bool {
    pods::phase(p) == "Running" && pods::is_ready(p)
}

fn revision_label(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH_LABEL)
        .map(String::as_str)
}

fn new_pod(sts: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: usize) -> Pod {
    let spec = sts.spec.clone().unwrap_or_default();
    let set = util::name(&sts.metadata);
    let name = format!("{set}-{ordinal}");
    let mut pod = pods::from_template(
        Some(template),
        util::namespace(&sts.metadata),
        String::new(),
        owner::controller_ref(sts),
    );
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), revision.into());
    let ps = pod.spec.get_or_insert_with(Default::default);
    ps.hostname = Some(name);
    if !spec.service_name.as_deref().unwrap_or("").is_empty() {
        ps.subdomain = spec.service_name.clone();
    }
    let volumes = ps.volumes.get_or_insert_with(Vec::new);
    for claim in spec.volume_claim_templates.iter().flatten() {
        let cname = util::name(&claim.metadata).to_string();
        volumes.retain(|v| v.name != cname);
        volumes.push(Volume {
            name: cname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&cname, set, ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    pod
}

pub fn plan(
    sts: &StatefulSet,
    pods_in_ns: &[Arc<Pod>],
    claims_in_ns: &[Arc<PersistentVolumeClaim>],
    revisions_in_ns: &[Arc<ControllerRevision>],
    now: jiff::Timestamp,
) -> Result<Plan, Error> {
    let spec = sts.spec.clone().unwrap_or_default();
    let set = util::name(&sts.metadata).to_string();
    let uid = util::uid(&sts.metadata).to_string();
    let selector = util::selector_of("statefulset", &sts.metadata, Some(&spec.selector))?;
    let mut actions = Vec::new();

    // Revisions: the update revision is the current template's.
    let data = revision_data(&spec.template);
    let collisions = sts.status.as_ref().and_then(|s| s.collision_count);
    let mine: Vec<&Arc<ControllerRevision>> = revisions_in_ns
        .iter()
        .filter(|r| owner::is_controlled_by(&r.metadata, &uid))
        .collect();
    let hash_of = |r: &ControllerRevision| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
            .cloned()
    };
    let update_revision = match mine
        .iter()
        .find(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
    {
        Some(r) => hash_of(r).unwrap_or_else(|| revision_hash(&data, collisions)),
        None => {
            let hash = revision_hash(&data, collisions);
            let mut labels = spec.selector.match_labels.clone().unwrap_or_default();
            labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.clone());
            actions.push(Action::CreateRevision(Box::new(ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(format!("{set}-{hash}")),
                    namespace: sts.metadata.namespace.clone(),
                    labels: Some(labels),
                    owner_references: Some(vec![owner::controller_ref(sts)]),
                    ..Default::default()
                },
                data: Some(RawExtension(data.clone())),
                revision: mine.iter().map(|r| r.revision).max().unwrap_or(0) + 1,
            })));
            hash
        }
    };
    let old = sts.status.clone().unwrap_or_default();
    let current_revision = old
        .current_revision
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| update_revision.clone());
    let current_template = mine
        .iter()
        .find(|r| hash_of(r).as_deref() == Some(current_revision.as_str()))
        .and_then(|r| template_of(r))
        .unwrap_or_else(|| spec.template.clone());

    // Pods by ordinal (owned and matching).
    let mut by_ordinal: HashMap<usize, Arc<Pod>> = HashMap::new();
    for p in pods_in_ns {
        let owned = owner::is_controlled_by(&p.metadata, &uid);
        let matches = selector.matches(&util::labels(&p.metadata));
        if let (true, true, Some(o)) = (owned, matches, ordinal_of(&set, util::name(&p.metadata))) {
            by_ordinal.insert(o, p.clone());
        }
    }
    let replicas = spec.replicas.unwrap_or(1).max(0) as usize;
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref() != Some("OnDelete");
    let partition = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0) as usize;
    let claims: Vec<&str> = claims_in_ns
        .iter()
        .map(|c| util::name(&c.metadata))
        .collect();
    let deleting = sts.metadata.deletion_timestamp.is_some();

    if !deleting {
        // Create or repair 0..replicas in order.
        let mut blocked = false;
        for ord in 0..replicas {
            match by_ordinal.get(&ord) {
                None => {
                    if blocked {
                        break;
                    }
                    let (template, revision) = if rolling && ord < partition {
                        (&current_template, current_revision.as_str())
                    } else {
                        (&spec.template, update_revision.as_str())
                    };
                    for claim in spec.volume_claim_templates.iter().flatten() {
                        let cname = claim_name(util::name(&claim.metadata), &set, ord);
                        if !claims.contains(&cname.as_str()) {
                            let mut pvc = claim.clone();
                            let mut labels = pvc.metadata.labels.clone().unwrap_or_default();
                            labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
                            pvc.metadata = ObjectMeta {
                                name: Some(cname),
                                namespace: sts.metadata.namespace.clone(),
                                labels: Some(labels),
                                annotations: pvc.metadata.annotations.clone(),
                                ..Default::default()
                            };
                            pvc.status = None;
                            actions.push(Action::CreateClaim(Box::new(pvc)));
                        }
                    }
                    actions.push(Action::CreatePod(Box::new(new_pod(
                        sts, template, revision, ord,
                    ))));
                    if !parallel {
                        blocked = true;
                    }
                }
                Some(p)
                    if pods::phase(p) == "Failed" && p.metadata.deletion_timestamp.is_none() =>
                {
                    // Recreated under the same name once this one is gone.
                    actions.push(Action::DeletePod(p.clone()));
                    if !parallel {
                        blocked = true;
                    }
                }
                Some(p) => {
                    if !parallel
                        && (p.metadata.deletion_timestamp.is_some() || !running_and_ready(p))
                    {
                        blocked = true;
                    }
                }
            }
            if blocked && !parallel {
                break;
            }
        }
        // Scale down: highest ordinal first; OrderedReady waits for the rest to be healthy.
        let mut condemned: Vec<usize> = by_ordinal
            .keys()
            .copied()
            .filter(|o| *o >= replicas)
            .collect();
        condemned.sort_unstable_by(|a, b| b.cmp(a));
        let healthy_below = (0..replicas).all(|o| {
            by_ordinal
                .get(&o)
                .is_some_and(|p| running_and_ready(p) && p.metadata.deletion_timestamp.is_none())
        });
        for ord in condemned {
            let p = &by_ordinal[&ord];
            if p.metadata.deletion_timestamp.is_some() {
                if parallel {
                    continue;
                }
                break;
            }
            if !parallel && !healthy_below {
                break;
            }
            actions.push(Action::DeletePod(p.clone()));
            if !parallel {
                break;
            }
        }
        // Rolling update: with everything healthy, replace the highest outdated ordinal.
        let all_healthy = healthy_below && by_ordinal.len() == replicas;
        if rolling
            && all_healthy
            && !actions
                .iter()
                .any(|a| matches!(a, Action::DeletePod(_) | Action::CreatePod(_)))
        {
            for ord in (partition..replicas).rev() {
                let p = &by_ordinal[&ord];
                if revision_label(p) != Some(update_revision.as_str()) {
                    actions.push(Action::DeletePod(p.clone()));
                    break;
                }
            }
        }
    }

    // Status.
    let live: Vec<&Arc<Pod>> = by_ordinal
        .values()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let updated = live
        .iter()
        .filter(|p| revision_label(p) == Some(update_revision.as_str()))
        .count() as i32;
    let current = live
        .iter()
        .filter(|p| revision_label(p) == Some(current_revision.as_str()))
        .count() as i32;
    let ready = live.iter().filter(|p| pods::is_ready(p)).count() as i32;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let available = live
        .iter()
        .filter(|p| pods::is_available(p, min_ready, now))
        .count() as i32;
    let done = updated == replicas as i32 && live.len() == replicas;
    let status = StatefulSetStatus {
        replicas: live.len() as i32,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(if done { updated } else { current }),
        updated_replicas: Some(updated),
        current_revision: Some(if done {
            update_revision.clone()
        } else {
            current_revision
        }),
        update_revision: Some(update_revision),
        observed_generation: sts.metadata.generation,
        collision_count: collisions,
        conditions: old.conditions.clone(),
    };
    Ok(Plan {
        actions,
        status: (status != old).then_some(status),
    })
}
