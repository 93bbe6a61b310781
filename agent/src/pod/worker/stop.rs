//! Stopping a pod: every running container gets its preStop hook, SIGTERM and SIGKILL within
//! the grace period (cut short by a forced delete), then the containers, network and files go
//! and, for a graceful deletion, the final grace-0 delete confirms it to the API server.

use std::time::Duration;

use corral_api::client::DeleteOptions;
use futures::FutureExt;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{probes, release_pod_resources, Desired, Event, Terminate, Worker};
use crate::drain::Outcome;
use crate::pod::events::{message, reason};
use crate::pod::lifecycle;
use crate::pod::state::Current;
use crate::runtime as rt;

impl Worker {
    /// SIGTERM, grace period, SIGKILL; remove containers, network and files; then confirm
    /// the deletion to the API (graceful case).
    pub(super) async fn terminate(
        &mut self,
        how: Terminate,
        desired: &mut watch::Receiver<Desired>,
    ) {
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0) as u64;
        info!(grace, ?how, "stopping pod");
        let running = |w: &Self| -> Vec<(String, String)> {
            w.records
                .iter()
                .filter(|(_, r)| matches!(r.current, Some(Current::Running { .. })))
                .filter_map(|(n, r)| r.id.clone().map(|id| (n.clone(), id)))
                .collect()
        };
        // kubelet acts on no probe result and runs no postStart once a pod is terminating.
        self.probers = probes::Tasks::default();
        self.post_starts = probes::Tasks::default();
        // Each container: preStop hook, SIGTERM, SIGKILL, side by side, within the grace.
        // A pod already gone from the API was deleted by force: no hooks then.
        let grace = Duration::from_secs(grace);
        let hooks = how == Terminate::Graceful;
        let events = self.pod_events();
        let running = running(self);
        // A graceful deletion also waits for every proxy to drop the pod before SIGTERM.
        let hold =
            (hooks && !grace.is_zero() && !running.is_empty()).then(|| self.drain_hold(grace));
        let stops: Vec<_> = running
            .into_iter()
            .map(|(name, id)| {
                events.normal(&name, reason::KILLING, &message::stopping(&name));
                self.stopper(&name, &id, grace, hooks, hold.clone())
            })
            .collect();
        let stops = futures::future::join_all(stops);
        tokio::pin!(stops);
        // Only if the runtime does not answer: every stop ends by grace + 2 s. Measured with
        // the same monotonic timer as the stops' own grace periods (`lifecycle::stop`).
        let give_up = tokio::time::Instant::now() + grace + lifecycle::MIN_TERM_WINDOW * 2;
        loop {
            tokio::select! {
                _ = &mut stops => break,
                Some(ev) = self.events.recv() => {
                    if matches!(ev, Event::Exited { .. }) {
                        self.handle(ev);
                    }
                }
                _ = tokio::time::sleep_until(give_up) => {
                    warn!("containers did not stop in time, removing them");
                    break;
                }
                // A forced delete arrives as a new desired state: grace 0, or the pod gone
                // from the API while it was being stopped gracefully.
                Ok(()) = desired.changed() => {
                    let d = desired.borrow_and_update().clone();
                    let forced = d.pod.metadata.deletion_grace_period_seconds == Some(0)
                        || (how == Terminate::Graceful && d.terminate == Terminate::Gone);
                    if forced {
                        info!("forced deletion: stopping at once");
                        break;
                    }
                }
            }
        }
        // remove() sends SIGKILL to whatever still runs.
        let mut ids: Vec<String> = match self.ctx.runtime.list().await {
            Ok(list) => list
                .into_iter()
                .filter(|c| c.labels.get(rt::LABEL_POD_UID) == Some(&self.uid))
                .map(|c| c.id)
                .collect(),
            Err(e) => {
                warn!(error = %e, "listing containers for removal failed");
                Vec::new()
            }
        };
        ids.extend(self.records.values().filter_map(|r| r.id.clone()));
        ids.sort();
        ids.dedup();
        for id in &ids {
            if let Err(e) = self.ctx.runtime.remove(id).await {
                warn!(id = %id, error = %e, "removing container failed");
            }
        }
        release_pod_resources(&self.ctx, &self.uid).await;
        if how == Terminate::Graceful {
            self.confirm_deletion().await;
        }
        info!("pod stopped and cleaned up");
    }

    /// The wait for every proxy to drop this pod, shared by its containers' stops, measured
    /// and logged once.
    fn drain_hold(&self, grace: Duration) -> lifecycle::Hold {
        let wait = self.ctx.drain.dropped(&self.uid, grace);
        let started = std::time::Instant::now();
        async move {
            let outcome = wait.await;
            let held = started.elapsed();
            crate::metrics::global().termination_held(held, &outcome);
            match &outcome {
                Outcome::TimedOut(waiting) => {
                    warn!(
                        held_ms = held.as_millis() as u64,
                        ?waiting,
                        "proxies did not all drop the pod in time; stopping it anyway"
                    )
                }
                _ => info!(
                    held_ms = held.as_millis() as u64,
                    ?outcome,
                    "proxies dropped the pod"
                ),
            }
        }
        .boxed()
        .shared()
    }

    /// The final delete with grace 0 and the pod's uid, as kubelet sends once the pod's
    /// containers are gone; retried for a while, done once the pod is gone or replaced.
    async fn confirm_deletion(&self) {
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        for attempt in 0..30u32 {
            let opts = DeleteOptions {
                grace_period_seconds: Some(0),
                uid: Some(self.uid.clone()),
                ..Default::default()
            };
            match self.ctx.api.delete_pod(&ns, &name, opts).await {
                Ok(()) => return,
                Err(e) if e.is_not_found() || e.is_conflict() => return,
                Err(e) => {
                    warn!(error = %e, attempt, "confirming pod deletion failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
