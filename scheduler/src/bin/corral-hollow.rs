//! `corral-hollow`: registers N hollow nodes (kubemark-like) against a control plane.

use anyhow::Context;
use clap::Parser;
use corral_scheduler::hollow::{Hollow, HollowConfig};

#[derive(Parser)]
#[command(
    version,
    about = "Fake nodes that heartbeat and run pods without containers"
)]
struct Args {
    /// Control plane address, or several comma-separated (overrides the kubeconfig's; default
    /// http://127.0.0.1:7443); the others are learned from the cluster's `default/kubernetes`.
    #[arg(long, env = "CORRAL_SERVER")]
    server: Option<String>,
    /// Kubeconfig with the server, the cluster CA and credentials (the admin's, or nodes').
    #[arg(long, env = "CORRAL_KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Number of nodes to register.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Node name prefix; node i is PREFIX + i.
    #[arg(long, default_value = "hollow-node-")]
    prefix: String,
    #[arg(long, default_value = "8")]
    cpu: String,
    #[arg(long, default_value = "32Gi")]
    memory: String,
    #[arg(long, default_value = "110")]
    pods: String,
    /// API calls in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How often each node renews its Lease. Must stay well under the control plane's
    /// --node-monitor-grace-seconds (4 s by default); for thousands of nodes raise both, as
    /// kubemark does (10 s renewals, 40 s grace), or lease renewals dominate the API load.
    #[arg(long, default_value_t = 2000)]
    lease_renew_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    corral_api::runtime::logging::init();
    let args = Args::parse();
    let (server, creds) =
        corral_api::kubeconfig::for_component(args.kubeconfig.as_deref(), args.server.as_deref())?;
    let client = corral_api::Client::connect_lazy_with(&server, &creds)
        .with_context(|| format!("connecting to {server}"))?;
    corral_api::runtime::servers::follow(&client);
    let hollow = Hollow::new(
        client,
        HollowConfig {
            nodes: args.nodes,
            prefix: args.prefix,
            cpu: args.cpu,
            memory: args.memory,
            pods: args.pods,
            concurrency: args.concurrency,
            lease_renew: std::time::Duration::from_millis(args.lease_renew_ms.max(100)),
            ..Default::default()
        },
    );
    tokio::select! {
        r = hollow.run() => r.context("hollow nodes")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
