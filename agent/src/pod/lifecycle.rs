//! Container lifecycle hooks as kubelet runs them: which handler a `postStart`/`preStop` hook
//! has, how much of the grace period is left for SIGTERM once a preStop hook has run, and the
//! stop sequence (preStop beside the endpoint-drain hold, SIGTERM, SIGKILL). exec and
//! httpGet reuse the probe actions.

use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use tokio::time::Instant;
use tracing::{info, warn};

use super::events::PodEvents;
use crate::probe::{self, Action, ProbeError};
use crate::runtime::ContainerRuntime;

/// kubelet always leaves a container this long between SIGTERM and SIGKILL after a preStop
/// hook, even when the hook used up the whole grace period.
pub const MIN_TERM_WINDOW: Duration = Duration::from_secs(2);

/// kubelet puts no time limit on a postStart hook; the container waits for it.
pub const NO_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PostStart,
    PreStop,
}

impl Hook {
    pub fn field(self) -> &'static str {
        match self {
            Hook::PostStart => "lifecycle.postStart",
            Hook::PreStop => "lifecycle.preStop",
        }
    }

    /// Reason of the Warning event kubelet records when the hook fails.
    pub fn failed_reason(self) -> &'static str {
        match self {
            Hook::PostStart => "FailedPostStartHook",
            Hook::PreStop => "FailedPreStopHook",
        }
    }

    /// kubelet's event message; the details (which may hold secrets) only go to the log.
    pub fn failed_message(self) -> &'static str {
        match self {
            Hook::PostStart => "PostStartHook failed",
            Hook::PreStop => "PreStopHook failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Handler {
    /// exec or httpGet, run like a probe action.
    Action(Action),
    Sleep(Duration),
}

/// The handler of a container's hook; `None` when the container has no such hook.
pub fn handler_of(c: &Container, hook: Hook) -> Result<Option<Handler>, ProbeError> {
    let lifecycle = c.lifecycle.as_ref();
    let h = match hook {
        Hook::PostStart => lifecycle.and_then(|l| l.post_start.as_ref()),
        Hook::PreStop => lifecycle.and_then(|l| l.pre_stop.as_ref()),
    };
    h.map(|h| parse(c, hook.field(), h)).transpose()
}

fn parse(c: &Container, field: &str, h: &LifecycleHandler) -> Result<Handler, ProbeError> {
    let err = |f: &str, message: &str| ProbeError {
        container: c.name.clone(),
        field: format!("{field}{f}"),
        message: message.to_string(),
    };
    let set = [
        h.exec.is_some(),
        h.http_get.is_some(),
        h.sleep.is_some(),
        h.tcp_socket.is_some(),
    ];
    match set.iter().filter(|s| **s).count() {
        0 => return Err(err("", "must specify a handler type")),
        1 => {}
        _ => return Err(err("", "may not specify more than 1 handler type")),
    }
    if let Some(e) = &h.exec {
        let command = e.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err(err(".exec.command", "must not be empty"));
        }
        Ok(Handler::Action(Action::Exec { command }))
    } else if let Some(g) = &h.http_get {
        Ok(Handler::Action(probe::http_action(
            c,
            g,
            &format!("{field}.httpGet"),
        )?))
    } else if let Some(s) = &h.sleep {
        u64::try_from(s.seconds)
            .map(|s| Handler::Sleep(Duration::from_secs(s)))
            .map_err(|_| err(".sleep.seconds", "must be non-negative"))
    } else {
        // kubelet keeps the field for old objects but runs no tcpSocket hook.
        Err(err(
            ".tcpSocket",
            "tcpSocket is not a supported lifecycle handler",
        ))
    }
}

/// The SIGTERM-to-SIGKILL window of a container whose preStop hook (if `hook_ran`) took
/// `elapsed` of the grace period: what is left of it, but never less than kubelet's 2 s
/// after a hook.
pub fn term_window(grace: Duration, hook_ran: bool, elapsed: Duration) -> Duration {
    let left = grace.saturating_sub(elapsed);
    if hook_ran {
        left.max(MIN_TERM_WINDOW)
    } else {
        left
    }
}

/// What SIGTERM also waits for, shared by a pod's containers: every proxy dropping the pod
/// (`crate::drain`); bounded by its maker within the grace period.
pub type Hold = Shared<BoxFuture<'static, ()>>;

/// One container attempt that hooks run against.
#[derive(Clone)]
pub struct Target {
    pub container: String,
    pub id: String,
    pub pod_ip: String,
    pub runtime: Arc<dyn ContainerRuntime>,
}

/// Runs a handler; `timeout` bounds exec and httpGet (a sleep is bounded by its caller).
pub async fn run(handler: &Handler, t: &Target, timeout: Duration) -> Result<(), String> {
    match handler {
        Handler::Sleep(d) => {
            tokio::time::sleep(*d).await;
            Ok(())
        }
        Handler::Action(a) => {
            probe::run_hook_action(a, &t.pod_ip, &t.id, &t.runtime, timeout).await
        }
    }
}

/// Stops a running container as kubelet's killContainer does: its preStop hook (when the
/// grace period is not zero) within the grace period, then SIGTERM, then SIGKILL once the
/// rest of the grace period (at least 2 s after a hook) has passed. A failing hook is logged
/// and recorded as a FailedPreStopHook event; the container is stopped all the same.
/// Unlike kubelet, SIGTERM also waits for `hold` (every proxy dropping the pod), which runs
/// beside the hook, so a hook and the hold cost the longer of the two, not their sum.
pub async fn stop(
    t: &Target,
    pre_stop: Option<Result<Handler, ProbeError>>,
    grace: Duration,
    events: &PodEvents,
    hold: Option<Hold>,
) {
    let started = Instant::now();
    let hook = pre_stop.filter(|_| !grace.is_zero());
    let hook_ran = hook.is_some();
    let held = hold.is_some();
    let hook = pre_stop_hook(t, hook, grace, started, events);
    match hold {
        Some(h) => {
            futures::future::join(hook, h).await;
        }
        None => hook.await,
    }
    let window = term_window(grace, hook_ran || held, started.elapsed());
    let term = nix::sys::signal::Signal::SIGTERM as i32;
    let kill = nix::sys::signal::Signal::SIGKILL as i32;
    if let Err(e) = t.runtime.kill(&t.id, term).await {
        warn!(container = %t.container, error = %e, "SIGTERM failed");
    }
    let deadline = Instant::now() + window;
    match tokio::time::timeout_at(deadline, t.runtime.wait(&t.id)).await {
        Ok(Ok(_)) => return,
        Ok(Err(e)) if e.is_not_found() => return,
        // Not knowing whether it exited, it still gets the whole window.
        Ok(Err(_)) => tokio::time::sleep_until(deadline).await,
        Err(_) => {}
    }
    if let Err(e) = t.runtime.kill(&t.id, kill).await {
        warn!(container = %t.container, error = %e, "SIGKILL failed");
    }
}

/// The preStop hook, if any, cut at the end of the grace period.
async fn pre_stop_hook(
    t: &Target,
    hook: Option<Result<Handler, ProbeError>>,
    grace: Duration,
    started: Instant,
    events: &PodEvents,
) {
    if let Some(h) = hook {
        let fail = |message: &str| {
            warn!(container = %t.container, id = %t.id, error = %message, "preStop hook failed");
            events.warning(
                &t.container,
                Hook::PreStop.failed_reason(),
                Hook::PreStop.failed_message(),
            );
        };
        match h {
            Err(e) => fail(&e.to_string()),
            // The inner bound is longer so that it is this one that cuts the hook.
            Ok(h) => match tokio::time::timeout(grace, run(&h, t, grace + Duration::from_secs(1)))
                .await
            {
                Ok(Ok(())) => {
                    info!(container = %t.container, ms = started.elapsed().as_millis() as u64, "preStop hook done");
                }
                Ok(Err(e)) => fail(&e),
                Err(_) => {
                    warn!(container = %t.container, grace_s = grace.as_secs(), "preStop hook did not finish within the grace period");
                }
            },
        }
    }
}

#[cfg(test)]
mod tests;
