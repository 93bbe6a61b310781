//! The Deployment planner, after Kubernetes' deployment controller: finds or creates the new
//! ReplicaSet (`NAME-<pod-template-hash>`), rolls (RollingUpdate or Recreate), scales
//! proportionally, cleans history and computes status and conditions. No I/O: the result is a
//! list of writes for the executor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::rules::owner;
use corral_api::rules::revision::{self, POD_TEMPLATE_HASH_LABEL};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::{pods, util, Error};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

const PROGRESSING: &str = "Progressing";
const AVAILABLE: &str = "Available";

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    AdoptReplicaSet(Arc<ReplicaSet>),
    ReleaseReplicaSet(Arc<ReplicaSet>),
    CreateReplicaSet(Box<ReplicaSet>),
    /// Write this ReplicaSet; `scaled_from` is its size before, when the plan resized it.
    UpdateReplicaSet {
        replica_set: Box<ReplicaSet>,
        scaled_from: Option<i32>,
    },
    DeleteReplicaSet(Arc<ReplicaSet>),
    /// Write the Deployment itself (its revision annotation).
    UpdateDeployment(Box<Deployment>),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: Option<DeploymentStatus>,
    pub requeue_after: Option<Duration>,
}

/// One ReplicaSet as the plan sees it: the stored object, and the copy being edited.
#[derive(Clone)]
struct Rs {
    stored: Option<Arc<ReplicaSet>>,
    rs: ReplicaSet,
}

impl Rs {
    fn replicas(&self) -> i32 {
        self.rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
    }
    fn status_replicas(&self) -> i32 {
        self.rs.status.as_ref().map_or(0, |s| s.replicas)
    }
    fn available(&self) -> i32 {
        self.rs
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
    }
    /// Available pods a scale-down may count on: never more than the size, because pods being
    /// removed still show in a status the ReplicaSet controller has not refreshed yet.
    fn available_capped(&self) -> i32 {
        self.available().min(self.replicas())
    }
    fn ready(&self) -> i32 {
        self.rs
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    }
    fn annotation(&self, key: &str) -> Option<&str> {
        self.rs
            .metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
    fn revision(&self) -> i64 {
        self.annotation(REVISION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    }
    fn name(&self) -> &str {
        util::name(&self.rs.metadata)
    }
    fn created(&self) -> Timestamp {
        pods::created(&self.rs.metadata)
    }
}

struct Planner<'a> {
    d: &'a Deployment,
    now: Timestamp,
    replicas: i32,
    rolling: bool,
    surge: i32,
    unavailable: i32,
    /// Owned ReplicaSets; `new` indexes the one matching the template.
    rss: Vec<Rs>,
    new: Option<usize>,
    creates: Vec<usize>,
    actions: Vec<Action>,
    conditions: Vec<DeploymentCondition>,
    collision_count: Option<i32>,
}

/// Kubernetes' fenceposts: surge rounds up, unavailable rounds down, never both zero.
pub fn fenceposts(d: &Deployment) -> Result<(i32, i32), Error> {
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let ru = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let invalid = |field: &str, message: String| Error::Invalid {
        object: format!(
            "deployment \"{}/{}\"",
            util::namespace(&d.metadata),
            util::name(&d.metadata)
        ),
        message: format!("spec.strategy.rollingUpdate.{field}: {message}"),
    };
    let surge = util::scaled_value(ru.max_surge.as_ref(), "25%", replicas, true)
        .map_err(|m| invalid("maxSurge", m))?;
    let mut unavailable = util::scaled_value(ru.max_unavailable.as_ref(), "25%", replicas, false)
        .map_err(|m| invalid("maxUnavailable", m))?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        != Some("Recreate")
}

/// The template without the hash label, as JSON, for comparing templates.
fn template_key(t: Option<&PodTemplateSpec>) -> serde_json::Value {
    let mut t = t.cloned().unwrap_or_default();
    if let Some(m) = t.metadata.as_mut() {
        if let Some(l) = m.labels.as_mut() {
            l.remove(POD_TEMPLATE_HASH_LABEL);
            if l.is_empty() {
                m.labels = None;
            }
        }
    }
    serde_json::to_value(&t).unwrap_or_default()
}

/// `NAME-<hash>` and the hash for the Deployment's current template.
pub fn new_replica_set_name(d: &Deployment) -> (String, String) {
    let spec = d.spec.clone().unwrap_or_default();
    let collisions = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = revision::template_hash(&spec.template, collisions);
    (format!("{}-{}", util::name(&d.metadata), hash), hash)
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Kubernetes' SetDeploymentCondition: same status and reason leaves it untouched; a same
/// status keeps the transition time.
fn set_condition(conds: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition) {
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

fn get_condition<'c>(
    conds: &'c [DeploymentCondition],
    type_: &str,
) -> Option<&'c DeploymentCondition> {
    conds.iter().find(|c| c.type_ == type_)
}

pub fn plan(
    d: &Deployment,
    replica_sets: &[Arc<ReplicaSet>],
    pods_in_ns: &[Arc<Pod>],
    now: Timestamp,
) -> Result<Plan, Error> {
    let spec = d.spec.clone().unwrap_or_default();
    let selector = util::selector_of("deployment", &d.metadata, Some(&spec.selector))?;
    let (surge, unavailable) = fenceposts(d)?;
    let uid = util::uid(&d.metadata);
    let deleting = d.metadata.deletion_timestamp.is_some();
    let mut actions = Vec::new();
    let mut rss = Vec::new();
    for rs in replica_sets {
        let matches = selector.matches(&util::labels(&rs.metadata));
        match owner::controller_of(&rs.metadata) {
            Some(o) if o.uid == uid => {
                if matches || deleting {
                    rss.push(rs.clone());
                } else {
                    actions.push(Action::ReleaseReplicaSet(rs.clone()));
                }
            }
            Some(_) => {}
            None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                actions.push(Action::AdoptReplicaSet(rs.clone()));
                rss.push(rs.clone());
            }
            None => {}
        }
    }
    rss.sort_by_key(|r| (pods::created(&r.metadata), r.metadata.name.clone()));
    let want = template_key(Some(&spec.template));
    let new = rss
        .iter()
        .position(|r| template_key(r.spec.as_ref().and_then(|s| s.template.as_ref())) == want);
    let status = d.status.clone().unwrap_or_default();
    let mut p = Planner {
        d,
        now,
        replicas: spec.replicas.unwrap_or(1),
        rolling: is_rolling(d),
        surge,
        unavailable,
        rss: rss
            .into_iter()
            .map(|r| Rs {
                rs: (*r).clone(),
                stored: Some(r),
            })
            .collect(),
        new,
        creates: Vec::new(),
        actions,
        conditions: status.conditions.clone().unwrap_or_default(),
        collision_count: status.collision_count,
    };

    if deleting {
        return Ok(p.finish(false));
    }
    p.check_paused_conditions();
    let paused = spec.paused.unwrap_or(false);
    if paused || p.is_scaling_event() {
        p.sync_revision(false, pods_in_ns)?;
        p.scale();
        if paused {
            p.cleanup();
        }
        return Ok(p.finish(false));
    }
    if p.rolling {
        if !p.sync_revision(true, pods_in_ns)? {
            return Ok(p.finish(false));
        }
        if p.reconcile_new() {
            return Ok(p.finish(true));
        }
        if p.reconcile_old() {
            return Ok(p.finish(true));
        }
    } else {
        p.sync_revision(false, pods_in_ns)?;
        if p.scale_down_old_for_recreate() || p.old_pods_running(pods_in_ns) {
            return Ok(p.finish(true));
        }
        if p.new.is_none() && !p.sync_revision(true, pods_in_ns)? {
            return Ok(p.finish(false));
        }
        if let Some(n) = p.new {
            p.scale_rs(n, p.replicas);
        }
    }
    if p.complete(&p.calculate_status()) {
        p.cleanup();
    }
    Ok(p.finish(true))
}

impl Planner<'_> {
    fn max_surge(&self) -> i32 {
        if self.rolling {
            self.surge
        } else {
            0
        }
    }

    fn max_unavailable(&self) -> i32 {
        if !self.rolling || self.replicas == 0 {
            0
        } else {
            self.unavailable.min(self.replicas)
        }
    }

    fn old(&self) -> Vec<usize> {
        (0..self.rss.len())
            .filter(|i| Some(*i) != self.new)
            .collect()
    }

    fn all_spec(&self) -> i32 {
        self.rss.iter().map(Rs::replicas).sum()
    }

    fn rs_name(&self) -> String {
        self.new
            .map(|n| self.rss[n].name().to_string())
            .unwrap_or_default()
    }

    fn check_paused_conditions(&mut self) {
        let spec = self.d.spec.as_ref();
        if spec.and_then(|s| s.progress_deadline_seconds).is_none() {
            return;
        }
        let paused = spec.and_then(|s| s.paused).unwrap_or(false);
        let cur = get_condition(&self.conditions, PROGRESSING);
        let reason = cur.and_then(|c| c.reason.as_deref());
        if reason == Some("ProgressDeadlineExceeded") {
            return;
        }
        let paused_cond = reason == Some("DeploymentPaused");
        if paused && !paused_cond {
            let c = condition(
                PROGRESSING,
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
                self.now,
            );
            set_condition(&mut self.conditions, c);
        } else if !paused && paused_cond {
            let c = condition(
                PROGRESSING,
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
                self.now,
            );
            set_condition(&mut self.conditions, c);
        }
    }

    /// Kubernetes' isScalingEvent: an active ReplicaSet was sized for another replica count.
    fn is_scaling_event(&self) -> bool {
        let want = self.replicas.to_string();
        self.rss
            .iter()
            .filter(|r| r.replicas() > 0)
            .any(|r| r.annotation(DESIRED_REPLICAS).is_some_and(|d| d != want))
    }

    fn set_replicas_annotations(&self, rs: &mut ReplicaSet) -> bool {
        let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
        let desired = self.replicas.to_string();
        let max = (self.replicas + self.max_surge()).to_string();
        let changed =
            a.get(DESIRED_REPLICAS) != Some(&desired) || a.get(MAX_REPLICAS) != Some(&max);
        a.insert(DESIRED_REPLICAS.into(), desired);
        a.insert(MAX_REPLICAS.into(), max);
        changed
    }

    /// Copies the Deployment's annotations and sets the revision on the new ReplicaSet.
    fn set_new_rs_annotations(&self, rs: &mut ReplicaSet, revision: i64) -> bool {
        let before = rs.metadata.annotations.clone();
        let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
        for (k, v) in self.d.metadata.annotations.iter().flatten() {
            let skip = [
                LAST_APPLIED,
                REVISION,
                REVISION_HISTORY,
                DESIRED_REPLICAS,
                MAX_REPLICAS,
            ];
            if !skip.contains(&k.as_str()) {
                a.insert(k.clone(), v.clone());
            }
        }
        let old: i64 = a.get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0);
        if old < revision {
            if old > 0 {
                let history = match a.get(REVISION_HISTORY) {
                    Some(h) if !h.is_empty() => format!("{h},{old}"),
                    _ => old.to_string(),
                };
                a.insert(REVISION_HISTORY.into(), history);
            }
            a.insert(REVISION.into(), revision.to_string());
        }
        rs.metadata.annotations != before
    }

    /// Kubernetes' getAllReplicaSetsAndSyncRevision: keeps the new ReplicaSet's revision the
    /// highest (creating it when asked) and the Deployment's revision annotation in step.
    /// Returns false when the new ReplicaSet could not be made (name collision).
    fn sync_revision(&mut self, create: bool, _pods: &[Arc<Pod>]) -> Result<bool, Error> {
        let max_old = self
            .old()
            .iter()
            .map(|i| self.rss[*i].revision())
            .max()
            .unwrap_or(0);
        let revision = max_old + 1;
        let spec = self.d.spec.clone().unwrap_or_default();
        let min_ready = spec.min_ready_seconds;
        if let Some(n) = self.new {
            let mut rs = self.rss[n].rs.clone();
            let mut changed = self.set_new_rs_annotations(&mut rs, revision);
            let s = rs.spec.get_or_insert_with(Default::default);
            if s.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0) {
                s.min_ready_seconds = min_ready;
                changed = true;
            }
            if changed {
                self.rss[n].rs = rs;
            }
        } else if create {
            let (name, hash) = new_replica_set_name(self.d);
            let taken = self.rss.iter().any(|r| r.name() == name);
            if taken {
                // Same name, different template: count a collision so the next hash differs.
                self.collision_count = Some(self.collision_count.unwrap_or(0) + 1);
                return Ok(false);
            }
            let mut template = spec.template.clone();
            template
                .metadata
                .get_or_insert_with(Default::default)
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
            let mut selector = spec.selector.clone();
            selector
                .match_labels
                .get_or_insert_with(BTreeMap::new)
                .insert(POD_TEMPLATE_HASH_LABEL.into(), hash);
            let mut rs = ReplicaSet {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: self.d.metadata.namespace.clone(),
                    labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                    owner_references: Some(vec![owner::controller_ref(self.d)]),
                    ..Default::default()
                },
                spec: Some(ReplicaSetSpec {
                    replicas: Some(0),
                    min_ready_seconds: min_ready,
                    selector,
                    template: Some(template),
                }),
                status: None,
            };
            self.set_new_rs_annotations(&mut rs, revision);
            self.set_replicas_annotations(&mut rs);
            self.rss.push(Rs { stored: None, rs });
            let n = self.rss.len() - 1;
            self.new = Some(n);
            let size = self.new_rs_new_replicas(n);
            self.rss[n]
                .rs
                .spec
                .get_or_insert_with(Default::default)
                .replicas = Some(size);
            self.creates.push(n);
            let c = condition(
                PROGRESSING,
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set \"{}\"", self.rss[n].name()),
                self.now,
            );
            set_condition(&mut self.conditions, c);
        }
        Ok(true)
    }

    /// Kubernetes' NewRSNewReplicas.
    fn new_rs_new_replicas(&self, n: usize) -> i32 {
        if !self.rolling {
            return self.replicas;
        }
        let current = self.all_spec();
        let max_total = self.replicas + self.max_surge();
        let new_size = self.rss[n].replicas();
        if current >= max_total {
            return new_size;
        }
        let up = (max_total - current).min(self.replicas - new_size).max(0);
        new_size + up
    }

    /// Resizes one ReplicaSet (and its replica annotations). True when the size changed.
    fn scale_rs(&mut self, i: usize, size: i32) -> bool {
        let size = size.max(0);
        let mut rs = self.rss[i].rs.clone();
        let resized = self.rss[i].replicas() != size;
        rs.spec.get_or_insert_with(Default::default).replicas = Some(size);
        let annotated = self.set_replicas_annotations(&mut rs);
        if resized || annotated {
            self.rss[i].rs = rs;
        }
        resized
    }

    fn reconcile_new(&mut self) -> bool {
        let Some(n) = self.new else { return false };
        let size = self.rss[n].replicas();
        if size == self.replicas {
            return false;
        }
        if size > self.replicas {
            return self.scale_rs(n, self.replicas);
        }
        let target = self.new_rs_new_replicas(n);
        self.scale_rs(n, target)
    }

    fn old_by_creation(&self) -> Vec<usize> {
        let mut old = self.old();
        old.sort_by_key(|i| (self.rss[*i].created(), self.rss[*i].name().to_string()));
        old
    }

    fn reconcile_old(&mut self) -> bool {
        let old: Vec<usize> = self
            .old()
            .into_iter()
            .filter(|i| self.rss[*i].replicas() > 0)
            .collect();
        let old_pods: i32 = old.iter().map(|i| self.rss[*i].replicas()).sum();
        if old_pods == 0 {
            return false;
        }
        let all_pods = self.all_spec();
        let min_available = self.replicas - self.max_unavailable();
        let new_unavailable = self.new.map_or(0, |n| {
            self.rss[n].replicas() - self.rss[n].available_capped()
        });
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        // First the old pods that are not available anyway.
        let mut cleaned = 0;
        for i in self.old_by_creation() {
            if cleaned >= max_scaled_down {
                break;
            }
            let (spec, avail) = (self.rss[i].replicas(), self.rss[i].available_capped());
            if spec == 0 || spec == avail {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(spec - avail);
            self.scale_rs(i, spec - down);
            cleaned += down;
        }
        // Then available old pods, as long as enough stay available.
        let available: i32 = self.rss.iter().map(Rs::available_capped).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for i in self.old_by_creation() {
                if scaled >= total {
                    break;
                }
                let spec = self.rss[i].replicas();
                if spec == 0 {
                    continue;
                }
                let down = spec.min(total - scaled);
                self.scale_rs(i, spec - down);
                scaled += down;
            }
        }
        cleaned + scaled > 0
    }

    fn scale_down_old_for_recreate(&mut self) -> bool {
        let mut scaled = false;
        for i in self.old() {
            if self.rss[i].replicas() != 0 {
                scaled |= self.scale_rs(i, 0);
            }
        }
        scaled
    }

    /// Recreate waits until no pod of an old ReplicaSet runs (terminating ones included).
    fn old_pods_running(&self, pods_in_ns: &[Arc<Pod>]) -> bool {
        let old = self.old();
        if old
            .iter()
            .map(|i| self.rss[*i].status_replicas())
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let uids: Vec<&str> = old
            .iter()
            .map(|i| util::uid(&self.rss[*i].rs.metadata))
            .collect();
        pods_in_ns.iter().any(|p| {
            owner::controller_of(&p.metadata).is_some_and(|o| uids.contains(&o.uid.as_str()))
                && !pods::is_terminal(p)
        })
    }

    /// Kubernetes' scale(): one active ReplicaSet takes the new size; a saturated new one lets
    /// the old go; otherwise proportional scaling by each ReplicaSet's share.
    fn scale(&mut self) {
        let active: Vec<usize> = (0..self.rss.len())
            .filter(|i| self.rss[*i].replicas() > 0)
            .collect();
        let latest = match (active.len(), self.new) {
            (1, _) => Some(active[0]),
            (0, Some(n)) => Some(n),
            (0, None) => {
                let mut old = self.old_by_creation();
                old.pop()
            }
            _ => None,
        };
        if let Some(i) = latest {
            self.scale_rs(i, self.replicas);
            return;
        }
        if let Some(n) = self.new {
            let r = &self.rss[n];
            let saturated = r.replicas() == self.replicas
                && r.annotation(DESIRED_REPLICAS) == Some(self.replicas.to_string().as_str())
                && r.available() == self.replicas;
            if saturated {
                for i in self.old() {
                    if self.rss[i].replicas() > 0 {
                        self.scale_rs(i, 0);
                    }
                }
                return;
            }
        }
        if !self.rolling {
            return;
        }
        let all: i32 = active.iter().map(|i| self.rss[*i].replicas()).sum();
        let allowed = if self.replicas > 0 {
            self.replicas + self.max_surge()
        } else {
            0
        };
        let to_add = allowed - all;
        let mut order = active.clone();
        // Scaling up: bigger (then newer) first; scaling down: bigger (then older) first.
        order.sort_by(|a, b| {
            let (ra, rb) = (&self.rss[*a], &self.rss[*b]);
            rb.replicas().cmp(&ra.replicas()).then_with(|| {
                if to_add > 0 {
                    rb.created().cmp(&ra.created())
                } else {
                    ra.created().cmp(&rb.created())
                }
            })
        });
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut sizes: Vec<(usize, i32)> = Vec::new();
        let mut added = 0;
        for i in &order {
            let r = &self.rss[*i];
            let proportion = if r.replicas() == 0 || to_add == 0 || to_add == added {
                0
            } else {
                let fraction = if self.replicas == 0 {
                    -r.replicas()
                } else {
                    let max = self.replicas + self.max_surge();
                    let annotated = r
                        .annotation(MAX_REPLICAS)
                        .and_then(|m| m.parse::<i32>().ok())
                        .filter(|m| *m != 0)
                        .unwrap_or(status_replicas);
                    if annotated == 0 {
                        0
                    } else {
                        let size =
                            (r.replicas() as f64 * max as f64 / annotated as f64).round() as i32;
                        size - r.replicas()
                    }
                };
                let allowed = to_add - added;
                if to_add > 0 {
                    fraction.min(allowed)
                } else {
                    fraction.max(allowed)
                }
            };
            added += proportion;
            sizes.push((*i, r.replicas() + proportion));
        }
        if let Some(first) = sizes.first_mut() {
            if to_add != 0 {
                first.1 = (first.1 + to_add - added).max(0);
            }
        }
        for (i, size) in sizes {
            self.scale_rs(i, size);
        }
    }

    /// Deletes old, empty ReplicaSets beyond revisionHistoryLimit, oldest revision first.
    fn cleanup(&mut self) {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return;
        };
        let mut old: Vec<usize> = self
            .old()
            .into_iter()
            .filter(|i| {
                self.rss[*i].stored.is_some()
                    && self.rss[*i].rs.metadata.deletion_timestamp.is_none()
            })
            .collect();
        let diff = old.len() as i64 - i64::from(limit.max(0));
        if diff <= 0 {
            return;
        }
        old.sort_by_key(|i| (self.rss[*i].revision(), self.rss[*i].created()));
        for i in old.into_iter().take(diff as usize) {
            let r = &self.rss[i];
            let observed =
                r.rs.status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .unwrap_or(0);
            if r.status_replicas() != 0
                || r.replicas() != 0
                || r.rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            if let Some(stored) = &r.stored {
                self.actions.push(Action::DeleteReplicaSet(stored.clone()));
            }
        }
    }

    fn calculate_status(&self) -> DeploymentStatus {
        let available: i32 = self.rss.iter().map(Rs::available).sum();
        let total: i32 = self.all_spec();
        let old = self.d.status.clone().unwrap_or_default();
        DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(self.rss.iter().map(Rs::status_replicas).sum()),
            updated_replicas: Some(self.new.map_or(0, |n| self.rss[n].status_replicas())),
            ready_replicas: Some(self.rss.iter().map(Rs::ready).sum()),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            collision_count: self.collision_count,
            conditions: None,
            terminating_replicas: old.terminating_replicas,
        }
    }

    fn complete(&self, s: &DeploymentStatus) -> bool {
        let r = Some(self.replicas);
        s.updated_replicas == r
            && s.replicas == r
            && s.available_replicas == r
            && s.observed_generation >= self.d.metadata.generation
    }

    fn progress_deadline(&self) -> Option<i32> {
        self.d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .filter(|s| *s != i32::MAX)
    }

    /// Builds the status; `rollout` adds Kubernetes' Progressing condition bookkeeping.
    fn finish(mut self, rollout: bool) -> Plan {
        let mut status = self.calculate_status();
        let min_available = self.replicas - self.max_unavailable();
        let avail = if status.available_replicas.unwrap_or(0) >= min_available {
            condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                self.now,
            )
        } else {
            condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                self.now,
            )
        };
        set_condition(&mut self.conditions, avail);
        let mut requeue_after = None;
        if rollout {
            let deadline = self.progress_deadline();
            if deadline.is_none() {
                self.conditions.retain(|c| c.type_ != PROGRESSING);
            }
            let cur = get_condition(&self.conditions, PROGRESSING).cloned();
            let reason = cur.as_ref().and_then(|c| c.reason.clone());
            let already_complete = status.replicas == status.updated_replicas
                && reason.as_deref() == Some("NewReplicaSetAvailable");
            let name = self.rs_name();
            if let (Some(deadline), false) = (deadline, already_complete) {
                let old = self.d.status.clone().unwrap_or_default();
                let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
                let new_old = status.replicas.unwrap_or(0) - status.updated_replicas.unwrap_or(0);
                let n = |v: Option<i32>| v.unwrap_or(0);
                let progressing = n(status.updated_replicas) > n(old.updated_replicas)
                    || new_old < old_old
                    || n(status.ready_replicas) > n(old.ready_replicas)
                    || n(status.available_replicas) > n(old.available_replicas);
                let timed_out = match reason.as_deref() {
                    Some("ProgressDeadlineExceeded") => true,
                    Some("NewReplicaSetAvailable") | None => false,
                    _ => cur
                        .as_ref()
                        .and_then(|c| c.last_update_time.as_ref())
                        .is_some_and(|t| {
                            t.0.as_second() + i64::from(deadline) < self.now.as_second()
                        }),
                };
                if self.complete(&status) {
                    let c = condition(
                        PROGRESSING,
                        "True",
                        "NewReplicaSetAvailable",
                        format!("ReplicaSet \"{name}\" has successfully progressed."),
                        self.now,
                    );
                    set_condition(&mut self.conditions, c);
                } else if progressing {
                    let mut c = condition(
                        PROGRESSING,
                        "True",
                        "ReplicaSetUpdated",
                        format!("ReplicaSet \"{name}\" is progressing."),
                        self.now,
                    );
                    if let Some(cur) = cur.as_ref().filter(|c| c.status == "True") {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    self.conditions.retain(|x| x.type_ != PROGRESSING);
                    self.conditions.push(c);
                } else if timed_out {
                    let c = condition(
                        PROGRESSING,
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("ReplicaSet \"{name}\" has timed out progressing."),
                        self.now,
                    );
                    set_condition(&mut self.conditions, c);
                }
            }
            // Look again when the deadline would pass without progress.
            if let (Some(deadline), Some(c)) =
                (deadline, get_condition(&self.conditions, PROGRESSING))
            {
                let done = self.complete(&status)
                    || c.reason.as_deref() == Some("ProgressDeadlineExceeded");
                if let (false, Some(t)) = (done, c.last_update_time.as_ref()) {
                    let at = t.0.as_second() + i64::from(deadline) + 1;
                    let left = (at - self.now.as_second()).max(1);
                    requeue_after = Some(Duration::from_secs(left as u64));
                }
            }
        }
        self.conditions
            .sort_by_key(|c| if c.type_ == AVAILABLE { 0 } else { 1 });
        status.conditions = (!self.conditions.is_empty()).then(|| self.conditions.clone());

        let mut actions = std::mem::take(&mut self.actions);
        let mut writes = Vec::new();
        for (i, r) in self.rss.iter().enumerate() {
            if self.creates.contains(&i) {
                writes.push(Action::CreateReplicaSet(Box::new(r.rs.clone())));
            } else if let Some(stored) = &r.stored {
                if **stored != r.rs {
                    let before = stored.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                    writes.push(Action::UpdateReplicaSet {
                        replica_set: Box::new(r.rs.clone()),
                        scaled_from: (before != r.replicas()).then_some(before),
                    });
                }
            }
        }
        // Deletions (history cleanup) go last, after the writes that made them possible.
        let deletes: Vec<Action> = actions
            .iter()
            .filter(|a| matches!(a, Action::DeleteReplicaSet(_)))
            .cloned()
            .collect();
        actions.retain(|a| !matches!(a, Action::DeleteReplicaSet(_)));
        actions.extend(writes);
        // The Deployment's revision follows its new ReplicaSet.
        if let Some(n) = self.new {
            let rev = self.rss[n].annotation(REVISION).map(str::to_string);
            let cur = self
                .d
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .cloned();
            if rev.is_some() && rev != cur {
                let mut d = self.d.clone();
                d.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(REVISION.into(), rev.unwrap_or_default());
                actions.push(Action::UpdateDeployment(Box::new(d)));
            }
        }
        actions.extend(deletes);
        let old = self.d.status.clone().unwrap_or_default();
        Plan {
            actions,
            status: (status != old).then_some(status),
            requeue_after,
        }
    }
}
