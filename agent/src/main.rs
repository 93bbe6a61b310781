//! `corral-agent`: the node agent. Flags in, `corral_agent::run` does the work.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    // A flag given again wins (installed units put INSTALL_CORRAL_EXEC after their defaults).
    args_override_self = true,
    about = "Corral node agent: runs the pods bound to this node through containerd"
)]
struct Args {
    /// Control plane address, or several comma-separated (overrides the kubeconfig's; default
    /// http://127.0.0.1:7443); the others are learned from the cluster's `default/kubernetes`.
    #[arg(long, env = "CORRAL_SERVER")]
    server: Option<String>,
    /// Kubeconfig with the server, the cluster CA and this node's credentials
    /// (`CN=system:node:<name>, O=system:nodes`).
    #[arg(long, env = "CORRAL_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Node name (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// Address other nodes and the control plane reach this node at (the Node's InternalIP;
    /// default: see --node-interface).
    #[arg(long)]
    node_ip: Option<String>,
    /// Take the node address from this interface when --node-ip is not given (default: the
    /// one holding the default IPv4 route, else the first up interface with a global IPv4).
    #[arg(long)]
    node_interface: Option<String>,
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    containerd_socket: PathBuf,
    #[arg(long, default_value = "corral")]
    containerd_namespace: String,
    #[arg(long, default_value = "overlayfs")]
    snapshotter: String,
    #[arg(long, default_value = "/var/lib/corral/agent")]
    data_dir: PathBuf,
    /// This node's pod CIDR (host-local IPAM range; default: the one the control plane
    /// assigns from its --cluster-cidr, waited for before pods start).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// OCI / docker-archive tars imported at start and when new ones appear (k3s's airgap
    /// images; default DATA_DIR/images).
    #[arg(long)]
    images_dir: Option<PathBuf>,
    /// Register with this taint, `key[=value]:Effect` (repeatable).
    #[arg(long = "taint")]
    taints: Vec<String>,
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_bin_dir: PathBuf,
    #[arg(long, default_value = "/run/netns")]
    netns_dir: PathBuf,
    /// Linux bridge the pods of this node are attached to.
    #[arg(long, default_value = "corral0")]
    bridge: String,
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Registry `host[:port]` pulled from over plain HTTP (repeatable).
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Only pull from these registries `host[:port]` (repeatable; default: any).
    #[arg(long = "allowed-registry")]
    allowed_registries: Vec<String>,
    /// First container restart back-off in seconds (Kubernetes: 10).
    #[arg(long, default_value_t = 10.0)]
    backoff_initial: f64,
    /// Longest container restart back-off in seconds (Kubernetes: 300).
    #[arg(long, default_value_t = 300.0)]
    backoff_max: f64,
    /// Join the control plane's cluster even if this node recorded another one (in
    /// DATA_DIR/cluster-id): for a cluster rebuilt on purpose. Containers of the old cluster
    /// are removed. Use once.
    #[arg(long)]
    rejoin_cluster: bool,
    /// Join token `K10<ca-hash>::<id>.<secret>` (the control plane's DATA_DIR/agent-token, or
    /// `corral token create`); used only when DATA_DIR has no valid node certificate.
    #[arg(long, env = "CORRAL_TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// File holding the join token.
    #[arg(long, env = "CORRAL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The cluster's pod range: pod traffic leaving it is masqueraded.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: corral_podnet::Cidr,
    /// Routes to other nodes' pods: host-gw (hosts on one segment), vxlan, or none.
    #[arg(long, default_value = "host-gw")]
    pod_network: corral_podnet::Mode,
    /// The cluster DNS Service's address written into ClusterFirst pods' resolv.conf
    /// (repeatable; none: pods use the node's resolvers).
    #[arg(long = "cluster-dns", default_value = "10.43.0.10")]
    cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster's DNS domain, in pods' search path.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Let the shims write containers' raw output to the log files, without the log copier
    /// (no times: `logs --timestamps` and `--since` then show every line as it is).
    #[arg(long, env = "CORRAL_RAW_LOGS")]
    raw_logs: bool,
    /// Where Prometheus metrics are served (`GET /metrics`, plain HTTP); a port taken by
    /// another process is logged and the agent runs without them.
    #[arg(
        long,
        default_value = "127.0.0.1:10255",
        env = "CORRAL_AGENT_METRICS_ADDRESS"
    )]
    metrics_address: std::net::SocketAddr,
    /// Hold a terminating pod's SIGTERM until every live node proxy has dropped it from its
    /// rules and routes, at most this many seconds (within the grace period); 0 turns the hold
    /// off (SIGTERM at once, as kubelet).
    #[arg(long, default_value_t = 10.0, env = "CORRAL_ENDPOINT_DRAIN_TIMEOUT")]
    endpoint_drain_timeout: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agent().await
}

/// The log copier beside this binary (installs and rigs put `corral-logger` there); without
/// it the shims write raw output (no times), with a warning.
fn log_copier() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // A binary replaced on disk reads as "... (deleted)"; its directory is what matters.
    let dir = exe.parent()?;
    let copier = dir.join(corral_logger::BINARY);
    if copier.is_file() {
        return Some(copier);
    }
    tracing::warn!(path = %copier.display(), "no log copier: container logs will carry no times");
    None
}

async fn agent() -> anyhow::Result<()> {
    corral_api::runtime::logging::init();
    let a = Args::parse();
    let taints = a
        .taints
        .iter()
        .map(|t| corral_agent::node::parse_taint(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let node_name = match a.node_name {
        Some(n) => n,
        None => nix::sys::utsname::uname()?
            .nodename()
            .to_string_lossy()
            .into_owned(),
    };
    let (server, credentials) =
        corral_api::kubeconfig::for_component(a.kubeconfig.as_deref(), a.server.as_deref())?;
    // A token means nothing over plaintext (nothing to join): read it only for https://.
    let token = if server.starts_with("https://") && credentials.identity.is_none() {
        corral_agent::join::read_token(a.token.as_deref(), a.token_file.as_deref())?
    } else {
        None
    };
    if let Some(name) = Some(&node_name).filter(|_| token.is_some()) {
        // Checked here too so a bad hostname fails before anything is sent.
        anyhow::ensure!(
            corral_api::rules::names::is_dns1123_subdomain(name),
            "node name {name:?}: must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.'): choose one with --node-name"
        );
    }
    let node_ip = corral_agent::nodeip::resolve(a.node_ip.as_deref(), a.node_interface.as_deref())?;
    let registry = std::sync::Arc::new(corral_agent::metrics::registry());
    if let Err(e) = corral_api::runtime::metrics::serve(a.metrics_address, registry).await {
        tracing::warn!(address = %a.metrics_address, error = %e, "not serving /metrics");
    }
    let images_dir = a.images_dir.unwrap_or_else(|| a.data_dir.join("images"));
    let cfg = corral_agent::Config {
        server,
        credentials,
        node_name,
        node_ip: node_ip.to_string(),
        containerd_socket: a.containerd_socket,
        containerd_namespace: a.containerd_namespace,
        snapshotter: a.snapshotter,
        data_dir: a.data_dir,
        pod_cidr: a.pod_cidr,
        images_dir: Some(images_dir),
        taints,
        cni_bin_dir: a.cni_bin_dir,
        netns_dir: a.netns_dir,
        bridge: a.bridge,
        max_pods: a.max_pods,
        registries: corral_agent::runtime::containerd::Registries {
            insecure: a.insecure_registries,
            allowed: a.allowed_registries,
        },
        backoff: corral_agent::pod::state::BackoffPolicy {
            initial: Duration::from_secs_f64(a.backoff_initial),
            max: Duration::from_secs_f64(a.backoff_max),
            ..Default::default()
        },
        // A quarter of the control plane's default 4 s node grace (Kubernetes: 10 s of 40 s).
        lease_every: Duration::from_secs(1),
        status_every: Duration::from_secs(10),
        rejoin_cluster: a.rejoin_cluster,
        token,
        pod_network: a.pod_network,
        cluster_cidr: a.cluster_cidr,
        cluster_dns: corral_agent::resolv::ClusterDns {
            servers: a.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
            domain: a.cluster_domain,
        },
        logger: if a.raw_logs { None } else { log_copier() },
        endpoint_drain: Duration::try_from_secs_f64(a.endpoint_drain_timeout).map_err(|e| {
            anyhow::anyhow!("--endpoint-drain-timeout {}: {e}", a.endpoint_drain_timeout)
        })?,
    };
    corral_agent::run(cfg).await?;
    Ok(())
}
