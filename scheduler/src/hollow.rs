//! Hollow nodes, like Kubernetes' kubemark: N Node objects that look Ready, renew their Leases in
//! `kube-node-lease`, report the pods bound to them as Running (with a pod IP from the node's
//! fake CIDR) and confirm the deletion of their pods, all without containers. They let the
//! control plane, scheduler and controllers be measured at thousands of nodes on one machine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::k8s::api::coordination::v1::Lease;
use corral_api::k8s::api::core::v1::{Node, Pod};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::MicroTime;
use corral_api::{Client, DeleteOptions};
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::{Error, Result};
use corral_api::runtime::{Event, Watcher, WatcherConfig};

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

#[derive(Debug, Clone)]
pub struct HollowConfig {
    pub nodes: usize,
    pub prefix: String,
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    /// Every lease is renewed once per period, spread over it in ten slices.
    pub lease_renew: Duration,
    pub lease_duration_seconds: i32,
    /// API calls in flight at once.
    pub concurrency: usize,
    /// Report bound pods Running (false: only register and heartbeat, to measure binding
    /// without the status traffic).
    pub run_pods: bool,
}

impl Default for HollowConfig {
    fn default() -> Self {
        HollowConfig {
            nodes: 10,
            prefix: "hollow-node-".into(),
            cpu: "8".into(),
            memory: "32Gi".into(),
            pods: "110".into(),
            lease_renew: Duration::from_secs(10),
            lease_duration_seconds: 40,
            concurrency: 64,
            run_pods: true,
        }
    }
}

enum Action {
    Run(Box<Pod>, usize),
    Delete {
        namespace: String,
        name: String,
        uid: String,
    },
}

pub struct Hollow {
    client: Client,
    config: HollowConfig,
    index: HashMap<String, usize>,
    /// Next pod IP host part per node.
    next_ip: Mutex<HashMap<usize, u32>>,
    /// Pods with an action in flight, so repeated watch events do not duplicate calls.
    busy: Mutex<std::collections::HashSet<String>>,
}

/// Node `i`'s pod CIDR: 10.(64 + i/256).(i%256).0/24, so up to 16,384 nodes.
pub fn pod_cidr(i: usize) -> String {
    format!("10.{}.{}.0/24", 64 + (i / 256) % 192, i % 256)
}

fn internal_ip(i: usize) -> String {
    format!(
        "100.{}.{}.{}",
        64 + (i / 65536) % 64,
        (i / 256) % 256,
        i % 256
    )
}

impl Hollow {
    pub fn new(client: Client, config: HollowConfig) -> Arc<Self> {
        let index = (0..config.nodes)
            .map(|i| (format!("{}{i}", config.prefix), i))
            .collect();
        Arc::new(Hollow {
            client,
            config,
            index,
            next_ip: Mutex::new(HashMap::new()),
            busy: Mutex::new(Default::default()),
        })
    }

    pub fn node_name(&self, i: usize) -> String {
        format!("{}{i}", self.config.prefix)
    }

    /// Registers the nodes and their leases, then keeps them alive and runs their pods.
    pub async fn run(self: Arc<Self>) -> Result<()> {
        self.register().await?;
        let leases = tokio::spawn(self.clone().renew_leases());
        let _abort = AbortOnDrop(leases);
        self.run_pods().await;
        Ok(())
    }

    /// Creates (or refreshes) every Node and Lease.
    pub async fn register(&self) -> Result<()> {
        futures::stream::iter(0..self.config.nodes)
            .map(|i| self.register_one(i))
            .buffer_unordered(self.config.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        tracing::info!(nodes = self.config.nodes, "hollow nodes registered");
        Ok(())
    }

    fn node_object(&self, i: usize) -> Node {
        let name = self.node_name(i);
        let now = corral_api::object::now();
        let resources = json!({"cpu": self.config.cpu, "memory": self.config.memory,
            "pods": self.config.pods, "ephemeral-storage": "100Gi"});
        let cond = |t: &str, s: &str, reason: &str| {
            json!({"type": t, "status": s, "reason": reason, "lastHeartbeatTime": now,
                "lastTransitionTime": now})
        };
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "corral.dev/hollow": "true"}},
            "spec": {"podCIDR": pod_cidr(i), "podCIDRs": [pod_cidr(i)]},
            "status": {
                "capacity": resources, "allocatable": resources,
                "conditions": [
                    cond("Ready", "True", "KubeletReady"),
                    cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                    cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                    cond("PIDPressure", "False", "KubeletHasSufficientPID"),
                ],
                "addresses": [{"type": "InternalIP", "address": internal_ip(i)},
                              {"type": "Hostname", "address": name}],
                "nodeInfo": {"architecture": "amd64", "bootID": "", "containerRuntimeVersion": "hollow://0.1",
                    "kernelVersion": "hollow", "kubeProxyVersion": "", "kubeletVersion": "v1.33.0-corral-hollow",
                    "machineID": "", "operatingSystem": "linux", "osImage": "hollow", "systemUUID": ""}
            }
        }))
        .expect("the hollow node object is well formed")
    }

    fn lease_object(&self, i: usize) -> Lease {
        let name = self.node_name(i);
        serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": self.config.lease_duration_seconds,
                "renewTime": MicroTime(jiff::Timestamp::now())}
        }))
        .expect("the hollow lease object is well formed")
    }

    async fn register_one(&self, i: usize) -> Result<()> {
        let node = self.node_object(i);
        let name = self.node_name(i);
        match self.client.create(&node).await {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {
                // A restart: report Ready again (the main object keeps the stored status).
                self.client
                    .update_status(&node)
                    .await
                    .map_err(|e| Error::api(format!("node {name:?}: updating status"), e))?;
            }
            Err(e) => return Err(Error::api(format!("node {name:?}: creating"), e)),
        }
        self.renew_lease(i).await
    }

    async fn renew_lease(&self, i: usize) -> Result<()> {
        let lease = self.lease_object(i);
        let what = || format!("lease {LEASE_NAMESPACE}/{}", self.node_name(i));
        // Without a resourceVersion the update is applied to the latest version: only this
        // node writes its lease.
        match self.client.update(&lease).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => match self.client.create(&lease).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_already_exists() => Ok(()),
                Err(e) => Err(Error::api(what(), e)),
            },
            Err(e) => Err(Error::api(what(), e)),
        }
    }

    async fn renew_leases(self: Arc<Self>) {
        let slices = 10;
        let mut tick = tokio::time::interval(self.config.lease_renew / slices as u32);
        let mut slice = 0usize;
        loop {
            tick.tick().await;
            let this = &self;
            let n = futures::stream::iter((slice..this.config.nodes).step_by(slices))
                .map(|i| async move {
                    if let Err(e) = this.renew_lease(i).await {
                        tracing::warn!(error = %e, "renewing hollow node lease");
                    }
                })
                .buffer_unordered(this.config.concurrency.max(1))
                .count()
                .await;
            tracing::trace!(slice, leases = n, "renewed leases");
            slice = (slice + 1) % slices;
        }
    }

    fn plan(&self, pod: &Pod) -> Option<Action> {
        let node = pod.spec.as_ref()?.node_name.as_deref()?;
        let i = *self.index.get(node)?;
        let meta = &pod.metadata;
        let uid = meta.uid.clone().unwrap_or_default();
        if meta.deletion_timestamp.is_some() {
            return Some(Action::Delete {
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
                uid,
            });
        }
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref());
        let running = phase == Some("Running") && status.is_some_and(|s| s.pod_ip.is_some());
        if !self.config.run_pods || running || matches!(phase, Some("Succeeded" | "Failed")) {
            return None;
        }
        Some(Action::Run(Box::new(pod.clone()), i))
    }

    async fn run_pods(self: &Arc<Self>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Action)>();
        let this = self.clone();
        let reflector = Watcher::<Pod>::new(self.client.clone(), WatcherConfig::all());
        let watch = tokio::spawn(async move {
            reflector
                .run(|ev| {
                    let pods = match ev {
                        Event::Restarted(pods, _) => pods,
                        Event::Applied(pod) => vec![pod],
                        Event::Deleted(_) | Event::Bookmark(_) => Vec::new(),
                    };
                    for pod in pods {
                        if let Some(action) = this.plan(&pod) {
                            let key = format!(
                                "{}/{}",
                                pod.metadata.uid.as_deref().unwrap_or_default(),
                                matches!(action, Action::Delete { .. })
                            );
                            if this.busy.lock().insert(key.clone()) {
                                let _ = tx.send((key, action));
                            }
                        }
                    }
                })
                .await
        });
        let _abort = AbortOnDrop(watch);
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        while let Some((key, action)) = rx.recv().await {
            let permit = slots.clone().acquire_owned().await.expect("never closed");
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.act(action).await {
                    tracing::warn!(error = %e, "hollow node pod action");
                }
                this.busy.lock().remove(&key);
                drop(permit);
            });
        }
    }

    async fn act(&self, action: Action) -> Result<()> {
        match action {
            Action::Run(pod, i) => self.mark_running(*pod, i).await,
            Action::Delete {
                namespace,
                name,
                uid,
            } => {
                let opts = DeleteOptions {
                    grace_period_seconds: Some(0),
                    uid: Some(uid),
                    ..Default::default()
                };
                match self.client.delete::<Pod>(&namespace, &name, opts).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
                    Err(e) => Err(Error::api(
                        format!("pod \"{namespace}/{name}\": confirming deletion"),
                        e,
                    )),
                }
            }
        }
    }

    fn pod_ip(&self, i: usize) -> String {
        let mut next = self.next_ip.lock();
        let n = next.entry(i).or_insert(0);
        let host = 2 + (*n % 252);
        *n += 1;
        format!("10.{}.{}.{host}", 64 + (i / 256) % 192, i % 256)
    }

    async fn mark_running(&self, mut pod: Pod, i: usize) -> Result<()> {
        let now = corral_api::object::now();
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_else(|| self.pod_ip(i));
        let containers: Vec<_> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                json!({"name": c.name, "image": c.image.clone().unwrap_or_default(),
                    "imageID": "", "containerID": format!("hollow://{}", c.name),
                    "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": now}}})
            })
            .collect();
        let cond = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
        let status = json!({
            "phase": "Running",
            "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")],
            "hostIP": internal_ip(i), "hostIPs": [{"ip": internal_ip(i)}],
            "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": now,
            "containerStatuses": containers,
            "qosClass": "BestEffort"
        });
        pod.status = Some(serde_json::from_value(status).expect("well-formed pod status"));
        // Only this node writes the status of its pods: apply to the latest version.
        pod.metadata.resource_version = None;
        let key = format!(
            "pod \"{}/{}\"",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        match self.client.update_status(&pod).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(Error::api(format!("{key}: reporting Running"), e)),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_cidrs_do_not_overlap() {
        let cidrs: std::collections::HashSet<String> = (0..16384).map(pod_cidr).collect();
        assert_eq!(cidrs.len(), 16384);
        assert_eq!(pod_cidr(0), "10.64.0.0/24");
        assert_eq!(pod_cidr(257), "10.65.1.0/24");
    }
}
