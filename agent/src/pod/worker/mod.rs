//! One task per pod UID: converges the pod's sandbox and containers towards the latest desired
//! state it is sent (a `watch` channel: intermediate states may be skipped, the termination
//! flag is sticky so a kill is never lost), records exits, and posts status when it changes.
//! This file is the actor loop; the phases are `sandbox`, `start`, `stop`, `status`, `relist`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn, Instrument};

use super::api::PodApi;
use super::state::{on_exit, BackoffPolicy, ContainerRecord, Current, RestartPolicy, Terminated};
use crate::clock::Clock;
use crate::network::{Network, PodNet};
use crate::runtime::{self as rt, ContainerInfo, ContainerRuntime};

mod hooks;
mod probes;
mod relist;
mod sandbox;
mod start;
mod status;
mod stop;
#[cfg(test)]
mod tests;
mod waiting;

pub use sandbox::release_pod_resources;

use corral_api::rules::names::{path_component, NotALabel};

/// Shared by every worker of the node.
pub struct NodeContext {
    /// The manager's list and watch of the node's pods.
    pub client: corral_api::Client,
    /// Every call a worker makes to the control plane.
    pub api: Arc<dyn PodApi>,
    /// The node's events (kubelet's, aggregated).
    pub recorder: corral_api::runtime::Recorder,
    /// What time it is for back-off, retries and status timestamps.
    pub clock: Arc<dyn Clock>,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub network: Arc<dyn Network>,
    pub node_name: String,
    pub node_ip: String,
    pub data_dir: PathBuf,
    pub backoff: BackoffPolicy,
    /// The node's resolv.conf, copied into pods.
    pub resolv_conf: PathBuf,
    /// What ClusterFirst pods resolve through.
    pub cluster_dns: crate::resolv::ClusterDns,
    /// RLIMIT_NOFILE given to containers.
    pub nofile: u64,
    /// What a terminating pod's SIGTERM waits for: every proxy dropping it.
    pub drain: Arc<dyn crate::drain::EndpointDrain>,
}

impl NodeContext {
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
    }
    /// The directory of a pod's volume. The name came from a request: admission allows only
    /// DNS-1123 labels, and it is checked again here so it can never leave the pod's directory.
    pub fn volume_dir(&self, uid: &str, volume: &str) -> Result<PathBuf, NotALabel> {
        let volume = path_component("volume", volume)?;
        Ok(self.pod_dir(uid).join("volumes").join(volume))
    }
    pub fn log_path(&self, uid: &str, container: &str, attempt: u32) -> PathBuf {
        self.pod_dir(uid)
            .join("logs")
            .join(container)
            .join(format!("{attempt}.log"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Terminate {
    No,
    /// deletionTimestamp is set: stop, clean up, then confirm the deletion to the API.
    Graceful,
    /// The pod is gone from the API (or from this node): stop and clean up.
    Gone,
}

#[derive(Debug, Clone)]
pub struct Desired {
    pub pod: Pod,
    pub terminate: Terminate,
}

#[derive(Debug)]
pub enum Event {
    Exited {
        name: String,
        id: String,
        exit: rt::ExitInfo,
    },
    /// The runtime's containers of this pod, from the periodic relist.
    Relist {
        containers: Vec<ContainerInfo>,
        /// When the list was asked for: attempts started later may be missing from it.
        taken_at: Timestamp,
    },
    /// A probe result of a container attempt changed.
    Probe {
        name: String,
        id: String,
        update: crate::probe::ProbeUpdate,
    },
    /// The postStart hook of a container attempt finished.
    PostStart {
        name: String,
        id: String,
        result: Result<(), String>,
    },
}

pub struct Worker {
    ctx: Arc<NodeContext>,
    uid: String,
    pod: Pod,
    records: BTreeMap<String, ContainerRecord>,
    net: Option<PodNet>,
    sandbox_retry: Option<Timestamp>,
    /// When the ConfigMap/Secret volumes were last refreshed from the API.
    config_refreshed: Option<tokio::time::Instant>,
    sandbox_error: Option<String>,
    start_time: Option<Timestamp>,
    last_posted: Option<PodStatus>,
    /// When this agent first saw the pod, while its start is still to be measured (`None`
    /// once Running was posted, or for a pod an earlier agent started).
    seen: Option<std::time::Instant>,
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    probers: probes::Tasks,
    /// postStart hooks still running, by container name.
    post_starts: probes::Tasks,
    /// The last report of each failure waiting for objects: FailedMount under "", a
    /// container's missing ConfigMap/Secret under its name.
    reported: std::collections::HashMap<String, waiting::MountReport>,
}

const RESYNC: Duration = Duration::from_secs(10);

impl Worker {
    /// Spawns the worker; returns the sender of desired states and of runtime events.
    pub fn spawn(
        ctx: Arc<NodeContext>,
        desired: Desired,
        adopted: Vec<ContainerInfo>,
        done: mpsc::UnboundedSender<String>,
    ) -> (watch::Sender<Desired>, mpsc::Sender<Event>) {
        let uid = desired.pod.metadata.uid.clone().unwrap_or_default();
        let (tx, rx) = watch::channel(desired.clone());
        let (events_tx, events) = mpsc::channel(64);
        let start_time = desired
            .pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0);
        let mut w = Worker {
            ctx,
            uid: uid.clone(),
            pod: desired.pod,
            records: BTreeMap::new(),
            net: None,
            sandbox_retry: None,
            config_refreshed: None,
            sandbox_error: None,
            start_time,
            last_posted: None,
            seen: start_time.is_none().then(std::time::Instant::now),
            events_tx: events_tx.clone(),
            events,
            probers: probes::Tasks::default(),
            post_starts: probes::Tasks::default(),
            reported: Default::default(),
        };
        let name = format!(
            "{}/{}",
            w.pod.metadata.namespace.as_deref().unwrap_or(""),
            w.pod.metadata.name.as_deref().unwrap_or("")
        );
        let span = tracing::info_span!("pod", pod = %name, uid = %uid);
        tokio::spawn(
            async move {
                w.adopt(adopted).await;
                w.run(rx).await;
                let _ = done.send(uid);
            }
            .instrument(span),
        );
        (tx, events_tx)
    }

    fn now(&self) -> Timestamp {
        self.ctx.clock.now()
    }

    async fn run(&mut self, mut desired: watch::Receiver<Desired>) {
        loop {
            let d = desired.borrow_and_update().clone();
            self.pod = d.pod;
            if d.terminate != Terminate::No {
                self.terminate(d.terminate, &mut desired).await;
                return;
            }
            self.sync().await;
            self.refresh_config_volumes().await;
            self.post_status().await;
            let wake = self.ctx.clock.sleep_until(self.next_wakeup());
            tokio::select! {
                changed = desired.changed() => {
                    if changed.is_err() {
                        // The manager is gone (agent shutting down): leave containers running.
                        return;
                    }
                }
                Some(ev) = self.events.recv() => self.handle(ev),
                _ = wake => {}
            }
            // Take every event already queued before the next sync.
            while let Ok(ev) = self.events.try_recv() {
                self.handle(ev);
            }
        }
    }

    /// The next back-off or sandbox retry that falls due, and at the latest a resync.
    fn next_wakeup(&self) -> Timestamp {
        let now = self.now();
        self.records
            .values()
            .filter_map(|r| r.not_before)
            .chain(self.sandbox_retry)
            .filter(|t| *t > now)
            .fold(now + RESYNC, |a, b| a.min(b))
    }

    fn handle(&mut self, ev: Event) {
        let policy = RestartPolicy::of(&self.pod);
        match ev {
            Event::Probe { name, id, update } => self.on_probe(name, id, update),
            Event::PostStart { name, id, result } => self.on_post_start(name, id, result),
            Event::Exited { name, id, exit } => {
                let Some(rec) = self.records.get_mut(&name) else {
                    return;
                };
                if rec.id.as_deref() != Some(id.as_str()) {
                    return;
                }
                let started_at = match &rec.current {
                    Some(Current::Running { started_at }) => *started_at,
                    _ => return,
                };
                self.probers.stop(&name);
                self.post_starts.stop(&name);
                let reason = Terminated::reason_for(exit.exit_code, exit.oom_killed);
                info!(container = %name, id = %id, exit_code = exit.exit_code, %reason, "container exited");
                let t = Terminated {
                    container_id: id,
                    exit_code: exit.exit_code,
                    reason: reason.into(),
                    started_at,
                    finished_at: exit.finished_at,
                };
                on_exit(rec, t, policy, &self.ctx.backoff);
                self.report_back_off(&name);
            }
            Event::Relist {
                containers,
                taken_at,
            } => {
                let now = self.now();
                for (name, t) in relist::missed_exits(&self.records, &containers, taken_at, now) {
                    warn!(container = %name, id = %t.container_id, "container stopped behind the agent's back");
                    if let Some(rec) = self.records.get_mut(&name) {
                        on_exit(rec, t, policy, &self.ctx.backoff);
                        self.report_back_off(&name);
                    }
                }
            }
        }
    }

    /// kubelet's BackOff event when a container's restart waits out its crash back-off.
    fn report_back_off(&self, name: &str) {
        let backing_off = self.records.get(name).is_some_and(|r| {
            r.waiting
                .as_ref()
                .is_some_and(|(reason, _)| reason == "CrashLoopBackOff")
        });
        if backing_off {
            let m = &self.pod.metadata;
            let message = crate::pod::events::message::back_off(
                name,
                m.name.as_deref().unwrap_or(""),
                m.namespace.as_deref().unwrap_or(""),
                &self.uid,
            );
            self.pod_events()
                .warning(name, crate::pod::events::reason::BACK_OFF, &message);
        }
    }

    fn spawn_waiter(&self, name: String, id: String) {
        let runtime = self.ctx.runtime.clone();
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match runtime.wait(&id).await {
                    Ok(exit) => {
                        let _ = tx.send(Event::Exited { name, id, exit }).await;
                        return;
                    }
                    // Removed: the relist reports it.
                    Err(e) if e.is_not_found() => return,
                    Err(e) => {
                        failures += 1;
                        debug!(error = %e, id = %id, "wait failed, retrying");
                        if tx.is_closed() || failures > 600 {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    fn containers(&self) -> Vec<Container> {
        self.pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default()
    }
}
