//! Harness for end-to-end tests: real binaries from the build's target directory, a local
//! cluster (network namespaces, containerd, agents) that is deleted even when a test fails,
//! and snapshots of host state to prove that nothing is left behind.

pub mod chromium;
pub mod kubectl;
pub mod procs;
pub mod traffic;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_cluster::{CreateRequest, Options, State};

/// The admin kubeconfig of each cluster this process created, by server address, so the
/// helpers that take a server (`corral`, clients) find its credentials.
static KUBECONFIGS: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());

fn kubeconfig_of(server: &str) -> Option<PathBuf> {
    KUBECONFIGS
        .lock()
        .unwrap()
        .iter()
        .find(|(s, _)| s == server)
        .map(|(_, p)| p.clone())
}

/// The admin credentials of the cluster this process created at `server`.
pub fn credentials_for(server: &str) -> corral_api::Credentials {
    kubeconfig_of(server)
        .and_then(|p| corral_api::kubeconfig::load(&p).ok())
        .map(|(_, c)| c)
        .unwrap_or_default()
}

/// Why end-to-end tests cannot run here, or None.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (network namespaces, containerd)".into());
    }
    for bin in ["containerd", "runc", "nsenter", "ip"] {
        if which(bin).is_none() {
            return Some(format!("{bin} is not installed"));
        }
    }
    for path in ["/usr/lib/cni/bridge", "/usr/bin/busybox"] {
        if !Path::new(path).exists() {
            return Some(format!("{path} is missing"));
        }
    }
    let bins = target_dir();
    for bin in [
        "corral-controlplane",
        "corral-scheduler",
        "corral-agent",
        "corral-logger",
    ] {
        if !bins.join(bin).exists() {
            return Some(format!(
                "{} is not built (cargo build --workspace)",
                bins.join(bin).display()
            ));
        }
    }
    None
}

#[macro_export]
macro_rules! skip_unless_e2e {
    () => {
        if let Some(why) = $crate::skip_reason() {
            if std::env::var_os("CI").is_some() {
                panic!("end-to-end test cannot run in CI: {why}");
            }
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|p| p.exists())
    })
}

/// target/debug (or release): where cargo put the workspace's binaries.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().unwrap_or(deps).to_path_buf()
}

/// Builds the test images once per process and returns the archives. They live under
/// `target/debug/test-images/<pid>` (a static's temp dir is never dropped, so each test
/// process used to leave 85 MB in /tmp); the directories of exited processes go first.
pub fn test_images() -> Vec<PathBuf> {
    static IMAGES: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    IMAGES
        .get_or_init(|| {
            let root = target_dir().join("test-images");
            for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let gone = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if gone {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
            let dir = root.join(std::process::id().to_string());
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("test images dir");
            corral_testimages::build_standard_images(Path::new("/usr/bin/busybox"), &dir)
                .expect("building test images")
        })
        .clone()
}

/// A cluster for one test, deleted on drop.
pub struct TestCluster {
    pub opts: Options,
    pub name: String,
    pub state: State,
    _base: tempfile::TempDir,
}

impl TestCluster {
    pub async fn create(name: &str, agents: usize) -> Self {
        reap_stale_clusters().await;
        let base = tempfile::Builder::new()
            .prefix("corral-e2e")
            .tempdir()
            .expect("temp dir");
        // Tests never query a real resolver: the nodes' proxies (which inherit this
        // environment) forward names outside the cluster to the node's own loopback, where
        // nothing answers.
        std::env::set_var("CORRAL_DNS_UPSTREAM", "127.0.0.1:53");
        let mut opts = Options::beside(&target_dir().join("corral"));
        opts.base = base.path().join("clusters");
        opts.run_base = PathBuf::from(format!("/run/corral-e2e-{}", std::process::id()));
        let req = CreateRequest {
            name: name.to_string(),
            servers: 1,
            agents,
            images: test_images(),
            timeout: Duration::from_secs(60),
        };
        let state = corral_cluster::create(&opts, &req, &|m| eprintln!("[cluster {name}] {m}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating cluster {name}: {e}\n{}",
                    logs_of(&base.path().join("clusters").join(name))
                )
            });
        KUBECONFIGS.lock().unwrap().push((
            state.server_url(),
            state
                .layout
                .dir
                .join("controlplane")
                .join("admin.kubeconfig"),
        ));
        Self {
            opts,
            name: name.to_string(),
            state,
            _base: base,
        }
    }

    pub fn server(&self) -> String {
        self.state.server_url()
    }

    pub async fn client(&self) -> corral_api::Client {
        corral_api::Client::connect_with(&self.server(), &credentials_for(&self.server()))
            .await
            .expect("connect to the cluster")
    }

    /// Every component's log, for failure messages.
    pub fn logs(&self) -> String {
        logs_of(&self.state.layout.dir)
    }
}

fn logs_of(dir: &Path) -> String {
    let mut out = String::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("logs")) {
        for e in entries.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("==> {} <==\n", e.path().display()));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// The test process that owns a rig's run directory (`/run/corral-e2e-<pid>/c<slot>`).
fn owner_pid(run_dir: &Path) -> Option<u32> {
    run_dir
        .parent()?
        .file_name()?
        .to_str()?
        .strip_prefix("corral-e2e-")?
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes the clusters of test processes that died without their `Drop` (a runner's timeout
/// ends a test with SIGKILL): their agents, containerd, shims, mounts and namespaces would
/// outlive them. Only when no other test process has a cluster, since a stale cluster's
/// network slot may since have been taken by a live one.
async fn reap_stale_clusters() {
    let Ok(runs) = std::fs::read_dir("/run") else {
        return;
    };
    let mut others_alive = false;
    for e in runs.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("corral-e2e-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !alive(pid) {
            // Empty once its clusters are gone; a non-empty one stays for the pass below.
            let _ = std::fs::remove_dir(e.path());
        } else if pid != std::process::id() {
            others_alive = true;
        }
    }
    let Ok(tmp) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in tmp.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("corral-e2e-home-") {
            if pid.parse().is_ok_and(|pid| !alive(pid)) {
                let _ = std::fs::remove_dir_all(e.path());
            }
            continue;
        }
        if !name.starts_with("corral-e2e") || others_alive {
            continue;
        }
        let mut opts = Options::beside(&target_dir().join("corral"));
        opts.base = e.path().join("clusters");
        let stale: Vec<_> = corral_cluster::list(&opts)
            .into_iter()
            .filter(|s| owner_pid(&s.layout.run_dir).is_some_and(|pid| !alive(pid)))
            .collect();
        for state in stale {
            let run_base = state.layout.run_dir.parent().map(Path::to_path_buf);
            if let Some(run_base) = &run_base {
                opts.run_base = run_base.clone();
            }
            eprintln!(
                "[e2e] deleting cluster {} left by a killed test",
                state.layout.name
            );
            if let Err(err) = corral_cluster::delete(&opts, &state.layout.name, &|_| {}).await {
                eprintln!("[e2e] deleting stale cluster {}: {err}", state.layout.name);
                continue;
            }
            if let Some(run_base) = run_base {
                let _ = std::fs::remove_dir(run_base);
            }
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let opts = self.opts.clone();
        let name = self.name.clone();
        if std::thread::panicking() {
            // Keep every component's full log for the post-mortem before the cluster goes.
            let keep =
                std::env::temp_dir().join(format!("corral-e2e-logs/{name}-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&keep);
            if let Ok(entries) = std::fs::read_dir(self.state.layout.dir.join("logs")) {
                for e in entries.flatten() {
                    let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
                }
            }
            eprintln!("logs of cluster {name} kept in {}", keep.display());
        }
        // Drop may run inside a runtime: delete on a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            if let Err(e) = rt.block_on(corral_cluster::delete(&opts, &name, &|_| {})) {
                eprintln!("deleting cluster {name}: {e}");
            }
            let _ = std::fs::remove_dir(&opts.run_base);
        })
        .join();
    }
}

/// What a cluster can leave behind on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSnapshot {
    pub netns: BTreeSet<String>,
    pub links: BTreeSet<String>,
    pub mounts: BTreeSet<String>,
    pub routes: BTreeSet<String>,
    pub iptables: BTreeSet<String>,
    pub processes: BTreeSet<String>,
}

fn lines(cmd: &[&str]) -> BTreeSet<String> {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

impl HostSnapshot {
    pub fn take() -> Self {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .collect();
        let processes = std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .filter(|c| c.contains("corral-e2e"))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            netns: lines(&["ip", "netns", "list"]),
            links: lines(&["ip", "-o", "link", "show"])
                .into_iter()
                .filter_map(|l| {
                    l.split(':')
                        .nth(1)
                        .map(|s| s.trim().split('@').next().unwrap_or("").to_string())
                })
                .collect(),
            mounts,
            routes: lines(&["ip", "route", "show"]),
            iptables: lines(&["iptables-save"])
                .into_iter()
                .filter(|l| !l.starts_with('#') && !l.starts_with(':'))
                .collect(),
            processes,
        }
    }
}

/// Polls `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The longest one CLI command of a test may take: a command that hangs fails its test with
/// its output instead of holding it until the runner's timeout.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the real `corral` CLI against a server; returns (stdout, stderr, success). Panics,
/// naming the command and what it printed, when it runs past [`CLI_TIMEOUT`].
pub fn corral(server: &str, args: &[&str]) -> (String, String, bool) {
    let out = output_within(corral_command(server, args), CLI_TIMEOUT);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// `Command::output` with a bound: the child is killed, and the test panics with its
/// command line and output, when it has not exited within `limit`.
pub fn output_within(mut cmd: Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    let line = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {line}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the CLI") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            );
            panic!(
                "{line} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The real `corral` CLI set up for a server (its credentials, a private HOME), for tests
/// that need its stdin or a terminal.
pub fn corral_command(server: &str, args: &[&str]) -> Command {
    let home = std::env::temp_dir().join(format!("corral-e2e-home-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&home);
    let mut cmd = Command::new(target_dir().join("corral"));
    if let Some(kubeconfig) = kubeconfig_of(server) {
        cmd.env("CORRAL_CONFIG", kubeconfig);
    }
    cmd.args(args)
        .env("CORRAL_SERVER", server)
        .env("HOME", &home)
        .current_dir(workspace_dir());
    cmd
}

/// The repository root (examples live there).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Rows of a kubectl-style table (header skipped), split on runs of spaces.
pub fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// The ENDPOINTS cell of the first row of `corral get ep NAME`, as a set of `ip:port`.
pub fn endpoints_column(table: &str) -> Option<BTreeSet<String>> {
    Some(
        rows(table)
            .first()?
            .get(1)?
            .split(',')
            .map(str::to_string)
            .collect(),
    )
}

/// A plain HTTP/1.1 GET with a Host header, over a TCP connection to `addr` (a node or pod
/// address inside a namespace the test created). Returns the body.
pub async fn http_get(addr: &str, host: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
}

/// A blocking HTTP/1.1 GET on a fresh connection (as `curl` in a loop would do), sent from
/// inside network namespace `netns` (a node the test created) or from the host when None.
/// Returns the status and body, or what went wrong.
pub fn netns_http_get(
    netns: Option<&str>,
    addr: &str,
    host: &str,
    timeout: Duration,
) -> Result<(u16, String), HttpGetError> {
    netns_http_get_path(netns, addr, host, "/", timeout)
}

/// Why a test's plain HTTP GET got no answer; its message names the address and the step.
#[derive(Debug, thiserror::Error)]
pub enum HttpGetError {
    #[error("{addr}: not an address")]
    BadAddress { addr: String },
    #[error("entering {netns}: {source}")]
    Netns {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{step} {addr}: {source}")]
    Io {
        step: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no HTTP status from {addr}: {text:?}")]
    NoStatus { addr: String, text: String },
    #[error("the request thread panicked")]
    Panicked,
}

/// As [`netns_http_get`], for `path`.
pub fn netns_http_get_path(
    netns: Option<&str>,
    addr: &str,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), HttpGetError> {
    let Some(ns) = netns else {
        return blocking_get(addr, host, path, timeout);
    };
    let ns_path = Path::new("/run/netns").join(ns);
    let netns_err = |source| HttpGetError::Netns {
        netns: ns_path.display().to_string(),
        source,
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            // setns changes only this thread's namespace; the thread ends with the request.
            let file = std::fs::File::open(&ns_path).map_err(netns_err)?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| netns_err(e.into()))?;
            blocking_get(addr, host, path, timeout)
        })
        .join()
        .unwrap_or(Err(HttpGetError::Panicked))
    })
}

fn blocking_get(
    addr: &str,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), HttpGetError> {
    use std::io::{Read, Write};
    let io = |step| {
        move |source| HttpGetError::Io {
            step,
            addr: addr.to_string(),
            source,
        }
    };
    let sock: std::net::SocketAddr = addr.parse().map_err(|_| HttpGetError::BadAddress {
        addr: addr.to_string(),
    })?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, timeout).map_err(io("connect"))?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(io("send to"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(io("read from"))?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| HttpGetError::NoStatus {
            addr: addr.to_string(),
            text: text.clone(),
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The pods of namespace `default` matching a label selector (none while the API is away).
pub async fn pods(
    client: &corral_api::Client,
    selector: &str,
) -> Vec<corral_api::k8s::api::core::v1::Pod> {
    client
        .list::<corral_api::k8s::api::core::v1::Pod>(
            "default",
            &corral_api::ListParams::labels(selector),
        )
        .await
        .map(|(p, _)| p)
        .unwrap_or_default()
}

/// Running, Ready and not being deleted.
pub fn running(p: &corral_api::k8s::api::core::v1::Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A lab test's teardown: after a failure, each machine's install log and Corral journal;
/// then the lab is deleted (on a thread of its own, from a `Drop`).
pub fn finish_lab(opts: &corral_lab::Options, state: &corral_lab::State) {
    if std::thread::panicking() {
        for (i, m) in state.layout.machines.iter().enumerate() {
            let log = std::fs::read_to_string(m.install_log()).unwrap_or_default();
            eprintln!("==> {} install.log <==\n{log}", m.name);
            if let Ok(out) = corral_lab::exec_output(
                opts,
                &m.name,
                &["journalctl", "-u", "corral-*", "-n", "80", "--no-pager"],
            ) {
                eprintln!(
                    "==> machine {i} {} journal <==\n{}",
                    m.name,
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        }
    }
    let (opts, name) = (opts.clone(), state.layout.name.clone());
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        if let Err(e) = rt.block_on(corral_lab::delete(&opts, &name, &|_| {})) {
            eprintln!("deleting lab {name}: {e}");
        }
    })
    .join();
}
