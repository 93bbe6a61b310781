//! What a pod worker knows about its containers, the pure decisions taken on it (start now,
//! wait for back-off, leave stopped) and the Kubernetes status computed from it. No I/O here:
//! everything is table-tested.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Kubernetes' container restart back-off: 10 s doubling to 5 min, reset after 10 min of
/// running without a crash.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub container_id: String,
    pub exit_code: i32,
    pub reason: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

impl Terminated {
    pub fn reason_for(exit_code: i32, oom_killed: bool) -> &'static str {
        if oom_killed {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Current {
    Running { started_at: Timestamp },
    Exited(Terminated),
}

/// One container of the pod, across its attempts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerRecord {
    /// Runtime id of the newest attempt, when one exists.
    pub id: Option<String>,
    /// Number of the newest attempt (0-based); also Kubernetes' restartCount.
    pub attempt: u32,
    pub current: Option<Current>,
    /// The attempt before the current one, once it has exited.
    pub last: Option<Terminated>,
    /// Why nothing runs (ContainerCreating, CrashLoopBackOff, ErrImagePull, ...).
    pub waiting: Option<(String, String)>,
    /// Delay the next restart waits; grows with each crash.
    pub backoff: Duration,
    /// No new attempt before this instant (back-off or retry after an error).
    pub not_before: Option<Timestamp>,
    pub image_id: String,
    /// Consecutive image pull failures (ErrImagePull first, then ImagePullBackOff).
    pub pull_failures: u32,
    /// Readiness probe result of the running attempt; `None` when it has no readiness probe.
    pub probe_ready: Option<bool>,
    /// Startup probe result of the running attempt; `None` when it has no startup probe.
    pub probe_started: Option<bool>,
    /// The running attempt's postStart hook has not finished: as in kubelet, the container
    /// is not shown Running (nor started, nor ready) until it has.
    pub post_start_pending: bool,
}

impl ContainerRecord {
    /// Running, and past its postStart hook.
    fn shown_running(&self) -> bool {
        matches!(self.current, Some(Current::Running { .. })) && !self.post_start_pending
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn of(pod: &Pod) -> Self {
        match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Running, or exited for good: nothing to do.
    Keep,
    /// Start a new attempt now.
    Start,
    /// Start later; until then the container waits with this reason.
    WaitUntil(Timestamp),
}

/// What to do with one container now.
pub fn decide(rec: &ContainerRecord, policy: RestartPolicy, now: Timestamp) -> Decision {
    let due = |rec: &ContainerRecord| match rec.not_before {
        Some(t) if t > now => Decision::WaitUntil(t),
        _ => Decision::Start,
    };
    match &rec.current {
        Some(Current::Running { .. }) => Decision::Keep,
        Some(Current::Exited(t)) if !policy.restarts(t.exit_code) => Decision::Keep,
        Some(Current::Exited(_)) => due(rec),
        None => due(rec),
    }
}

/// Records an exit; schedules the restart the policy calls for, with back-off.
pub fn on_exit(
    rec: &mut ContainerRecord,
    t: Terminated,
    policy: RestartPolicy,
    backoff: &BackoffPolicy,
) {
    let ran = t.finished_at.duration_since(t.started_at);
    if ran.as_secs() >= backoff.reset_after.as_secs() as i64 {
        rec.backoff = Duration::ZERO;
    }
    if policy.restarts(t.exit_code) {
        let delay = rec.backoff;
        rec.not_before = Some(t.finished_at + delay);
        rec.backoff = if delay.is_zero() {
            backoff.initial
        } else {
            (delay * 2).min(backoff.max)
        };
        rec.waiting = None;
        if !delay.is_zero() {
            rec.waiting = Some((
                "CrashLoopBackOff".into(),
                format!("back-off {}s restarting failed container", delay.as_secs()),
            ));
        }
    }
    rec.current = Some(Current::Exited(t));
    rec.post_start_pending = false;
}

/// Records a failed start/pull and when to retry.
pub fn on_failure(
    rec: &mut ContainerRecord,
    reason: &str,
    message: String,
    now: Timestamp,
    backoff: &BackoffPolicy,
) {
    let delay = if rec.backoff.is_zero() {
        backoff.initial
    } else {
        rec.backoff
    };
    rec.not_before = Some(now + delay);
    rec.backoff = (delay * 2).min(backoff.max);
    rec.waiting = Some((reason.to_string(), message));
}

/// How kubelet reports an attempt whose runtime state vanished (containerd or the node
/// restarted): exited with code 255, reason "Unknown".
pub const LOST_EXIT_CODE: i32 = 255;
pub const LOST_REASON: &str = "Unknown";

fn from_api_terminated(t: &ContainerStateTerminated, now: Timestamp) -> Terminated {
    Terminated {
        container_id: strip_runtime(t.container_id.as_deref().unwrap_or("")).to_string(),
        exit_code: t.exit_code,
        reason: t
            .reason
            .clone()
            .unwrap_or_else(|| Terminated::reason_for(t.exit_code, false).to_string()),
        started_at: t.started_at.as_ref().map_or(now, |s| s.0),
        finished_at: t.finished_at.as_ref().map_or(now, |s| s.0),
    }
}

/// `containerd://abc` → `abc`.
pub fn strip_runtime(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

/// The newest attempt the API last showed for a container, as an exit: one shown running
/// whose task is gone now exited "Unknown" (255) as kubelet reports it; one shown terminated
/// keeps its exit. None when the API shows no started attempt.
pub fn lost_attempt(status: &ContainerStatus, now: Timestamp) -> Option<Terminated> {
    let state = status.state.as_ref()?;
    if let Some(r) = &state.running {
        return Some(Terminated {
            container_id: strip_runtime(status.container_id.as_deref().unwrap_or("")).to_string(),
            exit_code: LOST_EXIT_CODE,
            reason: LOST_REASON.into(),
            started_at: r.started_at.as_ref().map_or(now, |s| s.0),
            finished_at: now,
        });
    }
    state
        .terminated
        .as_ref()
        .map(|t| from_api_terminated(t, now))
}

/// The record of a container the runtime has nothing of any more (its containers were lost
/// with containerd's state), rebuilt from its last API status so that the restart count goes
/// on: the next attempt is `restartCount + 1` with the lost one as lastState. None for a
/// container that never started, which starts as attempt 0.
pub fn record_from_status(
    status: &ContainerStatus,
    policy: RestartPolicy,
    backoff: &BackoffPolicy,
    now: Timestamp,
) -> Option<ContainerRecord> {
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| from_api_terminated(t, now));
    let mut rec = ContainerRecord {
        attempt: status.restart_count.max(0) as u32,
        image_id: status.image_id.clone(),
        ..Default::default()
    };
    // Shown running or terminated: that attempt is the exit. Shown waiting after an exit
    // (back-off): the lastState exit is the newest attempt.
    let newest = match lost_attempt(status, now) {
        Some(t) => {
            rec.last = last;
            t
        }
        None => last?,
    };
    rec.id = Some(newest.container_id.clone()).filter(|id| !id.is_empty());
    on_exit(&mut rec, newest, policy, backoff);
    Some(rec)
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn terminated_state(t: &Terminated) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: t.exit_code,
            reason: Some(t.reason.clone()),
            started_at: Some(time(t.started_at)),
            finished_at: Some(time(t.finished_at)),
            container_id: Some(format!("containerd://{}", t.container_id)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The status of one container as Kubernetes shows it.
pub fn container_status(
    name: &str,
    image: &str,
    rec: &ContainerRecord,
    policy: RestartPolicy,
    now: Timestamp,
) -> ContainerStatus {
    let waiting = |reason: &str, message: &str| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: Some(message.to_string()).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    };
    let (state, last) = match (&rec.current, decide(rec, policy, now)) {
        (Some(Current::Running { .. }), _) if rec.post_start_pending => (
            waiting("ContainerCreating", ""),
            rec.last.as_ref().map(terminated_state),
        ),
        (Some(Current::Running { started_at }), _) => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time(*started_at)),
                }),
                ..Default::default()
            },
            rec.last.as_ref().map(terminated_state),
        ),
        (Some(Current::Exited(t)), Decision::Keep) => {
            (terminated_state(t), rec.last.as_ref().map(terminated_state))
        }
        (Some(Current::Exited(t)), _) => {
            let (r, m) = rec
                .waiting
                .clone()
                .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
            (waiting(&r, &m), Some(terminated_state(t)))
        }
        (None, _) => {
            let (r, m) = rec
                .waiting
                .clone()
                .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
            (waiting(&r, &m), rec.last.as_ref().map(terminated_state))
        }
    };
    let started = rec.shown_running() && rec.probe_started.unwrap_or(true);
    ContainerStatus {
        name: name.to_string(),
        image: image.to_string(),
        image_id: rec.image_id.clone(),
        container_id: rec
            .id
            .as_ref()
            .filter(|_| rec.current.is_some())
            .map(|id| format!("containerd://{id}")),
        ready: started && rec.probe_ready.unwrap_or(true),
        started: Some(started),
        restart_count: rec.attempt as i32,
        state: Some(state),
        last_state: Some(last.unwrap_or_default()),
        ..Default::default()
    }
}

/// Kubernetes' pod phase from its containers.
pub fn phase(records: &[&ContainerRecord], policy: RestartPolicy) -> &'static str {
    if records.is_empty() {
        return "Pending";
    }
    let never_ran = records
        .iter()
        .any(|r| (r.current.is_none() || r.post_start_pending) && r.last.is_none());
    if never_ran {
        return "Pending";
    }
    let running = records.iter().any(|r| r.shown_running());
    if running {
        return "Running";
    }
    let exits: Vec<i32> = records
        .iter()
        .filter_map(|r| match &r.current {
            Some(Current::Exited(t)) => Some(t.exit_code),
            _ => r.last.as_ref().map(|t| t.exit_code),
        })
        .collect();
    match policy {
        RestartPolicy::Always => "Running",
        RestartPolicy::OnFailure if exits.iter().all(|c| *c == 0) => "Succeeded",
        RestartPolicy::OnFailure => "Running",
        RestartPolicy::Never if exits.iter().any(|c| *c != 0) => "Failed",
        RestartPolicy::Never => "Succeeded",
    }
}

/// Facts about the pod's sandbox for its status.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Option<Timestamp>,
}

/// The whole pod status. Condition transition times are kept from `previous` when a
/// condition's value did not change, so an unchanged pod computes an identical status.
pub fn pod_status(
    pod: &Pod,
    records: &BTreeMap<String, ContainerRecord>,
    facts: &PodFacts,
    previous: Option<&PodStatus>,
    now: Timestamp,
) -> PodStatus {
    let policy = RestartPolicy::of(pod);
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let default_rec = ContainerRecord::default();
    let recs: Vec<&ContainerRecord> = containers
        .iter()
        .map(|c| records.get(&c.name).unwrap_or(&default_rec))
        .collect();
    let statuses: Vec<ContainerStatus> = containers
        .iter()
        .zip(&recs)
        .map(|(c, r)| container_status(&c.name, c.image.as_deref().unwrap_or(""), r, policy, now))
        .collect();
    let phase = phase(&recs, policy);
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let prev_conditions = previous
        .and_then(|p| p.conditions.clone())
        .unwrap_or_default();
    let cond = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let prev = prev_conditions.iter().find(|c| c.type_ == type_);
        let since = match prev {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(time(now)),
        };
        PodCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            last_transition_time: since,
            reason: reason.filter(|_| !ok).map(String::from),
            ..Default::default()
        }
    };
    let scheduled = prev_conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .cloned()
        .unwrap_or_else(|| cond("PodScheduled", true, None));
    let terminal = phase == "Succeeded" || phase == "Failed";
    let ready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let conditions = vec![
        scheduled,
        cond("Initialized", true, None),
        cond("ContainersReady", all_ready, Some(ready_reason)),
        cond("Ready", all_ready, Some(ready_reason)),
    ];
    let ip = facts.pod_ip.clone();
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(facts.host_ip.clone()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: facts.host_ip.clone(),
        }]),
        pod_ip: ip.clone(),
        pod_ips: ip.map(|ip| vec![k8s_openapi::api::core::v1::PodIP { ip }]),
        start_time: facts.start_time.map(time),
        container_statuses: Some(statuses),
        qos_class: previous.and_then(|p| p.qos_class.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
