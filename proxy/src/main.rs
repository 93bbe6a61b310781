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
    /// Control plane URL (overrides the kubeconfig's; default http://127.0.0.1:7443).
    #[arg(long)]
    server: Option<String>,
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
    let config = corral_proxy::Config {
        server,
        credentials,
        node_name: args.node_name,
        ingress_listen: SocketAddr::new(args.ingress_address, args.ingress_port),
        ingress_threads: args.ingress_threads,
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
