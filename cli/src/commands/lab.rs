//! `corral lab create|list|delete|exec|poweroff|boot`: machines booting real systemd on this
//! host that run the installer as real hosts do (crate `corral-lab`). Thin: parsing, progress
//! lines and the final words are here, the work is in the crate.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use corral_lab::{CreateRequest, Options};

use crate::error::{local, Result};

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: LabAction,
}

#[derive(Debug, Subcommand)]
pub enum LabAction {
    /// Create a lab: machines NAME-0..N-1 booting systemd on bridge crlab<k> (10.77.<k>.0/24),
    /// then the installer as a server on NAME-0 and as agents joining it on the others.
    Create {
        name: String,
        /// Number of machines.
        #[arg(long, default_value_t = 3)]
        machines: usize,
        /// Number of servers (machines 0..N-1): more than one run the control planes on an
        /// embedded etcd, NAME-0 with `install.sh server --cluster-init`, the next ones joining
        /// it with `--server`; an odd number (3) survives the loss of one.
        #[arg(long, default_value_t = 1)]
        servers: usize,
        /// A directory whose *.tar image archives are copied into every machine's
        /// /var/lib/corral/agent/images before the installer runs.
        #[arg(long)]
        images: Option<PathBuf>,
        /// The directory of the Corral binaries, bound read-only at /opt/corral/bin
        /// (default: the directory of this `corral`).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Boot the machines only; run no installer.
        #[arg(long)]
        no_install: bool,
        /// Extra flags for the server's control plane (the installer's INSTALL_CORRAL_EXEC),
        /// e.g. "--node-monitor-grace-seconds 10 --pod-eviction-seconds 5" for quick drills.
        #[arg(long, allow_hyphen_values = true)]
        server_exec: Option<String>,
        /// Seconds the installs and nodes becoming Ready may take.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
    /// List labs.
    List,
    /// Delete a lab: its machines, bridge, cgroups and directories.
    Delete { name: String },
    /// Run a command inside a machine (its exit code is corral's).
    Exec {
        machine: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Power a machine off (`systemctl poweroff` inside); its disk is kept.
    Poweroff {
        machine: String,
        /// Cut the power instead: kill the machine's systemd and every process in it at once,
        /// as a host that fails (drills).
        #[arg(long)]
        force: bool,
    },
    /// Boot a powered-off machine again.
    Boot { machine: String },
}

fn options(bin_dir: Option<&Path>) -> Options {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("corral"));
    let mut opts = Options::beside(&exe);
    if let Some(dir) = bin_dir {
        opts.bin_dir = dir.to_path_buf();
    }
    if let Ok(base) = std::env::var("CORRAL_LAB_DIR") {
        opts.base = PathBuf::from(base);
    }
    opts
}

fn progress(msg: &str) {
    eprintln!("INFO {msg}");
}

/// The `.tar` archives of `dir`, sorted.
fn archives(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut tars: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| local(format!("reading image directory {}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|f| f.extension().is_some_and(|x| x == "tar"))
        .collect();
    tars.sort();
    Ok(tars)
}

pub async fn run(args: &LabArgs) -> Result<()> {
    match &args.action {
        LabAction::Create {
            name,
            machines,
            servers,
            images,
            bin_dir,
            no_install,
            server_exec,
            timeout,
        } => {
            let mut opts = options(bin_dir.as_deref());
            opts.server_exec = server_exec.clone();
            let started = Instant::now();
            let req = CreateRequest {
                name: name.clone(),
                machines: *machines,
                images: images
                    .as_deref()
                    .map(archives)
                    .transpose()?
                    .unwrap_or_default(),
                install: !no_install,
                timeout: Duration::from_secs(*timeout),
            };
            let state = match corral_lab::create_with_servers(&opts, &req, *servers, &progress)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    return Err(local(format!(
                        "{e}\n(what was made is kept for a look; remove it with `corral lab delete {name}`)"
                    )))
                }
            };
            let l = &state.layout;
            let names: Vec<&str> = l.machines.iter().map(|m| m.name.as_str()).collect();
            println!(
                "Lab '{name}' created in {:.1}s: {} machines ({}) on {} ({})",
                started.elapsed().as_secs_f64(),
                names.len(),
                names.join(", "),
                l.bridge,
                l.subnet
            );
            if req.install {
                if l.servers > 1 {
                    println!("Servers (etcd members): {}", l.server_urls().join(","));
                }
                println!(
                    "You can now use it like this:\n  CORRAL_CONFIG={} corral get nodes -o wide",
                    l.kubeconfig().display()
                );
            } else {
                println!(
                    "No installer run (--no-install). Try:\n  corral lab exec {} -- systemctl status",
                    names[0]
                );
            }
            Ok(())
        }
        LabAction::List => {
            let rows: Vec<Vec<String>> = corral_lab::list(&options(None))
                .iter()
                .map(|i| {
                    vec![
                        i.name.clone(),
                        i.machines.to_string(),
                        i.state(),
                        i.bridge.clone(),
                        i.server.clone(),
                    ]
                })
                .collect();
            print_table(&["NAME", "MACHINES", "STATE", "BRIDGE", "SERVER"], &rows);
            Ok(())
        }
        LabAction::Delete { name } => {
            let t = Instant::now();
            corral_lab::delete(&options(None), name, &progress)
                .await
                .map_err(local)?;
            println!("Lab '{name}' deleted in {:.1}s", t.elapsed().as_secs_f64());
            Ok(())
        }
        LabAction::Exec { machine, command } => {
            let code = corral_lab::exec(&options(None), machine, command).map_err(local)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        LabAction::Poweroff { machine, force } => {
            let took = if *force {
                corral_lab::power_cut(&options(None), machine).await
            } else {
                corral_lab::poweroff(&options(None), machine).await
            }
            .map_err(local)?;
            println!(
                "machine/{machine} powered off in {:.1}s",
                took.as_secs_f64()
            );
            Ok(())
        }
        LabAction::Boot { machine } => {
            let took = corral_lab::boot(&options(None), machine)
                .await
                .map_err(local)?;
            println!("machine/{machine} booted in {:.1}s", took.as_secs_f64());
            Ok(())
        }
    }
}

/// A list in kubectl's `get` layout (the CLI's one table writer).
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut table = crate::printers::table::Table::new(header.iter().copied());
    table.rows = rows.to_vec();
    print!("{}", table.render(true));
}
