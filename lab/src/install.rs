//! The installer run inside a lab's machines exactly as a user runs it on real hosts: a server
//! on machine 0 (the next servers joining it with its server token), then agents joining with
//! machine 0's agent token; then the admin kubeconfig copied out (its server rewritten to
//! machine 0's lab address) and every node awaited Ready.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use corral_api::k8s::api::core::v1::Node;
use corral_api::{Client, ListParams};

use crate::layout::{
    self, Layout, MachineLayout, Role, ADMIN_KUBECONFIG, AGENT_TOKEN, SERVER_TOKEN,
};
use crate::machine::{self, log_tail};
use crate::{io_err, Error};

/// A file inside a running machine, seen from the host through its leader's root.
fn inside(leader: i32, rel: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{leader}/root")).join(rel)
}

/// Runs the installer in machine `m` (output appended to its install log).
pub async fn run_installer(
    l: &Layout,
    m: &MachineLayout,
    leader: i32,
    role: Role,
    token: Option<&str>,
    server_exec: Option<&str>,
    timeout: Duration,
) -> Result<(), Error> {
    let argv = layout::install_argv(l, role, token, server_exec);
    let log_path = m.install_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err(&log_path))?;
    let err_log = log.try_clone().map_err(io_err(&log_path))?;
    let mut cmd = tokio::process::Command::from(machine::nsenter(leader, &argv));
    cmd.stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .kill_on_drop(true);
    let status = tokio::time::timeout(timeout, cmd.status())
        .await
        .map_err(|_| Error::Timeout {
            what: format!("the installer on machine {}", m.name),
            seconds: timeout.as_secs(),
        })?
        .map_err(|source| Error::Exec {
            command: argv.join(" "),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Install {
            machine: m.name.clone(),
            log: log_path.clone(),
            tail: log_tail(&log_path, 15),
        })
    }
}

/// Waits for a file a service in the machine writes, and reads it.
async fn read_inside(
    m: &MachineLayout,
    leader: i32,
    rel: &str,
    timeout: Duration,
) -> Result<String, Error> {
    let path = inside(leader, rel);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if !text.trim().is_empty() {
                return Ok(text);
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("/{rel} on machine {}", m.name),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Machine 0's agent token.
pub async fn agent_token(
    m: &MachineLayout,
    leader: i32,
    timeout: Duration,
) -> Result<String, Error> {
    Ok(read_inside(m, leader, AGENT_TOKEN, timeout)
        .await?
        .trim()
        .to_string())
}

/// Machine 0's server token (long form), for the next servers.
pub async fn server_token(
    m: &MachineLayout,
    leader: i32,
    timeout: Duration,
) -> Result<String, Error> {
    Ok(read_inside(m, leader, SERVER_TOKEN, timeout)
        .await?
        .trim()
        .to_string())
}

/// Copies machine 0's admin kubeconfig to the lab directory with the server the host reaches.
pub async fn copy_kubeconfig(
    l: &Layout,
    leader: i32,
    timeout: Duration,
) -> Result<(PathBuf, corral_api::Credentials), Error> {
    let m = &l.machines[0];
    read_inside(m, leader, ADMIN_KUBECONFIG, timeout).await?;
    let (_, creds) = corral_api::kubeconfig::load(&inside(leader, ADMIN_KUBECONFIG))?;
    let out = l.kubeconfig();
    corral_api::kubeconfig::write(
        &out,
        &format!("corral-lab-{}", l.name),
        &l.server_url(),
        &creds,
    )?;
    Ok((out, creds))
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until every machine is a Ready node, through the admin kubeconfig at `kubeconfig`.
pub async fn wait_nodes_ready(
    l: &Layout,
    kubeconfig: &Path,
    timeout: Duration,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), Error> {
    let (server, creds) = corral_api::kubeconfig::load(kubeconfig)?;
    let want: Vec<&str> = l.machines.iter().map(|m| m.name.as_str()).collect();
    let deadline = Instant::now() + timeout;
    let mut client: Option<Client> = None;
    let mut reported = 0;
    loop {
        if client.is_none() {
            client = Client::connect_with(&server, &creds).await.ok();
        }
        if let Some(c) = &client {
            if let Ok((nodes, _)) = c.list::<Node>("", &ListParams::default()).await {
                let ready: Vec<&str> = nodes
                    .iter()
                    .filter(|n| node_ready(n))
                    .filter_map(|n| n.metadata.name.as_deref())
                    .collect();
                let count = want.iter().filter(|w| ready.contains(w)).count();
                if count > reported {
                    progress(&format!("{count}/{} nodes Ready", want.len()));
                    reported = count;
                }
                if count == want.len() {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("nodes {} to be Ready", want.join(", ")),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
