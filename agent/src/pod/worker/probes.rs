//! The pod worker's side of the probes: one prober per running container attempt, started at
//! launch (and on adoption), stopped when the attempt exits; its updates set the container's
//! readiness and started flags, and a failed liveness or startup probe kills the attempt so
//! that the usual exit path restarts it with back-off.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use tokio::task::AbortHandle;
use tracing::{info, warn};

use super::{Event, Worker};
use crate::probe::{self, ProbeUpdate, Target};

/// Background tasks (probers, postStart hooks) by container name; dropping it (the worker
/// ends) stops them all.
#[derive(Default)]
pub struct Tasks(HashMap<String, AbortHandle>);

impl Tasks {
    /// Keeps `handle` as the container's task, stopping the one it replaces.
    pub fn insert(&mut self, name: &str, handle: AbortHandle) {
        if let Some(old) = self.0.insert(name.to_string(), handle) {
            old.abort();
        }
    }

    pub fn stop(&mut self, name: &str) {
        if let Some(h) = self.0.remove(name) {
            h.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in self.0.values() {
            h.abort();
        }
    }
}

impl Worker {
    pub(super) fn pod_ip(&self) -> String {
        self.net
            .as_ref()
            .map(|n| n.ip.clone())
            .or_else(|| self.pod.status.as_ref().and_then(|s| s.pod_ip.clone()))
            .unwrap_or_default()
    }

    /// Starts probing a container attempt that has just started running.
    pub(super) fn start_probers(&mut self, c: &Container, id: &str) {
        self.probers.stop(&c.name);
        let Some(rec) = self.records.get_mut(&c.name) else {
            return;
        };
        rec.probe_ready = c.readiness_probe.as_ref().map(|_| false);
        rec.probe_started = c.startup_probe.as_ref().map(|_| false);
        let probes = match probe::probes_of(c) {
            Ok(p) if p.is_empty() => return,
            Ok(p) => p,
            Err(e) => {
                // The container can never be probed: it stays not ready.
                warn!(error = %e, "invalid probe");
                rec.probe_ready = Some(false);
                return;
            }
        };
        let target = Target {
            container: c.name.clone(),
            id: id.to_string(),
            pod_ip: self.pod_ip(),
            runtime: self.ctx.runtime.clone(),
        };
        let (name, id) = (c.name.clone(), id.to_string());
        let handle = probe::spawn(probes, target, self.events_tx.clone(), move |update| {
            Event::Probe {
                name: name.clone(),
                id: id.clone(),
                update,
            }
        });
        self.probers.insert(&c.name, handle);
    }

    pub(super) fn on_probe(&mut self, name: String, id: String, update: ProbeUpdate) {
        let grace_default = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        // Built only for kubelet's events (a kill, a failed readiness attempt).
        let events = matches!(
            update,
            ProbeUpdate::Unhealthy { .. } | ProbeUpdate::Failed { .. }
        )
        .then(|| self.pod_events());
        let Some(rec) = self.records.get_mut(&name) else {
            return;
        };
        if rec.id.as_deref() != Some(id.as_str()) {
            return;
        }
        match update {
            ProbeUpdate::Started => rec.probe_started = Some(true),
            ProbeUpdate::Failed { kind, output } => {
                if let Some(events) = &events {
                    events.warning(
                        &name,
                        crate::pod::events::reason::UNHEALTHY,
                        &crate::pod::events::message::probe_failed(kind, &output),
                    );
                }
            }
            ProbeUpdate::Ready(ready) => {
                if rec.probe_ready.is_some() {
                    rec.probe_ready = Some(ready);
                }
            }
            ProbeUpdate::Unhealthy {
                kind,
                message,
                grace,
            } => {
                info!(container = %name, %id, probe = kind.field(), %message, "container failed its probe, killing it");
                // Each failed attempt already recorded its Unhealthy event; kubelet's kill
                // adds Killing.
                let what = match kind {
                    crate::probe::Kind::Startup => "startup",
                    _ => "liveness",
                };
                if let Some(events) = &events {
                    events.normal(
                        &name,
                        crate::pod::events::reason::KILLING,
                        &crate::pod::events::message::failed_probe_kill(&name, what),
                    );
                }
                if rec.probe_ready.is_some() {
                    rec.probe_ready = Some(false);
                }
                let grace = Duration::from_secs(grace.unwrap_or(grace_default).max(0) as u64);
                // As kubelet's killContainer: preStop hook first. The waiter sees the exit
                // and on_exit restarts the container with the back-off.
                self.kill_in_background(&name, &id, grace);
            }
        }
    }
}
