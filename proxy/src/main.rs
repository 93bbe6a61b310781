//! corral-proxy: flags, logging and signals; the work is in the library.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "corral-proxy",
    about = "Corral's per-node service proxy and ingress"
)]
struct Args {
    /// Control plane URL, or several comma-separated (overrides the kubeconfig's; default
    /// http://127.0.0.1:7443); the others are learned from the cluster's `default/kubernetes`.
    #[arg(long)]
    server: Option<String>,
    /// Where Prometheus metrics are served (`GET /metrics`, plain HTTP); a port taken by
    /// another process is logged and the proxy runs without them.
    #[arg(
        long,
        default_value = "127.0.0.1:10249",
        env = "CORRAL_PROXY_METRICS_ADDRESS"
    )]
    metrics_address: SocketAddr,
    /// Kubeconfig with the server, the cluster CA and this node's credentials.
    #[arg(long, env = "CORRAL_KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Name of the node this proxy runs on.
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Port of the Ingress HTTP reverse proxy.
    #[arg(long, default_value_t = 80)]
    ingress_port: u16,
    /// Address the Ingress reverse proxy listens on.
    #[arg(long, default_value = "0.0.0.0")]
    ingress_address: IpAddr,
    /// Ingress worker threads, each a single-threaded event loop with its own listening
    /// socket (like nginx's workers with `reuseport`); 0 = one per CPU.
    #[arg(long, env = "CORRAL_INGRESS_THREADS", default_value_t = 0)]
    ingress_threads: usize,
    /// Address of the node-local cluster DNS server (default: this node's InternalIP); the
    /// kube-dns ClusterIP is DNATed to it.
    #[arg(long)]
    dns_address: Option<IpAddr>,
    /// Port of the cluster DNS server.
    #[arg(long, default_value_t = 53)]
    dns_port: u16,
    /// Resolvers for names outside the cluster domain, `IP` or `IP:PORT`, repeatable
    /// or comma-separated (default: the nameservers of /etc/resolv.conf).
    #[arg(long = "dns-upstream", env = "CORRAL_DNS_UPSTREAM", value_delimiter = ',', value_parser = parse_upstream)]
    dns_upstreams: Vec<SocketAddr>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The cluster's pod range (as the control plane's `--cluster-cidr`): cluster DNS answers
    /// its reverse names, NXDOMAIN for unknown addresses.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: ipnet::Ipv4Net,
    /// The Service (ClusterIP) range, as the control plane's `--service-cidr`; reverse names
    /// as for `--cluster-cidr`.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: ipnet::Ipv4Net,
    /// Serve no cluster DNS.
    #[arg(long)]
    disable_dns: bool,
}

fn parse_upstream(s: &str) -> Result<SocketAddr, std::net::AddrParseError> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
}

fn main() -> anyhow::Result<()> {
    // The watches and the sync loop are light: one thread runs them; the Ingress gets its
    // own worker threads.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    corral_api::runtime::logging::init();
    let args = Args::parse();
    let (server, credentials) =
        corral_api::kubeconfig::for_component(args.kubeconfig.as_deref(), args.server.as_deref())?;
    let registry = std::sync::Arc::new(corral_proxy::metrics::registry());
    if let Err(e) = corral_api::runtime::metrics::serve(args.metrics_address, registry).await {
        tracing::warn!(address = %args.metrics_address, error = %e, "not serving /metrics");
    }
    let config = corral_proxy::Config {
        server,
        credentials,
        node_name: args.node_name,
        ingress_listen: SocketAddr::new(args.ingress_address, args.ingress_port),
        ingress_threads: args.ingress_threads,
        dns: if args.disable_dns {
            None
        } else {
            let upstreams = if args.dns_upstreams.is_empty() {
                corral_proxy::dns::upstreams_from("/etc/resolv.conf").unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cluster DNS forwards nothing: names outside the cluster fail");
                    vec![]
                })
            } else {
                args.dns_upstreams
            };
            Some(corral_proxy::DnsConfig {
                address: args.dns_address,
                port: args.dns_port,
                upstreams,
                cluster_domain: args.cluster_domain,
                reverse_ranges: vec![args.cluster_cidr, args.service_cidr],
            })
        },
        ..Default::default()
    };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let ipt = Arc::new(corral_proxy::iptables::System::default());
    corral_proxy::run(config, ipt, shutdown).await?;
    Ok(())
}
