//! The pod row: READY, STATUS and RESTARTS computed exactly as kubectl's `printPod` does.

use crate::k8s::api::core::v1::{Container, ContainerStatus, Pod, PodCondition};
use jiff::Timestamp;

use super::format::{age, since};
use super::PrintOptions;

pub const HEADERS: &[&str] = &["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
pub const WIDE: &[&str] = &["IP", "NODE", "NOMINATED NODE", "READINESS GATES"];

/// What kubectl derives from a pod's status for its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    pub ready: i32,
    pub total: i32,
    pub status: String,
    pub restarts: i32,
    pub last_restart: Option<Timestamp>,
}

fn condition_true(conditions: &[PodCondition], typ: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == typ && c.status == "True")
}

fn is_restartable_init(c: Option<&Container>) -> bool {
    c.and_then(|c| c.restart_policy.as_deref()) == Some("Always")
}

fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn last_terminated_at(cs: &ContainerStatus) -> Option<Timestamp> {
    cs.last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.finished_at.as_ref())
        .map(|t| t.0)
}

pub fn summarize(pod: &Pod) -> PodSummary {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let conditions = status.conditions.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();

    let mut total = spec.containers.len() as i32;
    let mut ready = 0;
    let mut restarts = 0;
    let mut restartable_init_restarts = 0;
    let mut last_restart = None;
    let mut last_restartable_init_restart = None;

    let phase = status.phase.clone().unwrap_or_default();
    let mut reason = match status.reason.as_deref() {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => phase.clone(),
    };
    if conditions
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".to_string();
    }
    for c in &init_specs {
        if is_restartable_init(Some(c)) {
            total += 1;
        }
    }

    let mut initializing = false;
    let init_statuses = status.init_container_statuses.clone().unwrap_or_default();
    for (i, cs) in init_statuses.iter().enumerate() {
        let spec_of = init_specs.iter().find(|c| c.name == cs.name);
        restarts += cs.restart_count;
        last_restart = later(last_restart, last_terminated_at(cs));
        if is_restartable_init(spec_of) {
            restartable_init_restarts += cs.restart_count;
            last_restartable_init_restart =
                later(last_restartable_init_restart, last_terminated_at(cs));
        }
        let state = cs.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if is_restartable_init(spec_of) && cs.started == Some(true) {
            if cs.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = &state.terminated {
            reason = match t.reason.as_deref() {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => match t.signal {
                    Some(s) if s != 0 => format!("Init:Signal:{s}"),
                    _ => format!("Init:ExitCode:{}", t.exit_code),
                },
            };
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(&conditions, "Initialized") {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init_restart;
        let mut has_running = false;
        let statuses = status.container_statuses.clone().unwrap_or_default();
        for cs in statuses.iter().rev() {
            restarts += cs.restart_count;
            last_restart = later(last_restart, last_terminated_at(cs));
            let state = cs.state.clone().unwrap_or_default();
            let waiting = state.waiting.as_ref().and_then(|w| w.reason.clone());
            if let Some(r) = waiting.filter(|r| !r.is_empty()) {
                reason = r;
            } else if let Some(t) = &state.terminated {
                reason = match t.reason.as_deref() {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ => match t.signal {
                        Some(s) if s != 0 => format!("Signal:{s}"),
                        _ => format!("ExitCode:{}", t.exit_code),
                    },
                };
            } else if cs.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(&conditions, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = pod.metadata.deletion_timestamp.is_some();
    if deleting && status.reason.as_deref() == Some("NodeLost") {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    PodSummary {
        ready,
        total,
        status: reason,
        restarts,
        last_restart,
    }
}

/// `3 (12s ago)` when the last restart time is known, else the bare count.
pub fn restarts_cell(s: &PodSummary, now: Timestamp) -> String {
    match s.last_restart {
        Some(t) if s.restarts != 0 => format!("{} ({} ago)", s.restarts, since(now, t)),
        _ => s.restarts.to_string(),
    }
}

pub fn row(pod: &Pod, opts: &PrintOptions) -> Vec<String> {
    let s = summarize(pod);
    let mut cells = vec![
        pod.metadata.name.clone().unwrap_or_default(),
        format!("{}/{}", s.ready, s.total),
        s.status.clone(),
        restarts_cell(&s, opts.now),
        age(opts.now, pod.metadata.creation_timestamp.as_ref()),
    ];
    if opts.wide {
        let status = pod.status.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let ip = status
            .pod_ips
            .as_ref()
            .and_then(|ips| ips.first())
            .map(|ip| ip.ip.clone())
            .or(status.pod_ip.clone())
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| "<none>".into());
        let node = spec
            .node_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "<none>".into());
        let nominated = status
            .nominated_node_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "<none>".into());
        let gates = match spec.readiness_gates.as_deref() {
            Some(gates) if !gates.is_empty() => {
                let conditions = status.conditions.clone().unwrap_or_default();
                let ok = gates
                    .iter()
                    .filter(|g| {
                        conditions
                            .iter()
                            .find(|c| c.type_ == g.condition_type)
                            .is_some_and(|c| c.status == "True")
                    })
                    .count();
                format!("{ok}/{}", gates.len())
            }
            _ => "<none>".into(),
        };
        cells.extend([ip, node, nominated, gates]);
    }
    cells
}
