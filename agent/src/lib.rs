//! Corral's node agent (a mini-kubelet): registers the node, runs the pods bound to it as
//! containerd containers with CNI networking, reports their status and serves their logs.

pub mod clock;
pub mod cluster_id;
pub mod configdata;
pub mod credentials;
pub mod drain;
pub mod exec;
pub mod hosts;
pub mod images;
pub mod join;
pub mod logs;
pub mod metrics;
pub mod network;
pub mod node;
pub use corral_api::nodeip;
pub mod pod;
pub mod podnet;
pub mod portforward;
pub mod probe;
pub mod resolv;
pub mod runtime;
pub mod spec;
pub mod stats;
pub mod streams;
pub mod svcenv;
pub mod tunnel;
pub mod volumes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::clock::SystemClock;
use crate::network::{Cni, CniConfig, Network};
use crate::pod::manager::{Manager, PodIndex};
use crate::pod::state::BackoffPolicy;
use crate::pod::worker::NodeContext;
use crate::runtime::containerd::Containerd;
use crate::runtime::ContainerRuntime;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: String,
    /// The cluster CA and this node's credentials (empty: plaintext).
    pub credentials: corral_api::Credentials,
    pub node_name: String,
    pub node_ip: String,
    pub containerd_socket: PathBuf,
    pub containerd_namespace: String,
    pub snapshotter: String,
    pub data_dir: PathBuf,
    /// `--pod-cidr`; none: the one the control plane assigns (waited for before pods start).
    pub pod_cidr: Option<String>,
    /// Air-gap image archives, imported at start and when new ones settle there.
    pub images_dir: Option<PathBuf>,
    pub taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub cni_bin_dir: PathBuf,
    pub netns_dir: PathBuf,
    pub bridge: String,
    pub max_pods: u32,
    pub registries: runtime::containerd::Registries,
    pub backoff: BackoffPolicy,
    pub lease_every: Duration,
    pub status_every: Duration,
    /// Accept a control plane whose cluster ID differs from the recorded one, once (the
    /// cluster was rebuilt on purpose); its old containers are then removed.
    pub rejoin_cluster: bool,
    /// Join token (`--token`/`--token-file`): used when DATA_DIR has no valid node certificate.
    pub token: Option<corral_api::token::Token>,
    /// Pod routes to the other nodes (`--pod-network`) and the range not masqueraded.
    pub pod_network: corral_podnet::Mode,
    pub cluster_cidr: corral_podnet::Cidr,
    /// Cluster DNS written into pods' resolv.conf (`--cluster-dns`, `--cluster-domain`).
    pub cluster_dns: resolv::ClusterDns,
    /// The binary containerd's shims run as each container's log copier (`corral-logger`);
    /// none: the shim writes raw output to the file (no times).
    pub logger: Option<PathBuf>,
    /// The longest a terminating pod's SIGTERM waits for every proxy to drop it (`drain`);
    /// zero: no wait.
    pub endpoint_drain: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("connecting to the control plane: {0}")]
    Api(#[from] corral_api::client::Error),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error(transparent)]
    Join(#[from] join::JoinError),
    #[error(transparent)]
    Register(node::RegisterError),
    #[error("creating {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the agent until the process is stopped.
pub async fn run(cfg: Config) -> Result<(), AgentError> {
    for dir in [cfg.data_dir.clone(), cfg.data_dir.join("tmp")] {
        std::fs::create_dir_all(&dir).map_err(|source| AgentError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    let containerd = Containerd::connect(
        &cfg.containerd_socket,
        &cfg.containerd_namespace,
        &cfg.snapshotter,
        cfg.data_dir.join("tmp"),
    )
    .await?
    .with_registries(cfg.registries.clone())
    .with_logger(cfg.logger.clone());
    // exec and attach talk to containerd's task API directly (stdio FIFOs, resize).
    let containerd_client = containerd.client().clone();
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(containerd);
    if let Some(dir) = &cfg.images_dir {
        images::start(runtime.clone(), dir.clone()).await;
    }
    // Over https:// without an identity from --kubeconfig, the node needs its own certificate
    // first: use the one in DATA_DIR, renew it, or join with the token.
    let joined = cfg.server.starts_with("https://") && cfg.credentials.identity.is_none();
    let credentials = if joined {
        join::ensure(
            &cfg.server,
            cfg.token.as_ref(),
            &cfg.node_name,
            &cfg.data_dir,
        )
        .await?
        .to_credentials()
    } else {
        cfg.credentials.clone()
    };
    let client = corral_api::Client::connect_lazy_with(&cfg.server, &credentials)?;
    // The other control planes, to fail over to when this one dies.
    corral_api::runtime::servers::follow(&client);
    if joined {
        let reload = client.clone();
        tokio::spawn(join::renew_forever(
            cfg.node_name.clone(),
            cfg.data_dir.clone(),
            move |renewed| {
                if let Err(e) = reload.reload_credentials(&renewed.to_credentials()) {
                    warn!(error = %e, "loading the renewed node certificate");
                }
            },
        ));
    }
    let mut node_cfg = node::NodeConfig {
        name: cfg.node_name.clone(),
        ip: cfg.node_ip.clone(),
        pod_cidr: cfg.pod_cidr.clone(),
        taints: cfg.taints.clone(),
        max_pods: cfg.max_pods,
        lease_every: cfg.lease_every,
        status_every: cfg.status_every,
    };
    // Nothing is registered, adopted or removed before the control plane is known to serve
    // the cluster this node joined.
    let guard = Arc::new(cluster_id::ClusterGuard::new(
        client.clone(),
        &cfg.server,
        &cfg.data_dir,
        cfg.rejoin_cluster,
    ));
    let registered = loop {
        guard.wait_verified().await;
        match node::register(&client, &node_cfg, &runtime).await {
            Ok(cidr) => break cidr,
            Err(e @ node::RegisterError::PodCidrMismatch { .. }) => {
                return Err(AgentError::Register(e))
            }
            Err(e) => {
                warn!(error = %e, "node registration failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    // No pod and no CNI configuration before the node's pod CIDR is known.
    let pod_cidr = match registered {
        Some(cidr) => cidr,
        None => node::wait_pod_cidr(&client, &cfg.node_name).await,
    };
    node_cfg.pod_cidr = Some(pod_cidr.clone());
    let network: Arc<dyn Network> = Arc::new(Cni::new(CniConfig {
        bin_dir: cfg.cni_bin_dir.clone(),
        netns_dir: cfg.netns_dir.clone(),
        state_dir: cfg.data_dir.join("cni"),
        bridge: cfg.bridge.clone(),
        pod_cidr,
        mtu: podnet::pod_mtu(cfg.pod_network, cfg.node_ip.parse().ok()).await,
    }));
    let ctx = Arc::new(NodeContext {
        client: client.clone(),
        api: Arc::new(client.clone()),
        recorder: corral_api::runtime::Recorder::new(
            client.clone(),
            pod::events::reporter(&cfg.node_name),
        ),
        clock: Arc::new(SystemClock),
        runtime: runtime.clone(),
        network,
        node_name: cfg.node_name.clone(),
        node_ip: cfg.node_ip.clone(),
        data_dir: cfg.data_dir.clone(),
        backoff: cfg.backoff,
        resolv_conf: PathBuf::from("/etc/resolv.conf"),
        cluster_dns: cfg.cluster_dns.clone(),
        nofile: spec::own_nofile_limit(),
        drain: if cfg.endpoint_drain.is_zero() {
            Arc::new(drain::Off)
        } else {
            Arc::new(drain::ProxyDrain::start(&client, cfg.endpoint_drain))
        },
    });
    let index = PodIndex::with_network(ctx.network.clone());
    tokio::spawn(node::heartbeat(
        client.clone(),
        node_cfg,
        runtime,
        guard.clone(),
    ));
    tokio::spawn(podnet::run(
        client.clone(),
        podnet::PodNetConfig {
            node_name: cfg.node_name.clone(),
            mode: cfg.pod_network,
            cluster_cidr: cfg.cluster_cidr,
            node_ip: cfg.node_ip.parse().ok(),
            resync: Duration::from_secs(30),
        },
    ));
    // Usage for `corral top` (metrics.k8s.io), served down the tunnel.
    let usage = stats::Stats::default();
    let sampler = stats::ContainerdSampler {
        client: containerd_client.clone(),
        node: stats::node::NodeCgroup::default(),
    };
    tokio::spawn(stats::run(
        usage.clone(),
        Arc::new(sampler),
        stats::SAMPLE_EVERY,
    ));
    tokio::spawn(tunnel::run(
        client.clone(),
        cfg.server.clone(),
        cfg.node_name.clone(),
        exec::ExecContext {
            containerd: containerd_client,
            index: index.clone(),
            data_dir: cfg.data_dir.clone(),
        },
        usage,
    ));
    // Registered, pod CIDR known: systemd may count the node agent up.
    corral_api::runtime::systemd::notify_ready();
    Manager::new(ctx, index).with_guard(guard).run().await;
    Ok(())
}
