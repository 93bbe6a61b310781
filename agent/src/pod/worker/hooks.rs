//! The pod worker's side of lifecycle hooks: a started attempt runs its postStart hook before
//! it shows Running and gets its probes (a failure kills it, and the restart policy decides);
//! stopping an attempt runs its preStop hook first (see `lifecycle::stop`).

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use tracing::{info, warn};

use super::{Event, Worker};
use crate::pod::events::PodEvents;
use crate::pod::lifecycle::{self, Hook, Target};

impl Worker {
    pub(super) fn pod_events(&self) -> PodEvents {
        PodEvents::new(&self.ctx.recorder, &self.pod)
    }

    fn hook_target(&self, name: &str, id: &str) -> Target {
        Target {
            container: name.to_string(),
            id: id.to_string(),
            pod_ip: self.pod_ip(),
            runtime: self.ctx.runtime.clone(),
        }
    }

    /// The grace period of a kill that is not a pod deletion (failed hook or probe).
    pub(super) fn pod_grace(&self) -> Duration {
        let secs = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    /// Starts the postStart hook of an attempt that has just started; false when it has none.
    pub(super) fn start_post_start(&mut self, c: &Container, id: &str) -> bool {
        let handler = match lifecycle::handler_of(c, Hook::PostStart) {
            Ok(None) => return false,
            Ok(Some(h)) => Ok(h),
            Err(e) => Err(e.to_string()),
        };
        if let Some(rec) = self.records.get_mut(&c.name) {
            rec.post_start_pending = true;
        }
        let handler = match handler {
            Ok(h) => h,
            Err(e) => {
                self.on_post_start(c.name.clone(), id.to_string(), Err(e));
                return true;
            }
        };
        let target = self.hook_target(&c.name, id);
        let tx = self.events_tx.clone();
        let task = tokio::spawn(async move {
            let result = lifecycle::run(&handler, &target, lifecycle::NO_TIMEOUT).await;
            let _ = tx
                .send(Event::PostStart {
                    name: target.container,
                    id: target.id,
                    result,
                })
                .await;
        });
        self.post_starts.insert(&c.name, task.abort_handle());
        true
    }

    pub(super) fn on_post_start(&mut self, name: String, id: String, result: Result<(), String>) {
        let Some(rec) = self.records.get_mut(&name) else {
            return;
        };
        if rec.id.as_deref() != Some(id.as_str()) || !rec.post_start_pending {
            return;
        }
        self.post_starts.stop(&name);
        match result {
            Ok(()) => {
                rec.post_start_pending = false;
                info!(container = %name, %id, "postStart hook done");
                if let Some(c) = self.containers().into_iter().find(|c| c.name == name) {
                    self.start_probers(&c, &id);
                }
            }
            Err(e) => {
                // Still not Running: it stays pending until the exit is seen.
                warn!(container = %name, %id, error = %e, "postStart hook failed, killing the container");
                let reason = Hook::PostStart.failed_reason();
                self.pod_events()
                    .warning(&name, reason, Hook::PostStart.failed_message());
                self.kill_in_background(&name, &id, self.pod_grace());
            }
        }
    }

    /// Stops one attempt in the background; the waiter reports its exit as usual.
    pub(super) fn kill_in_background(&self, name: &str, id: &str, grace: Duration) {
        tokio::spawn(self.stopper(name, id, grace, true, None));
    }

    /// The stop of one attempt (preStop unless `pre_stop` is false, beside `hold`; SIGTERM,
    /// SIGKILL), owning all it needs.
    pub(super) fn stopper(
        &self,
        name: &str,
        id: &str,
        grace: Duration,
        pre_stop: bool,
        hold: Option<lifecycle::Hold>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let target = self.hook_target(name, id);
        let pre_stop = self
            .containers()
            .into_iter()
            .find(|c| c.name == name && pre_stop)
            .and_then(|c| lifecycle::handler_of(&c, Hook::PreStop).transpose());
        let events = self.pod_events();
        async move { lifecycle::stop(&target, pre_stop, grace, &events, hold).await }
    }
}
