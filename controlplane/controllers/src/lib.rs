//! Controllers that run inside `corral-controlplane`: each one a task with list-and-watch
//! informers, a work queue keyed by object, a pure planner and a thin executor.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use corral_api::Client;
use tokio::task::JoinHandle;

pub mod daemonset;
pub mod deployment;
mod endpoints;
pub mod gc;
pub mod localpath;
pub mod metrics;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod ops;
pub mod pods;
pub mod queue;
pub mod replicaset;
pub mod statefulset;
pub mod tokencleaner;
pub mod util;
mod wiring;

#[cfg(test)]
mod testutil;

use corral_api::runtime::leader::{LeaderConfig, LeaderElector};
use corral_api::runtime::recorder::{Recorder, Reporter};
use corral_api::runtime::{reflector, watcher, ObjectKey, Store, WatcherConfig};
use queue::WorkQueue;

/// Tunables of the controllers, set from `corral-controlplane` flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// A node whose Lease is older than this becomes NotReady/Unknown.
    pub node_monitor_grace: Duration,
    /// Default toleration seconds for `node.kubernetes.io/unreachable` / `not-ready` taints.
    pub pod_eviction_timeout: Duration,
    /// How fast nodes' pods are evicted, per zone (Kubernetes' eviction rate flags).
    pub eviction: nodelifecycle::plan::EvictionRates,
    /// Controllers not to start, by name (`replicaset`, `deployment`, `daemonset`,
    /// `statefulset`, `garbagecollector`, `nodelifecycle`, `localpath`, `endpoints`,
    /// `namespace`, `nodeipam`).
    pub disabled: BTreeSet<String>,
    /// Parallel reconciles per controller.
    pub workers: usize,
    /// Where the local-path provisioner puts volumes on nodes.
    pub local_path_root: String,
    /// Run the controllers only while holding the leader Lease (several control planes).
    pub leader_election: bool,
    /// How long a leader's Lease lasts without renewal.
    pub leader_lease: Duration,
    /// Node pod CIDRs (`--cluster-cidr`, `--node-cidr-mask-size`); none: nodes set their own.
    pub cluster_cidr: Option<nodeipam::plan::Range>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_monitor_grace: Duration::from_secs(4),
            pod_eviction_timeout: Duration::from_secs(1),
            eviction: Default::default(),
            disabled: BTreeSet::new(),
            workers: 4,
            local_path_root: "/var/lib/corral/storage".into(),
            leader_election: true,
            leader_lease: Duration::from_secs(8),
            cluster_cidr: Some(Default::default()),
        }
    }
}

impl Config {
    pub fn enabled(&self, controller: &str) -> bool {
        !self.disabled.contains(controller)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{object}: invalid selector")]
    InvalidSelector {
        object: String,
        #[source]
        source: corral_api::selector::SelectorError,
    },
    #[error("{action} {object}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: corral_api::client::Error,
    },
    #[error("{object}: {message}")]
    Invalid { object: String, message: String },
}

impl Error {
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api { source, .. } if source.is_conflict())
    }
}

/// Runs `workers` loops taking keys from `queue` and reconciling them; a reconcile returns
/// when to look again (`Some(delay)`) and failures are retried with back-off.
pub fn run_workers<F, Fut>(
    controller: &'static str,
    queue: Arc<WorkQueue<ObjectKey>>,
    workers: usize,
    reconcile: F,
) -> Vec<JoinHandle<()>>
where
    F: Fn(ObjectKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Duration>, Error>> + Send + 'static,
{
    (0..workers.max(1))
        .map(|_| {
            let queue = queue.clone();
            let reconcile = reconcile.clone();
            tokio::spawn(async move {
                loop {
                    let key = queue.get().await;
                    metrics::global().depth(controller, queue.len());
                    let started = std::time::Instant::now();
                    let result = reconcile(key.clone()).await;
                    metrics::global().reconciled(controller, started.elapsed(), result.is_err());
                    match result {
                        Ok(again) => {
                            queue.forget(&key);
                            if let Some(d) = again {
                                queue.add_after(key.clone(), d);
                            }
                        }
                        Err(e) => {
                            if e.is_conflict() {
                                tracing::debug!(controller, key = %key, error = %e, "conflict, retrying");
                            } else {
                                tracing::warn!(controller, key = %key, error = %e, error.source = ?std::error::Error::source(&e), "reconcile failed");
                            }
                            queue.add_rate_limited(key.clone());
                        }
                    }
                    queue.done(&key);
                }
            })
        })
        .collect()
}

/// Aborts the tasks it holds when dropped (when the task owning it is aborted).
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Starts every controller against the API server reached by `client` — behind the leader
/// election unless `config.leader_election` is off. Aborting the returned handles stops them.
pub fn spawn(client: Client, config: Config) -> Vec<JoinHandle<()>> {
    if !config.leader_election {
        return spawn_controllers(client, config);
    }
    vec![tokio::spawn(async move {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "corral".into());
        let identity = format!("{host}_{}", corral_api::object::random_suffix(8));
        let lease = config.leader_lease;
        let mut elector = LeaderElector::new(
            client.clone(),
            LeaderConfig {
                lease_duration: lease,
                // Stop well before anyone else may take the lease, so two never overlap.
                renew_deadline: lease * 3 / 4,
                retry_period: lease / 4,
                ..LeaderConfig::new(LEADER_LEASE, &identity)
            },
        );
        loop {
            let since = elector.acquire().await;
            tracing::info!(%identity, "became the controllers' leader");
            let _running = AbortOnDrop(spawn_controllers(client.clone(), config.clone()));
            let lost = elector.hold(since).await;
            tracing::warn!(%identity, error = %lost, "stopping the controllers");
        }
    })]
}

/// The Lease (in kube-system) whose holder runs the controllers.
pub const LEADER_LEASE: &str = "corral-controller-manager";

fn spawn_controllers(client: Client, config: Config) -> Vec<JoinHandle<()>> {
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), Reporter::new("corral-controller-manager")),
        client,
        config,
        pods: Store::new(),
        replicasets: Store::new(),
        deployments: Store::new(),
        daemonsets: Store::new(),
        statefulsets: Store::new(),
        revisions: Store::new(),
        nodes: Store::new(),
        leases: Store::new(),
        pvcs: Store::new(),
        pvs: Store::new(),
        namespaces: Store::new(),
    });
    let mut handles = Vec::new();
    // Handlers are registered before the informers start, so no event is missed.
    if ctx.config.enabled("replicaset") {
        handles.extend(replicaset::start(ctx.clone()));
    }
    if ctx.config.enabled("deployment") {
        handles.extend(deployment::start(ctx.clone()));
    }
    if ctx.config.enabled("endpoints") {
        handles.extend(endpoints::start(ctx.clone()));
    }
    if ctx.config.enabled("daemonset") {
        handles.extend(daemonset::start(ctx.clone()));
    }
    if ctx.config.enabled("statefulset") {
        handles.extend(statefulset::start(ctx.clone()));
    }
    if ctx.config.enabled("localpath") {
        handles.extend(localpath::start(ctx.clone()));
    }
    if ctx.config.enabled("nodelifecycle") {
        handles.extend(nodelifecycle::start(ctx.clone()));
    }
    if ctx.config.enabled("garbagecollector") {
        handles.extend(gc::start(ctx.clone()));
    }
    if ctx.config.enabled("namespace") {
        handles.extend(namespace::start(ctx.clone()));
    }
    if ctx.config.enabled("tokencleaner") {
        handles.extend(tokencleaner::start(ctx.clone()));
    }
    if let Some(range) = ctx
        .config
        .cluster_cidr
        .filter(|_| ctx.config.enabled("nodeipam"))
    {
        handles.extend(nodeipam::start(ctx.clone(), range));
    }
    handles.push(run_informer(&ctx, &ctx.pods));
    handles.push(run_informer(&ctx, &ctx.replicasets));
    handles.push(run_informer(&ctx, &ctx.deployments));
    handles.push(run_informer(&ctx, &ctx.daemonsets));
    handles.push(run_informer(&ctx, &ctx.statefulsets));
    handles.push(run_informer(&ctx, &ctx.revisions));
    handles.push(run_informer(&ctx, &ctx.nodes));
    handles.push(run_informer(&ctx, &ctx.leases));
    handles.push(run_informer(&ctx, &ctx.pvcs));
    handles.push(run_informer(&ctx, &ctx.pvs));
    handles.push(run_informer(&ctx, &ctx.namespaces));
    handles
}

fn run_informer<K: corral_api::client::Object + Sync>(
    ctx: &Context,
    store: &Arc<Store<K>>,
) -> JoinHandle<()> {
    let events = watcher(ctx.client.clone(), WatcherConfig::all());
    tokio::spawn(reflector::reflect(store.clone(), events))
}

/// What every controller shares: the client, the configuration, the caches and the recorder.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub recorder: Recorder,
    pub pods: ops::Shared<k8s_openapi::api::core::v1::Pod>,
    pub replicasets: ops::Shared<k8s_openapi::api::apps::v1::ReplicaSet>,
    pub deployments: ops::Shared<k8s_openapi::api::apps::v1::Deployment>,
    pub daemonsets: ops::Shared<k8s_openapi::api::apps::v1::DaemonSet>,
    pub statefulsets: ops::Shared<k8s_openapi::api::apps::v1::StatefulSet>,
    pub revisions: ops::Shared<k8s_openapi::api::apps::v1::ControllerRevision>,
    pub nodes: ops::Shared<k8s_openapi::api::core::v1::Node>,
    pub leases: ops::Shared<k8s_openapi::api::coordination::v1::Lease>,
    pub pvcs: ops::Shared<k8s_openapi::api::core::v1::PersistentVolumeClaim>,
    pub pvs: ops::Shared<k8s_openapi::api::core::v1::PersistentVolume>,
    pub namespaces: ops::Shared<k8s_openapi::api::core::v1::Namespace>,
}
