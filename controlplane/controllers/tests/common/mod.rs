//! In-process cluster for the controller integration tests: the real API server on
//! 127.0.0.1:0 over gRPC, the controllers under test, and simulated nodes (a fake binder and
//! kubelet that bind pods, mark them Running/Ready and confirm their deletion).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corral_api::k8s::api::coordination::v1::{Lease, LeaseSpec};
use corral_api::k8s::api::core::v1::{Node, NodeCondition, NodeStatus, Pod, PodCondition};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use corral_api::{Client, DeleteOptions, ListParams};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

pub struct Cluster {
    pub client: Client,
    pub running: corral_controlplane::Running,
    pub nodes: Arc<Mutex<BTreeMap<String, NodeSim>>>,
    /// When false the simulated kubelets leave pods not ready.
    pub auto_ready: Arc<AtomicBool>,
    controllers: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

#[derive(Debug, Clone, Default)]
pub struct NodeSim {
    /// A dead node's kubelet does nothing and its lease is not renewed.
    pub dead: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in self.tasks.iter().chain(&self.controllers) {
            t.abort();
        }
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub async fn start(config: corral_controllers::Config) -> Cluster {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let running = corral_controlplane::start(corral_controlplane::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        controllers: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = running.client().await.unwrap();
    let controllers = corral_controllers::spawn(client.clone(), config);
    let mut tasks = Vec::new();
    let nodes = Arc::new(Mutex::new(BTreeMap::new()));
    let auto_ready = Arc::new(AtomicBool::new(true));
    tasks.push(tokio::spawn(kubelets(
        client.clone(),
        nodes.clone(),
        auto_ready.clone(),
    )));
    Cluster {
        client,
        running,
        nodes,
        auto_ready,
        controllers,
        tasks,
        _dir: dir,
    }
}

pub fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: (!ns.is_empty()).then(|| ns.to_string()),
        ..Default::default()
    }
}

impl Cluster {
    /// Registers a Ready node with `labels`, simulated by this process.
    pub async fn add_node(&self, name: &str, labels: &[(&str, &str)]) {
        let mut m = meta("", name);
        m.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain([("kubernetes.io/hostname".to_string(), name.to_string())])
                .collect(),
        );
        let node = Node {
            metadata: m,
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    reason: Some("KubeletReady".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self.client.create(&node).await.unwrap();
        // Status is a subresource: write it separately.
        let mut with_status = created.clone();
        with_status.status = node.status.clone();
        // Last writer wins, as kubelets write status: node IPAM may have set the spec already.
        with_status.metadata.resource_version = None;
        self.client.update_status(&with_status).await.unwrap();
        self.nodes
            .lock()
            .insert(name.to_string(), NodeSim::default());
        renew_lease(&self.client, name).await;
    }

    /// Stops the controllers this cluster started (another instance may take over).
    pub fn stop_controllers(&mut self) {
        for t in self.controllers.drain(..) {
            t.abort();
        }
    }

    /// Starts a new instance of the controllers against the same API server and store.
    pub fn start_controllers(&mut self, config: corral_controllers::Config) {
        self.controllers = corral_controllers::spawn(self.client.clone(), config);
    }

    /// Brings a killed node's simulated kubelet back.
    pub fn revive_node(&self, name: &str) {
        if let Some(n) = self.nodes.lock().get_mut(name) {
            n.dead = false;
        }
    }

    pub fn kill_node(&self, name: &str) {
        if let Some(n) = self.nodes.lock().get_mut(name) {
            n.dead = true;
        }
    }

    pub async fn pods(&self, selector: &str) -> Vec<Pod> {
        self.client
            .list::<Pod>("default", &ListParams::labels(selector))
            .await
            .unwrap()
            .0
    }
}

/// Polls `check` every 20 ms until it returns Some, failing after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn renew_lease(client: &Client, node: &str) {
    let now = MicroTime(jiff::Timestamp::now());
    match client.get_opt::<Lease>("kube-node-lease", node).await {
        Ok(Some(mut lease)) => {
            lease.spec.get_or_insert_with(Default::default).renew_time = Some(now);
            let _ = client.update(&lease).await;
        }
        Ok(None) => {
            let lease = Lease {
                metadata: meta("kube-node-lease", node),
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.into()),
                    lease_duration_seconds: Some(40),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            let _ = client.create(&lease).await;
        }
        Err(_) => {}
    }
}

/// The node a pod must go to: a DaemonSet pod's `metadata.name` matchFields term.
fn pinned_node(pod: &Pod) -> Option<String> {
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

/// Simulated scheduler and kubelets: bind pending pods round-robin (or to their pinned node),
/// run bound pods on live nodes, confirm deletions, renew leases.
async fn kubelets(
    client: Client,
    nodes: Arc<Mutex<BTreeMap<String, NodeSim>>>,
    auto_ready: Arc<AtomicBool>,
) {
    let mut rr = 0usize;
    let mut tick = 0u64;
    loop {
        tick += 1;
        let live: Vec<String> = nodes
            .lock()
            .iter()
            .filter(|(_, s)| !s.dead)
            .map(|(n, _)| n.clone())
            .collect();
        if tick.is_multiple_of(10) {
            for n in &live {
                renew_lease(&client, n).await;
            }
        }
        let Ok((pods, _)) = client.list::<Pod>("", &ListParams::default()).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let existing: Vec<String> = nodes.lock().keys().cloned().collect();
        for pod in pods {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let bound = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            match bound {
                None if pod.metadata.deletion_timestamp.is_none() && !live.is_empty() => {
                    let target = match pinned_node(&pod) {
                        Some(n) if live.contains(&n) => n,
                        Some(_) => continue,
                        None => {
                            rr += 1;
                            live[rr % live.len()].clone()
                        }
                    };
                    let _ = client.bind(&ns, &name, &uid, &target).await;
                }
                Some(node) if live.contains(&node) => {
                    if pod.metadata.deletion_timestamp.is_some() {
                        let _ = client
                            .delete::<Pod>(&ns, &name, DeleteOptions::grace(0))
                            .await;
                        continue;
                    }
                    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                    let ready = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    let terminal = matches!(phase.as_deref(), Some("Failed" | "Succeeded"));
                    if !terminal
                        && (phase.as_deref() != Some("Running")
                            || (!ready && auto_ready.load(Ordering::SeqCst)))
                    {
                        let mut p = pod.clone();
                        let st = p.status.get_or_insert_with(Default::default);
                        st.phase = Some("Running".into());
                        if auto_ready.load(Ordering::SeqCst) {
                            let conds = st.conditions.get_or_insert_with(Vec::new);
                            conds.retain(|c| c.type_ != "Ready");
                            conds.push(PodCondition {
                                type_: "Ready".into(),
                                status: "True".into(),
                                last_transition_time: Some(Time(jiff::Timestamp::now())),
                                ..Default::default()
                            });
                        }
                        let _ = client.update_status(&p).await;
                    }
                }
                Some(node) if !existing.contains(&node) => {}
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sets a pod Ready (or not) by hand.
pub async fn set_ready(client: &Client, pod: &Pod, ready: bool) {
    let mut p = pod.clone();
    let st = p.status.get_or_insert_with(Default::default);
    st.phase = Some("Running".into());
    let conds = st.conditions.get_or_insert_with(Vec::new);
    conds.retain(|c| c.type_ != "Ready");
    conds.push(PodCondition {
        type_: "Ready".into(),
        status: if ready { "True" } else { "False" }.into(),
        last_transition_time: Some(Time(jiff::Timestamp::now())),
        ..Default::default()
    });
    p.metadata.resource_version = None;
    client.update_status(&p).await.unwrap();
}
