//! `corral-scheduler`: places pending pods on nodes. Flags only; the logic is in the library.

use anyhow::Context;
use clap::Parser;
use corral_api::runtime::{LeaderConfig, LeaderElector};
use corral_scheduler::{Config, Scheduler};
use tokio::sync::watch;

#[derive(Parser)]
#[command(version, about = "Corral's scheduler: binds pending pods to nodes")]
struct Args {
    /// Control plane address, or several comma-separated (overrides the kubeconfig's; default
    /// http://127.0.0.1:7443); the others are learned from the cluster's `default/kubernetes`.
    #[arg(long, env = "CORRAL_SERVER")]
    server: Option<String>,
    /// Kubeconfig with the server, the cluster CA and this component's credentials (the
    /// control plane writes the scheduler's to DATA_DIR/tls/scheduler.kubeconfig).
    #[arg(long, env = "CORRAL_KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Identity for leader election and events (default: hostname and pid).
    #[arg(long)]
    name: Option<String>,
    /// Share of nodes to find feasible before scoring, 1..=100; 0 is kube-scheduler's adaptive
    /// default (50% minus 1% per 125 nodes, at least 5% and 100 nodes).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    percentage_of_nodes_to_score: u32,
    /// Take part in leader election through the Lease kube-system/corral-scheduler.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Binds sent concurrently.
    #[arg(long, default_value_t = 256)]
    max_binds_in_flight: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    corral_api::runtime::logging::init();
    let args = Args::parse();
    let identity = args.name.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}_{}", std::process::id())
    });
    let (server, creds) =
        corral_api::kubeconfig::for_component(args.kubeconfig.as_deref(), args.server.as_deref())?;
    let client = corral_api::Client::connect_lazy_with(&server, &creds)
        .with_context(|| format!("connecting to {server}"))?;
    // The other control planes, to fail over to when this one dies.
    corral_api::runtime::servers::follow(&client);
    let config = Config {
        identity: identity.clone(),
        percentage_of_nodes_to_score: args.percentage_of_nodes_to_score,
        max_binds_in_flight: args.max_binds_in_flight,
        ..Default::default()
    };
    let scheduler = Scheduler::new(client.clone(), config);
    let metrics = scheduler.metrics();
    // READY=1 once the node and pod caches have synced (a standby also serves: it waits).
    let synced = metrics.clone();
    tokio::spawn(async move {
        while !synced.synced.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        corral_api::runtime::systemd::notify_ready();
    });
    let (tx, rx) = watch::channel(!args.leader_elect);
    let run = scheduler.run(rx);
    tokio::pin!(run);
    let outcome = if args.leader_elect {
        let mut elector = LeaderElector::new(
            client,
            LeaderConfig::new(corral_scheduler::LEADER_LEASE, &identity),
        );
        let outcome = tokio::select! {
            _ = &mut run => Ok(()),
            lost = elector.run(tx) => Err(anyhow::Error::new(lost)),
            _ = tokio::signal::ctrl_c() => Ok(()),
        };
        if outcome.is_ok() {
            if let Err(e) = elector.release().await {
                tracing::warn!(error = %e, "releasing the lease");
            }
        }
        outcome
    } else {
        tokio::select! {
            _ = &mut run => Ok(()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    };
    tracing::info!(summary = %metrics.summary(), "stopping");
    outcome
}
