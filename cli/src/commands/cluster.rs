//! `corral cluster create|list|start|stop|delete|logs`, `corral node stop|start` and
//! `corral image import`: local multi-node clusters on this machine (crate `corral-cluster`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use corral_cluster::{CreateRequest, Options};

use crate::config::Config;
use crate::error::{local, Result};

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub action: ClusterAction,
}

#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// Create a local cluster: a network namespace, containerd and agent per node.
    Create {
        name: String,
        /// Number of agent nodes (the server node runs pods too).
        #[arg(long, default_value_t = 0)]
        agents: usize,
        #[arg(long, default_value_t = 1)]
        servers: usize,
        /// Image archives (OCI or docker-archive tars), or a directory of them, for every node.
        #[arg(long = "images")]
        images: Vec<PathBuf>,
        /// Seconds to wait for the cluster to be ready.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Do not point the config's current context at the new cluster.
        #[arg(long)]
        no_switch_context: bool,
    },
    /// List local clusters.
    List,
    /// Start a stopped cluster (its objects and pods come back).
    Start {
        name: String,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Stop every process of a cluster, keeping its data.
    Stop { name: String },
    /// Delete a cluster and everything it made on this machine.
    Delete { name: String },
    /// Show the logs of a cluster's components (all, or those whose name contains COMPONENT).
    Logs {
        name: String,
        component: Option<String>,
        /// Lines from the end of each log.
        #[arg(long, default_value_t = 50)]
        tail: usize,
    },
}

#[derive(Debug, Args)]
pub struct NodeCmdArgs {
    #[command(subcommand)]
    pub action: NodeAction,
}

#[derive(Debug, Subcommand)]
pub enum NodeAction {
    /// Kill a local cluster node's processes and take its link down (failure drill).
    Stop { node: String },
    /// Bring a stopped node back.
    Start {
        node: String,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub action: ImageAction,
}

#[derive(Debug, Subcommand)]
pub enum ImageAction {
    /// Import image archives onto every node of a local cluster.
    Import {
        archives: Vec<PathBuf>,
        #[arg(short = 'c', long = "cluster")]
        cluster: String,
    },
}

fn options() -> Options {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("corral"));
    let mut opts = Options::beside(&exe);
    if let Ok(base) = std::env::var("CORRAL_CLUSTERS_DIR") {
        opts.base = PathBuf::from(base);
    }
    opts
}

fn progress(msg: &str) {
    eprintln!("INFO {msg}");
}

/// Archives given directly, plus the `.tar` files of directories given.
fn expand_archives(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut tars: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| local(format!("reading {}: {e}", p.display())))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "tar"))
                .collect();
            tars.sort();
            out.extend(tars);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(local(format!(
                "image archive {} does not exist",
                p.display()
            )));
        }
    }
    Ok(out)
}

fn err(e: corral_cluster::Error) -> crate::error::CliError {
    local(e)
}

/// Points the config file's current context at a local cluster, with its admin's credentials.
fn switch_context(config_path: &Path, name: &str, state: &corral_cluster::State) -> Result<()> {
    let creds = state.admin_credentials().map_err(err)?;
    let mut cfg = Config::load(config_path).map_err(local)?;
    let ctx = format!("corral-{name}");
    cfg.set_inline_credentials(&ctx, &state.server_url(), &creds);
    cfg.set_context(&ctx, Some(&ctx), Some(&ctx), None);
    cfg.current_context = ctx;
    cfg.save(config_path).map_err(local)
}

pub async fn run(config_path: &Path, args: &ClusterArgs) -> Result<()> {
    let opts = options();
    match &args.action {
        ClusterAction::Create {
            name,
            agents,
            servers,
            images,
            timeout,
            no_switch_context,
        } => {
            let started = Instant::now();
            let req = CreateRequest {
                name: name.clone(),
                servers: *servers,
                agents: *agents,
                images: expand_archives(images)?,
                timeout: Duration::from_secs(*timeout),
            };
            let state = corral_cluster::create(&opts, &req, &progress)
                .await
                .map_err(err)?;
            if !no_switch_context {
                switch_context(config_path, name, &state)?;
            }
            let nodes: Vec<&str> = state.layout.nodes.iter().map(|n| n.name.as_str()).collect();
            println!(
                "Cluster '{name}' created successfully in {:.1}s: {} nodes ({}), {} images imported",
                started.elapsed().as_secs_f64(),
                nodes.len(),
                nodes.join(", "),
                req.images.len()
            );
            if !no_switch_context {
                println!("You can now use it like this:\n  corral get nodes");
            }
            Ok(())
        }
        ClusterAction::List => {
            let rows: Vec<Vec<String>> = corral_cluster::list(&opts)
                .iter()
                .map(corral_cluster::info)
                .map(|i| {
                    vec![
                        i.name,
                        format!("{}/{}", i.servers, i.servers),
                        format!("{}/{}", i.agents, i.agents),
                        if i.running { "running" } else { "stopped" }.to_string(),
                        i.server,
                    ]
                })
                .collect();
            let header = ["NAME", "SERVERS", "AGENTS", "STATUS", "SERVER"];
            print_table(&header, &rows);
            Ok(())
        }
        ClusterAction::Start { name, timeout } => {
            let started = Instant::now();
            corral_cluster::start(&opts, name, Duration::from_secs(*timeout), &progress)
                .await
                .map_err(err)?;
            println!(
                "Cluster '{name}' started in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        ClusterAction::Stop { name } => {
            corral_cluster::stop(&opts, name, &progress)
                .await
                .map_err(err)?;
            println!("Cluster '{name}' stopped");
            Ok(())
        }
        ClusterAction::Delete { name } => {
            corral_cluster::delete(&opts, name, &progress)
                .await
                .map_err(err)?;
            let mut cfg = Config::load(config_path).map_err(local)?;
            if cfg.current_context == format!("corral-{name}") {
                cfg.current_context.clear();
                cfg.save(config_path).map_err(local)?;
            }
            println!("Cluster '{name}' deleted");
            Ok(())
        }
        ClusterAction::Logs {
            name,
            component,
            tail,
        } => {
            for file in corral_cluster::log_files(&opts, name).map_err(err)? {
                let fname = file
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if component.as_deref().is_some_and(|c| !fname.contains(c)) {
                    continue;
                }
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                println!("==> {fname} <==");
                for l in &lines[lines.len().saturating_sub(*tail)..] {
                    println!("{l}");
                }
            }
            Ok(())
        }
    }
}

pub async fn node(args: &NodeCmdArgs) -> Result<()> {
    let opts = options();
    match &args.action {
        NodeAction::Stop { node } => {
            corral_cluster::node_stop(&opts, node).await.map_err(err)?;
            println!("node/{node} stopped");
        }
        NodeAction::Start { node, timeout } => {
            corral_cluster::node_start(&opts, node, Duration::from_secs(*timeout))
                .await
                .map_err(err)?;
            println!("node/{node} started");
        }
    }
    Ok(())
}

pub async fn image(args: &ImageArgs) -> Result<()> {
    let opts = options();
    match &args.action {
        ImageAction::Import { archives, cluster } => {
            let archives = expand_archives(archives)?;
            if archives.is_empty() {
                return Err(local("no image archives given"));
            }
            corral_cluster::import_images(&opts, cluster, &archives, &progress)
                .await
                .map_err(err)?;
        }
    }
    Ok(())
}

/// A list in kubectl's `get` layout (the CLI's one table writer).
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut table = crate::printers::table::Table::new(header.iter().copied());
    table.rows = rows.to_vec();
    print!("{}", table.render(true));
}
