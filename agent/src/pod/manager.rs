//! Watches the pods bound to this node (the shared watcher with `spec.nodeName=NODE`), feeds one worker per pod UID, and relists containerd periodically:
//! containers of running workers are reported to them, containers and network state of pods
//! that no longer exist are removed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use corral_api::runtime::{watcher, Event as PodEvent, WatcherConfig};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use parking_lot::RwLock;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::worker::{release_pod_resources, Desired, Event, NodeContext, Terminate, Worker};
use crate::cluster_id::ClusterGuard;
use crate::runtime::{self as rt, ContainerInfo};

/// `namespace/name` → uid of the pods on this node, for log and port-forward requests, and
/// where each pod's network namespace is (through the node's `Network`).
#[derive(Clone, Default)]
pub struct PodIndex {
    pods: Arc<RwLock<HashMap<(String, String), Indexed>>>,
    network: Option<Arc<dyn crate::network::Network>>,
}

#[derive(Clone)]
struct Indexed {
    uid: String,
    host_network: bool,
}

impl PodIndex {
    /// An index that can also say where its pods' network namespaces are.
    pub fn with_network(network: Arc<dyn crate::network::Network>) -> Self {
        Self {
            network: Some(network),
            ..Default::default()
        }
    }
    pub fn uid(&self, namespace: &str, name: &str) -> Option<String> {
        self.pods
            .read()
            .get(&(namespace.to_string(), name.to_string()))
            .map(|p| p.uid.clone())
    }
    /// The uid of a pod on this node and the namespace its ports are in (the node's own for
    /// a hostNetwork pod); `None` for a pod not on this node or an index without a network.
    pub fn netns(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<(String, crate::portforward::Netns)> {
        let p = self
            .pods
            .read()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()?;
        let netns = match p.host_network {
            true => crate::portforward::Netns::Host,
            false => crate::portforward::Netns::Path(self.network.as_ref()?.netns_path(&p.uid)),
        };
        Some((p.uid, netns))
    }
    pub fn set(&self, pod: &Pod, present: bool) {
        let key = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let mut m = self.pods.write();
        if present {
            let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            m.insert(key, Indexed { uid, host_network });
        } else if m.get(&key).map(|p| &p.uid) == pod.metadata.uid.as_ref() {
            m.remove(&key);
        }
    }
}

struct Handle {
    desired: watch::Sender<Desired>,
    events: mpsc::Sender<Event>,
}

pub struct Manager {
    ctx: Arc<NodeContext>,
    workers: HashMap<String, Handle>,
    /// Pods the API says are on this node, by uid.
    known: HashSet<String>,
    /// Runtime containers found at start, handed to the worker of their pod.
    adoptable: HashMap<String, Vec<ContainerInfo>>,
    done_tx: mpsc::UnboundedSender<String>,
    done_rx: mpsc::UnboundedReceiver<String>,
    pub index: PodIndex,
    relist_every: Duration,
    guard: Option<Arc<ClusterGuard>>,
}

/// The control plane's cluster ID, checked just now.
enum Verified {
    Yes,
    Refused,
    /// It could not be asked.
    Unknown,
}

fn by_pod(list: Vec<ContainerInfo>) -> HashMap<String, Vec<ContainerInfo>> {
    let mut out: HashMap<String, Vec<ContainerInfo>> = HashMap::new();
    for c in list {
        if let Some(uid) = c.labels.get(rt::LABEL_POD_UID).cloned() {
            out.entry(uid).or_default().push(c);
        }
    }
    out
}

impl Manager {
    pub fn new(ctx: Arc<NodeContext>, index: PodIndex) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            ctx,
            workers: HashMap::new(),
            known: HashSet::new(),
            adoptable: HashMap::new(),
            done_tx,
            done_rx,
            index,
            relist_every: Duration::from_secs(10),
            guard: None,
        }
    }

    /// The guard that keeps this node out of any cluster but its own: before a fresh list is
    /// acted on, and before containers are removed, the control plane's cluster ID is checked.
    pub fn with_guard(mut self, guard: Arc<ClusterGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Whether the control plane is (still) this node's cluster's. A refusal drops the
    /// watch: nothing it sent is acted on, and a new one starts from a list once it passes.
    async fn verified(&self) -> Verified {
        let Some(guard) = &self.guard else {
            return Verified::Yes;
        };
        match guard.check().await {
            Ok(()) => Verified::Yes,
            Err(e) if e.is_refusal() => Verified::Refused,
            Err(e) => {
                warn!(error = %e, "cannot check the cluster ID now");
                Verified::Unknown
            }
        }
    }

    pub async fn run(mut self) {
        loop {
            match self.ctx.runtime.list().await {
                Ok(list) => {
                    self.adoptable = by_pod(list);
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "listing containers failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        loop {
            if let Some(guard) = &self.guard {
                guard.wait_verified().await;
            }
            if !self.follow().await {
                return;
            }
            warn!("stopped following the control plane: it serves another cluster; running pods are kept as they are");
        }
    }

    /// Follows the node's pods until the watch ends (false) or the control plane turns out
    /// to serve another cluster (true).
    async fn follow(&mut self) -> bool {
        let config = WatcherConfig::fields(format!("spec.nodeName={}", self.ctx.node_name));
        let events = watcher::<Pod>(self.ctx.client.clone(), config);
        tokio::pin!(events);
        let mut listed_once = false;
        let mut tick = tokio::time::interval(self.relist_every);
        tick.tick().await;
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(PodEvent::Restarted(pods, _)) => {
                        // A list after a break: an empty one from a control plane restarted on
                        // an empty data dir would stop every pod here.
                        match self.verified().await {
                            Verified::Yes => {}
                            Verified::Refused => return true,
                            // The list just came from it: asking again shortly is cheap.
                            Verified::Unknown => return true,
                        }
                        self.restarted(pods);
                        if !listed_once {
                            listed_once = true;
                            self.relist(true).await;
                        }
                    }
                    Some(PodEvent::Applied(p)) => {
                        if let Some(uid) = p.metadata.uid.clone() {
                            self.known.insert(uid);
                        }
                        self.dispatch(p);
                    }
                    Some(PodEvent::Deleted(p)) => {
                        if let Some(uid) = p.metadata.uid.clone() {
                            self.known.remove(&uid);
                            self.gone(&uid, Some(p));
                        }
                    }
                    Some(PodEvent::Bookmark(_)) => {}
                    None => return false,
                },
                _ = tick.tick(), if listed_once => {
                    let removals = match self.verified().await {
                        Verified::Yes => true,
                        Verified::Refused => return true,
                        Verified::Unknown => false,
                    };
                    self.relist(removals).await;
                }
                Some(uid) = self.done_rx.recv() => self.finished(&uid),
            }
        }
    }

    /// A fresh list: workers of pods not in it are told their pod is gone.
    fn restarted(&mut self, pods: Vec<Pod>) {
        let listed: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for uid in self.workers.keys().cloned().collect::<Vec<_>>() {
            if !listed.contains(&uid) {
                self.gone(&uid, None);
            }
        }
        self.known = listed;
        for p in pods {
            self.dispatch(p);
        }
    }

    fn finished(&mut self, uid: &str) {
        if let Some(h) = self.workers.get(uid) {
            // A worker that stopped because it terminated the pod; a newer handle for the
            // same uid cannot exist, since a handle lives until its worker reports.
            if h.desired.is_closed() || h.desired.borrow().terminate != Terminate::No {
                self.workers.remove(uid);
            }
        }
    }

    fn dispatch(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let terminate = if pod.metadata.deletion_timestamp.is_some() {
            Terminate::Graceful
        } else {
            Terminate::No
        };
        self.index.set(&pod, true);
        if let Some(h) = self.workers.get(&uid) {
            h.desired.send_modify(|d| {
                d.pod = pod;
                // Sticky: once asked to stop, a worker never goes back.
                d.terminate = d.terminate.max(terminate);
            });
            return;
        }
        let adopted = self.adoptable.remove(&uid).unwrap_or_default();
        let (desired, events) = Worker::spawn(
            self.ctx.clone(),
            Desired { pod, terminate },
            adopted,
            self.done_tx.clone(),
        );
        self.workers.insert(uid, Handle { desired, events });
    }

    fn gone(&mut self, uid: &str, last: Option<Pod>) {
        if let Some(p) = &last {
            self.index.set(p, false);
        }
        if let Some(h) = self.workers.get(uid) {
            h.desired.send_modify(|d| {
                if let Some(p) = last {
                    d.pod = p;
                }
                d.terminate = Terminate::Gone;
            });
        }
    }

    /// Reports runtime state to workers and, when `removals`, removes what belongs to no
    /// known pod (only once the control plane was just verified as this node's cluster's).
    async fn relist(&mut self, removals: bool) {
        let taken_at = jiff::Timestamp::now();
        let list = match self.ctx.runtime.list().await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "relisting containers failed");
                return;
            }
        };
        let mut grouped = by_pod(list);
        for (uid, h) in &self.workers {
            let mine = grouped.remove(uid).unwrap_or_default();
            let _ = h.events.try_send(Event::Relist {
                containers: mine,
                taken_at,
            });
        }
        if !removals {
            return;
        }
        for (uid, containers) in grouped {
            if self.known.contains(&uid) {
                // Known but no worker yet (adoptable, or between a finish and a re-dispatch).
                continue;
            }
            info!(pod = %uid, containers = containers.len(), "removing containers of a pod that no longer exists");
            for c in containers {
                if let Err(e) = self.ctx.runtime.remove(&c.id).await {
                    warn!(id = %c.id, error = %e, "removing orphan container failed");
                }
            }
            self.adoptable.remove(&uid);
            release_pod_resources(&self.ctx, &uid).await;
        }
        if let Ok(nets) = self.ctx.network.list().await {
            for uid in nets {
                if !self.known.contains(&uid) && !self.workers.contains_key(&uid) {
                    info!(pod = %uid, "releasing network of a pod that no longer exists");
                    release_pod_resources(&self.ctx, &uid).await;
                }
            }
        }
    }
}
