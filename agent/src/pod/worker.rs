//! One task per pod UID: converges the pod's sandbox and containers towards the latest desired
//! state it is sent (a `watch` channel: intermediate states may be skipped, the termination
//! flag is sticky so a kill is never lost), records exits, and posts status when it changes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corral_api::client::DeleteOptions;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn, Instrument};

use super::lifecycle;
use super::state::{
    self, decide, on_exit, on_failure, BackoffPolicy, ContainerRecord, Current, Decision, PodFacts,
    RestartPolicy, Terminated,
};
use crate::network::{HostPort, Network, PodNet, PodNetRequest};
use crate::runtime::{self as rt, ContainerInfo, ContainerRuntime, CreateContainer, TaskState};
use crate::spec;

mod hooks;
mod probes;

/// Shared by every worker of the node.
pub struct NodeContext {
    pub client: corral_api::Client,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub network: Arc<dyn Network>,
    pub node_name: String,
    pub node_ip: String,
    pub data_dir: PathBuf,
    pub backoff: BackoffPolicy,
    /// The node's resolv.conf, copied into pods.
    pub resolv_conf: PathBuf,
    /// RLIMIT_NOFILE given to containers.
    pub nofile: u64,
}

impl NodeContext {
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
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
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    probers: probes::Tasks,
    /// postStart hooks still running, by container name.
    post_starts: probes::Tasks,
}

const RESYNC: Duration = Duration::from_secs(10);

/// A container record made for the next attempt, not started yet.
struct Created {
    id: String,
    attempt: u32,
    image_id: String,
    /// The task made alongside the network setup (or why making it failed); None when
    /// `launch` makes it.
    task: Option<Result<(), rt::RuntimeError>>,
}

/// Why an attempt could not be made: a Kubernetes waiting reason and message.
struct Failure {
    reason: &'static str,
    message: String,
    image_id: String,
}

fn wants_pod_ip(c: &Container) -> bool {
    c.env.iter().flatten().any(|e| {
        e.value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .is_some_and(|f| f.field_path.starts_with("status.podIP"))
    })
}

fn attempt_of(info: &ContainerInfo) -> u32 {
    info.labels
        .get(rt::LABEL_ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

fn label_time(info: &ContainerInfo, key: &str) -> Timestamp {
    info.labels
        .get(key)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(Timestamp::now)
}

fn default_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent"
    } else {
        match last.split_once(':') {
            None => "Always",
            Some((_, "latest")) => "Always",
            Some(_) => "IfNotPresent",
        }
    }
}

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
            events_tx: events_tx.clone(),
            events,
            probers: probes::Tasks::default(),
            post_starts: probes::Tasks::default(),
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

    /// Rebuilds the records from containers found in the runtime (agent restart).
    async fn adopt(&mut self, mut found: Vec<ContainerInfo>) {
        found.sort_by_key(attempt_of);
        let mut by_name: BTreeMap<String, Vec<ContainerInfo>> = BTreeMap::new();
        for c in found {
            let name = c
                .labels
                .get(rt::LABEL_CONTAINER_NAME)
                .cloned()
                .unwrap_or_default();
            by_name.entry(name).or_default().push(c);
        }
        let policy = RestartPolicy::of(&self.pod);
        for (name, mut list) in by_name {
            let Some(newest) = list.pop() else { continue };
            let api_status = self.api_status(&name);
            let rec = self.records.entry(name.clone()).or_default();
            rec.attempt = attempt_of(&newest);
            // Keep the attempt before the newest (lastState, logs --previous), drop older ones.
            if let Some(prev) = list.pop() {
                if let TaskState::Exited {
                    exit_code,
                    finished_at,
                } = prev.state
                {
                    rec.last = Some(Terminated {
                        container_id: prev.id.clone(),
                        exit_code,
                        reason: Terminated::reason_for(exit_code, false).into(),
                        started_at: label_time(&prev, rt::LABEL_STARTED_AT),
                        finished_at,
                    });
                }
            }
            for old in list {
                let _ = self.ctx.runtime.remove(&old.id).await;
            }
            match newest.state {
                TaskState::Running { .. } => {
                    info!(container = %name, id = %newest.id, "adopted running container");
                    rec.id = Some(newest.id.clone());
                    rec.current = Some(Current::Running {
                        started_at: label_time(&newest, rt::LABEL_STARTED_AT),
                    });
                    self.spawn_waiter(name.clone(), newest.id.clone());
                    if let Some(c) = self.containers().into_iter().find(|c| c.name == name) {
                        self.start_probers(&c, &newest.id);
                    }
                }
                TaskState::Exited {
                    exit_code,
                    finished_at,
                } => {
                    rec.id = Some(newest.id.clone());
                    let t = Terminated {
                        container_id: newest.id.clone(),
                        exit_code,
                        reason: Terminated::reason_for(exit_code, false).into(),
                        started_at: label_time(&newest, rt::LABEL_STARTED_AT),
                        finished_at,
                    };
                    on_exit(rec, t, policy, &self.ctx.backoff);
                }
                TaskState::Created => {
                    let lost = api_status
                        .filter(|s| {
                            s.container_id.as_deref().map(state::strip_runtime)
                                == Some(newest.id.as_str())
                        })
                        .and_then(|s| state::lost_attempt(&s, Timestamp::now()));
                    if let Some(t) = lost {
                        // The API saw it start: its task was lost with containerd's state
                        // (node or containerd restart), which counts as an exit.
                        info!(container = %name, id = %newest.id, "container lost its task");
                        rec.id = Some(newest.id.clone());
                        on_exit(rec, t, policy, &self.ctx.backoff);
                    } else {
                        // Created but never started (crash in between): start it afresh.
                        let _ = self.ctx.runtime.remove(&newest.id).await;
                    }
                }
            }
        }
        // Containers the API saw start that the runtime no longer has at all: the restart
        // count goes on from the API status, as kubelet's does after a reboot.
        for c in self.containers() {
            if self.records.contains_key(&c.name) {
                continue;
            }
            let Some(status) = self.api_status(&c.name) else {
                continue;
            };
            let now = Timestamp::now();
            if let Some(rec) = state::record_from_status(&status, policy, &self.ctx.backoff, now) {
                info!(container = %c.name, restarts = rec.attempt, "container lost with the runtime's state; restarting it");
                self.records.insert(c.name.clone(), rec);
            }
        }
    }

    /// The container's status as the API last showed it (before this worker started).
    fn api_status(&self, name: &str) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
        self.pod
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|s| s.name == name)
            .cloned()
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
            let wake = self.next_wakeup();
            tokio::select! {
                changed = desired.changed() => {
                    if changed.is_err() {
                        // The manager is gone (agent shutting down): leave containers running.
                        return;
                    }
                }
                Some(ev) = self.events.recv() => self.handle(ev),
                _ = tokio::time::sleep(wake) => {}
            }
            // Take every event already queued before the next sync.
            while let Ok(ev) = self.events.try_recv() {
                self.handle(ev);
            }
        }
    }

    fn next_wakeup(&self) -> Duration {
        let now = Timestamp::now();
        let mut at: Vec<Timestamp> = self.records.values().filter_map(|r| r.not_before).collect();
        at.extend(self.sandbox_retry);
        at.into_iter()
            .filter(|t| *t > now)
            .map(|t| Duration::try_from(t.duration_since(now)).unwrap_or(RESYNC))
            .min()
            .unwrap_or(RESYNC)
            .min(RESYNC)
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
            }
            Event::Relist {
                containers,
                taken_at,
            } => {
                let ids: HashMap<&str, &ContainerInfo> =
                    containers.iter().map(|i| (i.id.as_str(), i)).collect();
                for (name, rec) in self.records.iter_mut() {
                    let Some(id) = rec.id.clone() else { continue };
                    let Some(Current::Running { started_at }) = rec.current.clone() else {
                        continue;
                    };
                    if started_at >= taken_at {
                        // Started after the list was taken: its absence means nothing.
                        continue;
                    }
                    let gone = match ids.get(id.as_str()) {
                        None => Some((137, Timestamp::now())),
                        Some(i) => match i.state {
                            TaskState::Exited {
                                exit_code,
                                finished_at,
                            } => Some((exit_code, finished_at)),
                            _ => None,
                        },
                    };
                    if let Some((exit_code, finished_at)) = gone {
                        warn!(container = %name, id = %id, "container stopped behind the agent's back");
                        let t = Terminated {
                            container_id: id,
                            exit_code,
                            reason: Terminated::reason_for(exit_code, false).into(),
                            started_at,
                            finished_at,
                        };
                        on_exit(rec, t, policy, &self.ctx.backoff);
                    }
                }
            }
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

    async fn sync(&mut self) {
        let now = Timestamp::now();
        if self.start_time.is_none() {
            self.start_time = Some(now);
        }
        // A pod that finished (as posted before an agent restart) is never started again.
        let phase = self.pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let finished = matches!(phase, Some("Succeeded") | Some("Failed"));
        let policy = RestartPolicy::of(&self.pod);
        let to_start: Vec<Container> = self
            .containers()
            .into_iter()
            .filter(|c| {
                let rec = self.records.get(&c.name).cloned().unwrap_or_default();
                !(finished && rec.current.is_none()) && decide(&rec, policy, now) == Decision::Start
            })
            .collect();
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let netns = (!host_network).then(|| self.ctx.network.netns_path(&self.uid));
        if self.net.is_none() {
            if self.sandbox_retry.is_some_and(|t| t > now) {
                return self.mark_creating();
            }
            // For a new pod, containers are created while CNI runs (their spec only needs
            // the netns path), unless one wants its own IP in its environment.
            let overlap = !to_start.is_empty() && !to_start.iter().any(wants_pod_ip);
            let (net, created) = if overlap {
                // The tasks too: `runc create` joins the namespace and waits; nothing of the
                // image runs before `launch` starts it, after the network is up.
                let creates = futures::future::join_all(
                    to_start
                        .iter()
                        .map(|c| self.create_attempt(c, netns.clone(), None, true)),
                );
                let t0 = std::time::Instant::now();
                let net = async {
                    let r = self.setup_sandbox().await;
                    debug!(ms = t0.elapsed().as_millis() as u64, "sandbox ready");
                    r
                };
                let creates = async {
                    let r = creates.await;
                    debug!(ms = t0.elapsed().as_millis() as u64, "containers created");
                    r
                };
                let (net, created) = tokio::join!(net, creates);
                (net, Some(created))
            } else {
                (self.setup_sandbox().await, None)
            };
            match net {
                Ok(net) => {
                    self.net = Some(net);
                    self.sandbox_error = None;
                    self.sandbox_retry = None;
                }
                Err(message) => {
                    warn!(error = %message, "pod sandbox setup failed");
                    for c in created.into_iter().flatten().flatten() {
                        let _ = self.ctx.runtime.remove(&c.id).await;
                    }
                    self.sandbox_error = Some(message);
                    self.sandbox_retry = Some(now + Duration::from_secs(2));
                    return self.mark_creating();
                }
            }
            if let Some(created) = created {
                for (c, r) in to_start.iter().zip(created) {
                    match r {
                        Ok(created) => self.launch(c, created).await,
                        Err(f) => self.record_failure(c, f),
                    }
                }
                return;
            }
        }
        let pod_ip = self.net.as_ref().map(|n| n.ip.clone());
        for c in &to_start {
            match self
                .create_attempt(c, netns.clone(), pod_ip.clone(), false)
                .await
            {
                Ok(created) => self.launch(c, created).await,
                Err(f) => self.record_failure(c, f),
            }
        }
    }

    fn mark_creating(&mut self) {
        for c in self.containers() {
            let rec = self.records.entry(c.name.clone()).or_default();
            if rec.current.is_none() {
                rec.waiting = Some((
                    "ContainerCreating".into(),
                    self.sandbox_error.clone().unwrap_or_default(),
                ));
            }
        }
    }

    /// Network namespace + CNI, then the files every container mounts.
    async fn setup_sandbox(&self) -> Result<PodNet, String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let host_ports: Vec<HostPort> = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                p.host_port.map(|hp| HostPort {
                    host_port: hp,
                    container_port: p.container_port,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    host_ip: p.host_ip.clone().unwrap_or_default(),
                })
            })
            .collect();
        let net = if spec.host_network.unwrap_or(false) {
            PodNet {
                netns: PathBuf::new(),
                ip: self.ctx.node_ip.clone(),
            }
        } else {
            self.ctx
                .network
                .setup(&PodNetRequest {
                    uid: self.uid.clone(),
                    namespace: self.pod.metadata.namespace.clone().unwrap_or_default(),
                    name: self.pod.metadata.name.clone().unwrap_or_default(),
                    host_ports,
                })
                .await
                .map_err(|e| e.to_string())?
        };
        let dir = self.ctx.pod_dir(&self.uid);
        let name = crate::hosts::hostname(&self.pod);
        let hosts = crate::hosts::hosts_file(&self.pod, &net.ip, "cluster.local");
        let resolv = tokio::fs::read_to_string(&self.ctx.resolv_conf)
            .await
            .unwrap_or_default();
        let write = |file: &'static str, content: String| {
            let path = dir.join(file);
            async move {
                tokio::fs::write(&path, content)
                    .await
                    .map_err(|e| format!("writing {}: {e}", path.display()))
            }
        };
        tokio::fs::create_dir_all(dir.join("volumes"))
            .await
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        write("hosts", hosts).await?;
        write("resolv.conf", resolv).await?;
        write("hostname", format!("{name}\n")).await?;
        Ok(net)
    }

    /// Host directories of the pod's volumes; unsupported kinds are left out (a container
    /// mounting one gets a CreateContainerConfigError naming it).
    /// Rewrites the configMap/secret/projected volumes of a running pod when their objects
    /// changed, as kubelet's periodic volume sync does (here at most every 5 s); the atomic
    /// `..data` swap means a container never reads a half-updated set.
    async fn refresh_config_volumes(&mut self) {
        const EVERY: Duration = Duration::from_secs(5);
        let spec = self.pod.spec.clone().unwrap_or_default();
        let volumes: Vec<_> = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| v.config_map.is_some() || v.secret.is_some() || v.projected.is_some())
            .cloned()
            .collect();
        let running = self
            .records
            .values()
            .any(|r| matches!(r.current, Some(Current::Running { .. })));
        if volumes.is_empty() || !running {
            return;
        }
        let now = tokio::time::Instant::now();
        if self.config_refreshed.is_some_and(|t| now < t + EVERY) {
            return;
        }
        self.config_refreshed = Some(now);
        let Ok(data) = self.config_data().await else {
            return;
        };
        for v in volumes {
            // A source that went away keeps the last files, as kubelet does.
            let Some(Ok(files)) = crate::configdata::volume_files(&v, &data) else {
                continue;
            };
            let dir = self.ctx.pod_dir(&self.uid).join("volumes").join(&v.name);
            match crate::configdata::write_volume(&dir, &files) {
                Ok(true) => info!(volume = %v.name, "volume contents updated"),
                Ok(false) => {}
                Err(e) => warn!(volume = %v.name, error = %e, "refreshing volume failed"),
            }
        }
    }

    /// The ConfigMaps and Secrets the pod refers to (none fetched when it refers to none).
    async fn config_data(&self) -> Result<crate::configdata::ConfigData, String> {
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let refs = crate::configdata::references(&self.pod);
        if refs.is_empty() {
            return Ok(crate::configdata::ConfigData {
                namespace: ns,
                ..Default::default()
            });
        }
        crate::configdata::fetch(&self.ctx.client, &ns, &refs)
            .await
            .map_err(|e| format!("reading the pod's ConfigMaps and Secrets: {e}"))
    }

    async fn volume_dirs(
        &self,
        config: &crate::configdata::ConfigData,
    ) -> Result<BTreeMap<String, PathBuf>, String> {
        let mut out = BTreeMap::new();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        for (i, v) in spec.volumes.iter().flatten().enumerate() {
            if let Some(files) = crate::configdata::volume_files(v, config) {
                let files = files.map_err(|m| {
                    format!("MountVolume.SetUp failed for volume {:?} : {m}", v.name)
                })?;
                let dir = self.ctx.pod_dir(&self.uid).join("volumes").join(&v.name);
                crate::configdata::write_volume(&dir, &files)
                    .map_err(|e| format!("volumes[{i}] {:?}: writing files: {e}", v.name))?;
                out.insert(v.name.clone(), dir);
            } else if let Some(claim) = &v.persistent_volume_claim {
                let dir = crate::volumes::resolve_claim(&self.ctx.client, &ns, &claim.claim_name)
                    .await
                    .map_err(|m| {
                        format!("MountVolume.SetUp failed for volume {:?} : {m}", v.name)
                    })?;
                out.insert(v.name.clone(), dir);
            } else if v.empty_dir.is_some() {
                let dir = self.ctx.pod_dir(&self.uid).join("volumes").join(&v.name);
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| format!("volumes[{i}] {:?}: {e}", v.name))?;
                out.insert(v.name.clone(), dir);
            } else if let Some(hp) = &v.host_path {
                let path = PathBuf::from(&hp.path);
                match hp.type_.as_deref().unwrap_or("") {
                    "DirectoryOrCreate" => tokio::fs::create_dir_all(&path)
                        .await
                        .map_err(|e| format!("volumes[{i}].hostPath {:?}: {e}", hp.path))?,
                    "Directory" if !path.is_dir() => {
                        return Err(format!(
                            "volumes[{i}].hostPath: {:?} is not a directory",
                            hp.path
                        ))
                    }
                    "File" if !path.is_file() => {
                        return Err(format!(
                            "volumes[{i}].hostPath: {:?} is not a file",
                            hp.path
                        ))
                    }
                    _ => {}
                }
                out.insert(v.name.clone(), path);
            }
        }
        Ok(out)
    }

    async fn ensure_image(&self, c: &Container) -> Result<rt::ImageInfo, (&'static str, String)> {
        let image = c.image.clone().unwrap_or_default();
        if image.is_empty() {
            return Err((
                "InvalidImageName",
                format!("container {:?}: image is empty", c.name),
            ));
        }
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(&image).to_string());
        let present = self
            .ctx
            .runtime
            .image(&image)
            .await
            .map_err(|e| ("ErrImagePull", e.to_string()))?;
        match (policy.as_str(), present) {
            ("Never", Some(i)) | ("IfNotPresent", Some(i)) => Ok(i),
            ("Never", None) => Err((
                "ErrImageNeverPull",
                format!("container image {image:?} is not present with pull policy of Never"),
            )),
            _ => {
                info!(%image, "pulling image");
                self.ctx.runtime.pull(&image).await.map_err(|e| {
                    (
                        "ErrImagePull",
                        format!("failed to pull image {image:?}: {e}"),
                    )
                })
            }
        }
    }

    /// Image, spec and container record for the next attempt of `c`, and its (unstarted) task
    /// when `with_task`. Runs alongside the network setup for a new pod, so it only needs the
    /// netns path.
    async fn create_attempt(
        &self,
        c: &Container,
        netns: Option<PathBuf>,
        pod_ip: Option<String>,
        with_task: bool,
    ) -> Result<Created, Failure> {
        // Service variables of the services that exist now, fetched while the image is looked
        // up; the pod's own env wins over them. An unreachable API server must not keep a
        // crashed container from restarting.
        let (image, service_vars, config_data) = tokio::join!(
            self.ensure_image(c),
            crate::svcenv::for_pod(&self.ctx.client, &self.pod),
            self.config_data()
        );
        let image = image.map_err(|(reason, message)| Failure {
            reason,
            message,
            image_id: String::new(),
        })?;
        let fail = |reason: &'static str, message: String| Failure {
            reason,
            message,
            image_id: image.id.clone(),
        };
        let rec = self.records.get(&c.name).cloned().unwrap_or_default();
        let attempt = if rec.current.is_some() {
            rec.attempt + 1
        } else {
            rec.attempt
        };
        let id = format!("{}-{}-{}", self.uid, c.name, attempt);
        let mut config = image.config.clone();
        match service_vars {
            Ok(vars) => config.env.extend(vars),
            Err(e) => warn!(container = %c.name, error = %e, "starting without service variables"),
        }
        let config_data = config_data.map_err(|m| fail("CreateContainerConfigError", m))?;
        let config_env = crate::configdata::container_env(c, &config_data)
            .map_err(|m| fail("CreateContainerConfigError", m))?;
        // kubelet keeps a pod whose volumes cannot be set up in ContainerCreating.
        let volume_dirs = self
            .volume_dirs(&config_data)
            .await
            .map_err(|m| fail("ContainerCreating", m))?;
        let dir = self.ctx.pod_dir(&self.uid);
        let input = spec::SpecInput {
            pod: &self.pod,
            container: c,
            image: &config,
            container_id: &id,
            netns_path: netns,
            hosts_file: dir.join("hosts"),
            resolv_file: dir.join("resolv.conf"),
            hostname_file: dir.join("hostname"),
            volume_dirs,
            config_env,
            pod_ip,
            node_name: self.ctx.node_name.clone(),
            host_ip: self.ctx.node_ip.clone(),
            nofile: self.ctx.nofile,
        };
        let oci =
            spec::build(&input).map_err(|e| fail("CreateContainerConfigError", e.to_string()))?;
        let labels = HashMap::from([
            (rt::LABEL_POD_UID.to_string(), self.uid.clone()),
            (
                rt::LABEL_POD_NAME.to_string(),
                self.pod.metadata.name.clone().unwrap_or_default(),
            ),
            (
                rt::LABEL_POD_NAMESPACE.to_string(),
                self.pod.metadata.namespace.clone().unwrap_or_default(),
            ),
            (rt::LABEL_CONTAINER_NAME.to_string(), c.name.clone()),
            (rt::LABEL_ATTEMPT.to_string(), attempt.to_string()),
            (
                rt::LABEL_STARTED_AT.to_string(),
                Timestamp::now().to_string(),
            ),
        ]);
        let create = CreateContainer {
            id: id.clone(),
            image: image.reference.clone(),
            spec: oci,
            labels,
            log_path: self.ctx.log_path(&self.uid, &c.name, attempt),
        };
        if let Err(e) = self.ctx.runtime.create(&create).await {
            // A leftover from a crash between create and start blocks the id: retry once.
            let _ = self.ctx.runtime.remove(&id).await;
            self.ctx
                .runtime
                .create(&create)
                .await
                .map_err(|_| fail("CreateContainerError", e.to_string()))?;
        }
        let task = if with_task {
            Some(self.ctx.runtime.create_task(&id).await)
        } else {
            None
        };
        Ok(Created {
            id,
            attempt,
            image_id: image.id,
            task,
        })
    }

    fn record_failure(&mut self, c: &Container, f: Failure) {
        let now = Timestamp::now();
        let backoff = self.ctx.backoff;
        let rec = self.records.entry(c.name.clone()).or_default();
        let reason = if f.reason == "ErrImagePull" && rec.pull_failures > 0 {
            "ImagePullBackOff"
        } else {
            f.reason
        };
        if f.reason == "ErrImagePull" {
            rec.pull_failures += 1;
        }
        if !f.image_id.is_empty() {
            rec.image_id = f.image_id;
        }
        warn!(container = %c.name, %reason, message = %f.message, "container did not start");
        on_failure(rec, reason, f.message, now, &backoff);
    }

    /// Starts a created attempt and makes it the container's current one.
    async fn launch(&mut self, c: &Container, created: Created) {
        let Created {
            id,
            attempt,
            image_id,
            task,
        } = created;
        let started_at = Timestamp::now();
        let started = match task {
            None => self.ctx.runtime.start(&id).await,
            Some(Ok(())) => self.ctx.runtime.start_task(&id).await,
            Some(Err(e)) => Err(e),
        };
        if let Err(e) = started {
            let _ = self.ctx.runtime.remove(&id).await;
            return self.record_failure(
                c,
                Failure {
                    reason: "RunContainerError",
                    message: e.to_string(),
                    image_id,
                },
            );
        }
        info!(container = %c.name, %id, attempt, start_ms = (Timestamp::now().duration_since(started_at).as_millis()) as u64, "container started");
        let rec = self.records.entry(c.name.clone()).or_default();
        // The exited attempt becomes lastState; the one before it is removed.
        let stale = rec.last.as_ref().map(|t| t.container_id.clone());
        if let Some(Current::Exited(t)) = rec.current.take() {
            rec.last = Some(t);
        }
        rec.id = Some(id.clone());
        rec.attempt = attempt;
        rec.current = Some(Current::Running { started_at });
        rec.waiting = None;
        rec.pull_failures = 0;
        rec.image_id = image_id;
        if let Some(stale) = stale.filter(|s| *s != id) {
            let rt = self.ctx.runtime.clone();
            tokio::spawn(async move {
                let _ = rt.remove(&stale).await;
            });
        }
        // Probes start once the postStart hook has passed.
        if !self.start_post_start(c, &id) {
            self.start_probers(c, &id);
        }
        self.spawn_waiter(c.name.clone(), id);
    }

    async fn post_status(&mut self) {
        let previous = self.last_posted.clone().or_else(|| self.pod.status.clone());
        let facts = PodFacts {
            pod_ip: self.net.as_ref().map(|n| n.ip.clone()),
            host_ip: self.ctx.node_ip.clone(),
            start_time: self.start_time,
        };
        let status = state::pod_status(
            &self.pod,
            &self.records,
            &facts,
            previous.as_ref(),
            Timestamp::now(),
        );
        if self.last_posted.as_ref() == Some(&status) {
            return;
        }
        let mut pod = self.pod.clone();
        pod.metadata.resource_version = None;
        pod.status = Some(status.clone());
        match self.ctx.client.update_status(&pod).await {
            Ok(_) => {
                debug!(phase = ?status.phase, since_start = ?self.start_time.map(|t| Timestamp::now().duration_since(t)), "status posted");
                self.last_posted = Some(status);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => warn!(error = %e, "posting pod status failed"),
        }
    }

    /// SIGTERM, grace period, SIGKILL; remove containers, network and files; then confirm
    /// the deletion to the API (graceful case).
    async fn terminate(&mut self, how: Terminate, desired: &mut watch::Receiver<Desired>) {
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
        let stops: Vec<_> = running(self)
            .into_iter()
            .map(|(name, id)| self.stopper(&name, &id, grace, hooks))
            .collect();
        let stops = futures::future::join_all(stops);
        tokio::pin!(stops);
        // Only if the runtime does not answer: every stop ends by grace + 2 s.
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

    async fn confirm_deletion(&self) {
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        for attempt in 0..30u32 {
            let opts = DeleteOptions {
                grace_period_seconds: Some(0),
                uid: Some(self.uid.clone()),
                ..Default::default()
            };
            match self.ctx.client.delete::<Pod>(&ns, &name, opts).await {
                Ok(_) => return,
                Err(e) if e.is_not_found() || e.is_conflict() => return,
                Err(e) => {
                    warn!(error = %e, attempt, "confirming pod deletion failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// Network, files and cgroup directories of a pod whose containers are gone.
pub async fn release_pod_resources(ctx: &NodeContext, uid: &str) {
    for attempt in 0..5u32 {
        match ctx.network.teardown(uid).await {
            Ok(()) => break,
            Err(e) => {
                warn!(pod = %uid, error = %e, attempt, "network teardown failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let _ = tokio::fs::remove_dir_all(ctx.pod_dir(uid)).await;
    // runc removes each container's cgroup but not the pod's parent, and the shim may still
    // be tearing the children down: retry for a while in the background.
    let uid = uid.to_string();
    tokio::spawn(async move {
        for _ in 0..60 {
            if remove_pod_cgroups(&uid).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        debug!(pod = %uid, "pod cgroup directories still busy");
    });
}

/// Removes `corral/pod<uid>` in every cgroup hierarchy; true when none is left.
async fn remove_pod_cgroups(uid: &str) -> bool {
    let mut left = false;
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(mut rd) = tokio::fs::read_dir("/sys/fs/cgroup").await {
        while let Ok(Some(e)) = rd.next_entry().await {
            roots.push(e.path());
        }
    }
    for root in roots {
        let dir = root.join("corral").join(format!("pod{uid}"));
        match tokio::fs::remove_dir(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(20) => {} // ENOTDIR: a controller file
            Err(_) => left = true,
        }
    }
    !left
}

#[cfg(test)]
mod tests {
    use super::default_pull_policy;

    #[test]
    fn pull_policy_defaults_follow_kubernetes() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(default_pull_policy("127.0.0.1:5000/app"), "Always");
        assert_eq!(default_pull_policy("127.0.0.1:5000/app:v1"), "IfNotPresent");
        assert_eq!(default_pull_policy("app@sha256:abc"), "IfNotPresent");
    }
}
