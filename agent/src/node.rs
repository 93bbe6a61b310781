//! Node lifecycle: registers the Node (capacity read from the host, labels, taints from flags),
//! renews its Lease in `kube-node-lease` every few seconds, and posts the Ready condition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use tracing::{info, warn};

use crate::cluster_id::{ClusterGuard, ClusterIdError};
use crate::runtime::ContainerRuntime;

#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error(transparent)]
    Api(#[from] corral_api::client::Error),
    /// The Node or Lease is missing, and the control plane could not be confirmed as this
    /// node's cluster's: creating them would join another cluster.
    #[error("not creating node objects: {0}")]
    Cluster(#[from] ClusterIdError),
    #[error(transparent)]
    Register(#[from] RegisterError),
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Api(#[from] corral_api::client::Error),
    /// The flag and the stored Node disagree: the agent never changes a pod CIDR (pods and
    /// other nodes' routes use it), and the API refuses it too.
    #[error("node {node:?}: --pod-cidr {flag} differs from spec.podCIDR {stored} the node already has: drop --pod-cidr or give {stored}")]
    PodCidrMismatch {
        node: String,
        flag: String,
        stored: String,
    },
}

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const LEASE_DURATION_SECONDS: i32 = 40;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub ip: String,
    /// `--pod-cidr`, or the one the control plane assigned once known; none: wait for it.
    pub pod_cidr: Option<String>,
    pub taints: Vec<Taint>,
    pub max_pods: u32,
    pub lease_every: Duration,
    pub status_every: Duration,
}

/// Parses `key=value:Effect` or `key:Effect` (kubelet's --register-with-taints syntax).
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("taint {s:?}: expected key[=value]:Effect"))?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(format!(
            "taint {s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(format!("taint {s:?}: key is empty"));
    }
    Ok(Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
        time_added: None,
    })
}

fn memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn capacity(max_pods: u32) -> BTreeMap<String, Quantity> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", memory_kib())),
        ),
        ("pods".to_string(), Quantity(max_pods.to_string())),
    ])
}

fn arch() -> &'static str {
    crate::runtime::containerd::oci_arch()
}

fn node_status(
    cfg: &NodeConfig,
    ready: Result<(), RuntimeDown>,
    previous: Option<&NodeStatus>,
) -> NodeStatus {
    let now = Timestamp::now();
    let (status, reason, message) = match &ready {
        Ok(()) => (
            "True",
            "KubeletReady",
            "corral-agent is posting ready status".to_string(),
        ),
        Err(e) => (
            "False",
            "ContainerRuntimeNotReady",
            format!("container runtime is down: {e}"),
        ),
    };
    let since = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let cap = capacity(cfg.max_pods);
    NodeStatus {
        capacity: Some(cap.clone()),
        allocatable: Some(cap),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: cfg.ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: cfg.name.clone(),
            },
        ]),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(since),
        }]),
        node_info: Some(NodeSystemInfo {
            architecture: arch().into(),
            operating_system: "linux".into(),
            kubelet_version: format!("corral-agent/{}", env!("CARGO_PKG_VERSION")),
            kube_proxy_version: String::new(),
            container_runtime_version: "containerd".into(),
            kernel_version: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            os_image: "linux".into(),
            machine_id: String::new(),
            system_uuid: String::new(),
            boot_id: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Node's pod CIDR (`spec.podCIDR`, else the first of `spec.podCIDRs`).
pub fn pod_cidr_of(node: &Node) -> Option<String> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidr
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| spec.pod_cidrs.as_ref()?.first().cloned())
}

/// Creates the Node if missing (labels, taints, pod CIDR when `--pod-cidr` is given) and posts
/// its first status. Returns the Node's pod CIDR, if it has one yet. A pod CIDR on the Node
/// is never changed or wiped (one that differs from `--pod-cidr` is an error).
pub async fn register(
    client: &corral_api::Client,
    cfg: &NodeConfig,
    runtime: &Arc<dyn ContainerRuntime>,
) -> Result<Option<String>, RegisterError> {
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), cfg.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch().to_string()),
    ]);
    let existing = client.get_opt::<Node>("", &cfg.name).await?;
    let node = match existing {
        Some(mut n) => {
            let l = n.metadata.labels.get_or_insert_with(Default::default);
            let before = l.clone();
            l.extend(labels);
            let stored = pod_cidr_of(&n);
            let set_cidr = match (&cfg.pod_cidr, &stored) {
                (Some(flag), Some(stored)) if flag != stored => {
                    return Err(RegisterError::PodCidrMismatch {
                        node: cfg.name.clone(),
                        flag: flag.clone(),
                        stored: stored.clone(),
                    })
                }
                (Some(flag), None) => Some(flag.clone()),
                _ => None,
            };
            if let Some(cidr) = &set_cidr {
                let spec = n.spec.get_or_insert_with(Default::default);
                spec.pod_cidr = Some(cidr.clone());
                spec.pod_cidrs = Some(vec![cidr.clone()]);
            }
            if before != *n.metadata.labels.as_ref().expect("set above") || set_cidr.is_some() {
                client.update(&n).await?
            } else {
                n
            }
        }
        None => {
            let mut n = Node::default();
            n.metadata.name = Some(cfg.name.clone());
            n.metadata.labels = Some(labels);
            n.spec = Some(NodeSpec {
                pod_cidr: cfg.pod_cidr.clone(),
                pod_cidrs: cfg.pod_cidr.clone().map(|c| vec![c]),
                taints: Some(cfg.taints.clone()).filter(|t| !t.is_empty()),
                ..Default::default()
            });
            match client.create(&n).await {
                Ok(n) => n,
                Err(e) if e.is_already_exists() => client.get::<Node>("", &cfg.name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let pod_cidr = pod_cidr_of(&node);
    post_status(client, cfg, runtime, &mut None, node).await?;
    info!(node = %cfg.name, ip = %cfg.ip, pod_cidr = ?pod_cidr, "node registered");
    Ok(pod_cidr)
}

/// Waits until the control plane's node IPAM has given the Node a pod CIDR (polls the Node;
/// this happens once, at start).
pub async fn wait_pod_cidr(client: &corral_api::Client, name: &str) -> String {
    info!(node = %name, "waiting for the control plane to assign this node's pod CIDR (--cluster-cidr)");
    let started = Instant::now();
    let mut warned = false;
    loop {
        match client.get_opt::<Node>("", name).await {
            Ok(Some(n)) => {
                if let Some(cidr) = pod_cidr_of(&n) {
                    info!(node = %name, pod_cidr = %cidr, "pod CIDR assigned by the control plane");
                    return cidr;
                }
            }
            Ok(None) => {}
            Err(e) => warn!(node = %name, error = %e, "reading the node for its pod CIDR"),
        }
        if !warned && started.elapsed() > Duration::from_secs(30) {
            warned = true;
            warn!(node = %name, "still no pod CIDR after 30s: are the controllers running, is the cluster CIDR full (see the node's events)?");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How long the runtime must fail without a break before the node reports it down: a
/// containerd restart of a few seconds must not make the node NotReady (and its pods evicted).
pub const RUNTIME_DOWN_GRACE: Duration = Duration::from_secs(30);

/// Whether to report the runtime down, given since when it has been failing (none: it works).
pub fn runtime_down(failing_since: Option<Instant>, now: Instant) -> bool {
    failing_since.is_some_and(|t| now.duration_since(t) >= RUNTIME_DOWN_GRACE)
}

/// One look at the runtime: a hung one counts as failing, and never holds a loop for long.
async fn probe_runtime(runtime: &Arc<dyn ContainerRuntime>) -> Result<(), RuntimeDown> {
    match tokio::time::timeout(PROBE_TIMEOUT, runtime.list()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(RuntimeDown::Failed(source)),
        Err(_) => Err(RuntimeDown::Hung),
    }
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the container runtime counts as down; its text is the Ready condition's message.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeDown {
    #[error(transparent)]
    Failed(crate::runtime::RuntimeError),
    #[error("the runtime did not answer within {}s", PROBE_TIMEOUT.as_secs())]
    Hung,
}

/// While the runtime fails, looks at it every second; returns once it answers. Only then is a
/// failure "without a break": a status probe every 10 s alone would count three short
/// restarts in a row as 30 s of outage.
async fn runtime_recovered(runtime: &Arc<dyn ContainerRuntime>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if probe_runtime(runtime).await.is_ok() {
            return;
        }
    }
}

async fn post_status(
    client: &corral_api::Client,
    cfg: &NodeConfig,
    runtime: &Arc<dyn ContainerRuntime>,
    failing_since: &mut Option<Instant>,
    mut node: Node,
) -> Result<(), corral_api::client::Error> {
    let probe = probe_runtime(runtime).await;
    let now = Instant::now();
    let ready = match probe {
        Ok(()) => {
            *failing_since = None;
            Ok(())
        }
        Err(e) => {
            let since = *failing_since.get_or_insert(now);
            if runtime_down(Some(since), now) {
                Err(e)
            } else {
                warn!(node = %cfg.name, error = %e, "container runtime not answering; still reporting Ready within the grace period");
                Ok(())
            }
        }
    };
    node.status = Some(node_status(cfg, ready, node.status.as_ref()));
    node.metadata.resource_version = None;
    client.update_status(&node).await?;
    Ok(())
}

async fn renew_lease(
    client: &corral_api::Client,
    cfg: &NodeConfig,
    guard: &ClusterGuard,
) -> Result<(), HeartbeatError> {
    let now = MicroTime(Timestamp::now());
    match client.get_opt::<Lease>(LEASE_NAMESPACE, &cfg.name).await? {
        Some(mut l) => {
            let spec = l.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some(cfg.name.clone());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            spec.renew_time = Some(now);
            client.update(&l).await?;
        }
        None => {
            guard.check().await?;
            let mut l = Lease::default();
            l.metadata.name = Some(cfg.name.clone());
            l.metadata.namespace = Some(LEASE_NAMESPACE.into());
            l.spec = Some(LeaseSpec {
                holder_identity: Some(cfg.name.clone()),
                lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                ..Default::default()
            });
            client.create(&l).await?;
        }
    }
    Ok(())
}

/// Renews the Lease and re-posts the Ready condition forever, in two independent loops: a
/// slow or failing runtime never delays the Lease (which is what says the node is alive).
/// Both pause while the guard refuses the control plane, and neither creates the Node or
/// its Lease without checking the cluster ID first.
pub async fn heartbeat(
    client: corral_api::Client,
    cfg: NodeConfig,
    runtime: Arc<dyn ContainerRuntime>,
    guard: Arc<ClusterGuard>,
) {
    let lease_loop = {
        let (client, cfg, guard) = (client.clone(), cfg.clone(), guard.clone());
        async move {
            let mut lease = tokio::time::interval(cfg.lease_every);
            loop {
                lease.tick().await;
                if guard.refused() {
                    continue;
                }
                if let Err(e) = renew_lease(&client, &cfg, &guard).await {
                    warn!(node = %cfg.name, error = %e, "lease renewal failed");
                }
            }
        }
    };
    let status_loop = async move {
        let mut status = tokio::time::interval(cfg.status_every);
        status.tick().await;
        let mut failing_since = None;
        loop {
            if failing_since.is_some() {
                tokio::select! {
                    _ = status.tick() => {}
                    _ = runtime_recovered(&runtime) => {
                        info!(node = %cfg.name, "container runtime answers again");
                        failing_since = None;
                        continue;
                    }
                }
            } else {
                status.tick().await;
            }
            if guard.refused() {
                continue;
            }
            let r: Result<(), HeartbeatError> = match client.get_opt::<Node>("", &cfg.name).await {
                Ok(Some(n)) => post_status(&client, &cfg, &runtime, &mut failing_since, n)
                    .await
                    .map_err(Into::into),
                // Deleted behind our back (or another cluster): register again if it is ours.
                Ok(None) => match guard.check().await {
                    Ok(()) => register(&client, &cfg, &runtime)
                        .await
                        .map(drop)
                        .map_err(Into::into),
                    Err(e) => Err(e.into()),
                },
                Err(e) => Err(e.into()),
            };
            if let Err(e) = r {
                warn!(node = %cfg.name, error = %e, "node status update failed");
            }
        }
    };
    tokio::join!(lease_loop, status_loop);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_is_reported_down_only_after_failing_for_the_grace_period() {
        let now = Instant::now();
        let s = Duration::from_secs;
        for (failing_for, down) in [
            (None, false),
            (Some(s(0)), false),
            (Some(s(5)), false),
            (Some(s(29)), false),
            (Some(s(30)), true),
            (Some(s(120)), true),
        ] {
            let since = failing_for.map(|d| now - d);
            assert_eq!(runtime_down(since, now), down, "{failing_for:?}");
        }
    }

    #[test]
    fn taints_parse_like_kubelet_flags() {
        let t = parse_taint("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        let t = parse_taint("node-role.kubernetes.io/control-plane:NoExecute").unwrap();
        assert_eq!(t.value, None);
        assert!(parse_taint("x=y")
            .unwrap_err()
            .contains("key[=value]:Effect"));
        assert!(parse_taint("x=y:Sometimes")
            .unwrap_err()
            .contains("effect must be"));
    }
}
