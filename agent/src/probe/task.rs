//! The prober of one container attempt: startup first (it gates the others), then readiness
//! and liveness side by side, each on its own period. Only changes are sent to the pod
//! worker; the task ends when liveness or startup gives up, or when it is aborted.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, info};

use super::{run_action, Kind, ProbeSpec, ProbeState};
use crate::runtime::ContainerRuntime;

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeUpdate {
    /// The startup probe succeeded: liveness and readiness start.
    Started,
    /// The readiness result changed.
    Ready(bool),
    /// One attempt of any probe failed (kubelet's prober records each as an Unhealthy event,
    /// the recorder aggregating the repeats).
    Failed { kind: Kind, output: String },
    /// Liveness (or startup) failed `failureThreshold` times: the container must be killed.
    Unhealthy {
        kind: Kind,
        message: String,
        grace: Option<i64>,
    },
}

/// What one prober needs to know about its container attempt.
pub struct Target {
    pub container: String,
    pub id: String,
    pub pod_ip: String,
    pub runtime: Arc<dyn ContainerRuntime>,
}

/// Starts probing; `wrap` turns an update into the worker's event type.
pub fn spawn<E: Send + 'static>(
    probes: BTreeMap<&'static str, ProbeSpec>,
    target: Target,
    tx: mpsc::Sender<E>,
    wrap: impl Fn(ProbeUpdate) -> E + Send + Sync + 'static,
) -> AbortHandle {
    let send = move |u: ProbeUpdate| {
        let tx = tx.clone();
        let e = wrap(u);
        async move { tx.send(e).await.is_ok() }
    };
    let started = Instant::now();
    let target = Arc::new(target);
    let task = async move {
        let get = |k: Kind| probes.get(k.field()).cloned();
        if let Some(spec) = get(Kind::Startup) {
            match run_probe(&spec, &target, started, &send).await {
                Outcome::Passed => {
                    if !send(ProbeUpdate::Started).await {
                        return;
                    }
                }
                Outcome::GaveUp(message) => {
                    let _ = send(unhealthy(&spec, message)).await;
                    return;
                }
                Outcome::Gone => return,
            }
        }
        let readiness = async {
            let Some(spec) = get(Kind::Readiness) else {
                return std::future::pending::<()>().await;
            };
            let mut state = ProbeState::new(&spec);
            tokio::time::sleep_until(started + spec.initial_delay).await;
            loop {
                let r = attempt(&spec, &target).await;
                if !report_failure(&spec, r.as_ref().err(), &send).await {
                    return;
                }
                if let Some(ready) = state.observe(r.is_ok()) {
                    info!(container = %target.container, ready, error = ?r.err(), "readiness changed");
                    if !send(ProbeUpdate::Ready(ready)).await {
                        return;
                    }
                }
                tokio::time::sleep(spec.period).await;
            }
        };
        let liveness = async {
            let Some(spec) = get(Kind::Liveness) else {
                return std::future::pending::<()>().await;
            };
            let mut state = ProbeState::new(&spec);
            tokio::time::sleep_until(started + spec.initial_delay).await;
            loop {
                let r = attempt(&spec, &target).await;
                if !report_failure(&spec, r.as_ref().err(), &send).await {
                    return;
                }
                let message = r.clone().err().unwrap_or_default();
                if state.observe(r.is_ok()) == Some(false) {
                    let _ = send(unhealthy(&spec, message)).await;
                    return;
                }
                tokio::time::sleep(spec.period).await;
            }
        };
        tokio::select! {
            _ = readiness => {}
            _ = liveness => {}
        }
    };
    tokio::spawn(task).abort_handle()
}

enum Outcome {
    Passed,
    GaveUp(String),
    /// The worker stopped listening.
    Gone,
}

fn unhealthy(spec: &ProbeSpec, message: String) -> ProbeUpdate {
    ProbeUpdate::Unhealthy {
        kind: spec.kind,
        message,
        grace: spec.termination_grace,
    }
}

/// Sends a failed attempt's output (`None`: the attempt passed); false once the worker is
/// gone.
async fn report_failure<F: std::future::Future<Output = bool>>(
    spec: &ProbeSpec,
    failure: Option<&String>,
    send: &impl Fn(ProbeUpdate) -> F,
) -> bool {
    match failure {
        Some(output) => {
            send(ProbeUpdate::Failed {
                kind: spec.kind,
                output: output.clone(),
            })
            .await
        }
        None => true,
    }
}

/// A startup probe: until it passes or fails `failureThreshold` times in a row.
async fn run_probe<F: std::future::Future<Output = bool>>(
    spec: &ProbeSpec,
    target: &Target,
    started: Instant,
    send: &impl Fn(ProbeUpdate) -> F,
) -> Outcome {
    let mut state = ProbeState::new(spec);
    tokio::time::sleep_until(started + spec.initial_delay).await;
    loop {
        let r = attempt(spec, target).await;
        if !report_failure(spec, r.as_ref().err(), send).await {
            return Outcome::Gone;
        }
        let message = r.clone().err().unwrap_or_default();
        if state.observe(r.is_ok()) == Some(true) {
            return Outcome::Passed;
        }
        if state.failing() {
            return Outcome::GaveUp(message);
        }
        tokio::time::sleep(spec.period).await;
    }
}

async fn attempt(spec: &ProbeSpec, t: &Target) -> Result<(), String> {
    let r = run_action(&spec.action, &t.pod_ip, &t.id, &t.runtime, spec.timeout).await;
    if let Err(e) = &r {
        debug!(container = %t.container, probe = spec.kind.field(), error = %e, "probe failed");
    }
    r
}
