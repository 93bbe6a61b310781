//! Local multi-node clusters on one machine, as k3d does without a Docker engine: each node is
//! a network namespace with its own containerd and `corral-agent`; the control plane and the
//! scheduler run on the host. Processes are supervised through a state file, so `corral` can
//! stop, start and delete a cluster later, leaving nothing behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_api::k8s::api::core::v1::Node;
use corral_api::{Client, ListParams};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

pub mod layout;
pub mod net;
pub mod process;

pub use layout::{Binaries, Layout, NodeLayout};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error("running {command}: {source}")]
    Exec {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster {0:?} already exists")]
    Exists(String),
    #[error("cluster {0:?} not found")]
    NotFound(String),
    #[error("node {0:?} not found in any local cluster")]
    NodeNotFound(String),
    #[error("timed out after {seconds}s waiting for {what}; see the logs with `corral cluster logs {cluster}`")]
    Timeout {
        what: String,
        seconds: u64,
        cluster: String,
    },
    #[error("pod routes of cluster {cluster:?}: {source}")]
    PodNet {
        cluster: String,
        #[source]
        source: corral_podnet::Error,
    },
    #[error("state file {path}: {message}")]
    State { path: String, message: String },
    #[error("cluster credentials: {0}")]
    Kubeconfig(#[from] corral_api::kubeconfig::KubeconfigError),
    #[error("cluster CA: {0}")]
    Pki(#[from] corral_controlplane::pki::PkiError),
    #[error("this needs root (network namespaces, containerd)")]
    NotRoot,
    #[error("containerd of node {node} is not running")]
    ContainerdDown { node: String },
    #[error("containerd of node {node}: {source}")]
    Containerd {
        node: String,
        #[source]
        source: corral_containerd::Error,
    },
    #[error("importing {path} into node {node}: {message}")]
    Import {
        path: String,
        node: String,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where clusters live and which binaries they run.
#[derive(Debug, Clone)]
pub struct Options {
    pub base: PathBuf,
    pub run_base: PathBuf,
    pub binaries: Binaries,
}

impl Options {
    /// Data under /var/lib/corral/clusters, sockets under /run/corral, binaries beside `exe`.
    pub fn beside(exe: &Path) -> Self {
        let dir = exe.parent().unwrap_or(Path::new("."));
        let proxy = dir.join("corral-proxy");
        Self {
            base: PathBuf::from("/var/lib/corral/clusters"),
            run_base: PathBuf::from("/run/corral"),
            binaries: Binaries {
                controlplane: dir.join("corral-controlplane"),
                scheduler: dir.join("corral-scheduler"),
                agent: dir.join("corral-agent"),
                proxy: proxy.exists().then_some(proxy),
            },
        }
    }
}

/// What the state file remembers about a cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub layout: Layout,
    pub processes: Vec<process::Running>,
    #[serde(default)]
    pub stopped_nodes: Vec<String>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

impl State {
    fn path(base: &Path, name: &str) -> PathBuf {
        base.join(name).join("state.json")
    }

    pub fn load(base: &Path, name: &str) -> Result<Self> {
        let path = Self::path(base, name);
        let text = std::fs::read_to_string(&path).map_err(|_| Error::NotFound(name.to_string()))?;
        serde_json::from_str(&text).map_err(|e| Error::State {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    fn save(&self) -> Result<()> {
        let path = self.layout.dir.join("state.json");
        std::fs::create_dir_all(&self.layout.dir).map_err(io_err(&self.layout.dir))?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    pub fn server_url(&self) -> String {
        format!("https://{}", self.layout.api_addr)
    }

    /// The admin's credentials, from the kubeconfig the control plane wrote.
    pub fn admin_credentials(&self) -> Result<corral_api::Credentials> {
        let path = layout::admin_kubeconfig(&self.layout);
        Ok(corral_api::kubeconfig::load(&path)?.1)
    }

    pub fn running(&self) -> bool {
        self.processes.iter().any(process::alive)
    }
}

/// One line of `cluster list`.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub name: String,
    pub servers: usize,
    pub agents: usize,
    pub running: bool,
    pub server: String,
}

pub fn list(opts: &Options) -> Vec<State> {
    let Ok(entries) = std::fs::read_dir(&opts.base) else {
        return Vec::new();
    };
    let mut out: Vec<State> = entries
        .flatten()
        .filter_map(|e| State::load(&opts.base, &e.file_name().to_string_lossy()).ok())
        .collect();
    out.sort_by(|a, b| a.layout.name.cmp(&b.layout.name));
    out
}

pub fn info(state: &State) -> ClusterInfo {
    let servers = state
        .layout
        .nodes
        .iter()
        .filter(|n| n.role == layout::Role::Server)
        .count();
    ClusterInfo {
        name: state.layout.name.clone(),
        servers,
        agents: state.layout.nodes.len() - servers,
        running: state.running(),
        server: state.server_url(),
    }
}

fn require_root() -> Result<()> {
    if nix::unistd::Uid::effective().is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot)
    }
}

pub struct CreateRequest {
    pub name: String,
    pub servers: usize,
    pub agents: usize,
    /// OCI / docker-archive tars imported on every node (kept in its images directory).
    pub images: Vec<PathBuf>,
    pub timeout: Duration,
}

/// Creates and starts a cluster. On failure everything made so far is removed.
pub async fn create(
    opts: &Options,
    req: &CreateRequest,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<State> {
    require_root()?;
    layout::validate_name(&req.name)?;
    if State::path(&opts.base, &req.name).exists() {
        return Err(Error::Exists(req.name.clone()));
    }
    let used: Vec<u8> = list(opts).iter().map(|s| s.layout.slot).collect();
    // A slot whose bridge exists belongs to a cluster of another state directory (tests
    // running side by side each keep their own): taking it would share its addresses.
    let slot = (0..layout::MAX_SLOTS)
        .find(|s| !used.contains(s) && !Path::new(&format!("/sys/class/net/crl{s}br")).exists())
        .ok_or(layout::LayoutError::NoSlot)?;
    let l = layout::layout(
        &req.name,
        slot,
        req.servers,
        req.agents,
        &opts.base,
        &opts.run_base,
    )?;
    let mut state = State {
        layout: l.clone(),
        processes: Vec::new(),
        stopped_nodes: Vec::new(),
    };
    state.save()?;
    for node in &l.nodes {
        let images = node.images_dir();
        std::fs::create_dir_all(&images).map_err(io_err(&images))?;
        for image in &req.images {
            let file = image
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("image.tar"));
            let dest = images.join(file);
            if std::fs::hard_link(image, &dest).is_err() {
                std::fs::copy(image, &dest).map_err(io_err(image))?;
            }
        }
    }
    match bring_up(opts, &mut state, req.timeout, progress).await {
        Ok(()) => Ok(state),
        Err(e) => {
            progress(&format!(
                "creating cluster {:?} failed: {e}; cleaning up",
                req.name
            ));
            let _ = delete(opts, &req.name, &|_| {}).await;
            Err(e)
        }
    }
}

/// Network, control plane, scheduler, then every node; waits until all nodes are Ready.
async fn bring_up(
    opts: &Options,
    state: &mut State,
    timeout: Duration,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let l = state.layout.clone();
    let stopped = state.stopped_nodes.clone();
    progress(&format!(
        "Preparing network {} ({}) and {} node namespaces",
        l.bridge,
        l.subnet,
        l.nodes.len()
    ));
    net::ensure(&l).await?;
    let started = |state: &mut State, p: process::Running| {
        state.processes.retain(|q| q.name != p.name);
        state.processes.push(p);
        state.save()
    };
    progress(&format!("Starting control plane on {}", l.api_addr));
    let control = layout::control_processes(&l, &opts.binaries);
    let p = process::spawn(&control[0])?;
    started(state, p)?;
    progress("Starting containerd on every node");
    for node in l.nodes.iter().filter(|n| !stopped.contains(&n.name)) {
        std::fs::create_dir_all(&node.run_dir).map_err(io_err(&node.run_dir))?;
        std::fs::write(node.containerd_config(), layout::containerd_config(node))
            .map_err(io_err(&node.containerd_config()))?;
        let spec = &layout::node_processes(&l, node, &opts.binaries)[0];
        let p = process::spawn(spec)?;
        started(state, p)?;
    }
    let client = wait_for_api(&l, timeout).await?;
    for spec in &control[1..] {
        let p = process::spawn(spec)?;
        started(state, p)?;
    }
    for node in l.nodes.iter().filter(|n| !stopped.contains(&n.name)) {
        wait_for_containerd(&l, node, timeout).await?;
    }
    progress("Starting agents");
    let up: Vec<&NodeLayout> = l
        .nodes
        .iter()
        .filter(|n| !stopped.contains(&n.name))
        .collect();
    for node in &up {
        let p = process::spawn(&layout::node_processes(&l, node, &opts.binaries)[1])?;
        started(state, p)?;
    }
    // A node's proxy uses the credentials its agent got by joining.
    for node in &up {
        wait_for_kubeconfig(&l, node, timeout).await?;
        for spec in layout::node_processes(&l, node, &opts.binaries)
            .iter()
            .skip(2)
        {
            let p = process::spawn(spec)?;
            started(state, p)?;
        }
    }
    let want: Vec<String> = l
        .nodes
        .iter()
        .filter(|n| !stopped.contains(&n.name))
        .map(|n| n.name.clone())
        .collect();
    progress(&format!("Waiting for {} nodes to be Ready", want.len()));
    wait_for_nodes_ready(&client, &want, &l.name, timeout).await
}

/// Waits for the agent of `node` to have joined (its kubeconfig written).
async fn wait_for_kubeconfig(l: &Layout, node: &NodeLayout, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !node.kubeconfig().exists() {
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!(
                    "node {} to join (see its agent log for the reason)",
                    node.name
                ),
                seconds: timeout.as_secs(),
                cluster: l.name.clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn wait_for_api(l: &Layout, timeout: Duration) -> Result<Client> {
    let deadline = Instant::now() + timeout;
    let url = format!("https://{}", l.api_addr);
    let kubeconfig = layout::admin_kubeconfig(l);
    loop {
        if let Ok((_, creds)) = corral_api::kubeconfig::load(&kubeconfig) {
            if let Ok(c) = Client::connect_with(&url, &creds).await {
                if c.version().await.is_ok() {
                    return Ok(c);
                }
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("the control plane at {url}"),
                seconds: timeout.as_secs(),
                cluster: l.name.clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn containerd_of(node: &NodeLayout) -> Option<corral_containerd::Client> {
    if !node.containerd_socket().exists() {
        return None;
    }
    let tmp = node.dir.join("tmp");
    let _ = std::fs::create_dir_all(&tmp);
    corral_containerd::Client::connect(&node.containerd_socket(), "corral", "overlayfs", tmp)
        .await
        .ok()
}

async fn wait_for_containerd(l: &Layout, node: &NodeLayout, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(rt) = containerd_of(node).await {
            if rt.list().await.is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("containerd of node {}", node.name),
                seconds: timeout.as_secs(),
                cluster: l.name.clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn wait_for_nodes_ready(
    client: &Client,
    want: &[String],
    cluster: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((nodes, _)) = client.list::<Node>("", &ListParams::default()).await {
            let ready: Vec<&str> = nodes
                .iter()
                .filter(|n| node_ready(n))
                .filter_map(|n| n.metadata.name.as_deref())
                .collect();
            if want.iter().all(|w| ready.contains(&w.as_str())) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("nodes {} to be Ready", want.join(", ")),
                seconds: timeout.as_secs(),
                cluster: cluster.to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a stopped cluster again; its objects come back from the store and the agents
/// recreate its pods.
pub async fn start(
    opts: &Options,
    name: &str,
    timeout: Duration,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<State> {
    require_root()?;
    let mut state = State::load(&opts.base, name)?;
    if state.running() {
        stop_processes(&mut state, &|_| {}).await;
    }
    state.stopped_nodes.clear();
    bring_up(opts, &mut state, timeout, progress).await?;
    Ok(state)
}

/// Stops every process of a cluster (containers included); keeps its data and network.
pub async fn stop(opts: &Options, name: &str, progress: &(dyn Fn(&str) + Sync)) -> Result<State> {
    require_root()?;
    let mut state = State::load(&opts.base, name)?;
    stop_processes(&mut state, progress).await;
    state.save()?;
    Ok(state)
}

async fn stop_processes(state: &mut State, progress: &(dyn Fn(&str) + Sync)) {
    let l = state.layout.clone();
    for node in &l.nodes {
        stop_node_processes(state, node, progress).await;
    }
    for name in ["scheduler", "controlplane"] {
        if let Some(p) = state.processes.iter().find(|p| p.name == name).cloned() {
            progress(&format!("Stopping {name}"));
            process::stop(&p, Duration::from_secs(5));
        }
    }
    state.processes.clear();
    release_pod_namespaces(&l);
}

/// Stops a node's agent and proxy, then its containers (through containerd), then containerd.
async fn stop_node_processes(
    state: &mut State,
    node: &NodeLayout,
    progress: &(dyn Fn(&str) + Sync),
) {
    let prefix = format!("{}/", node.name);
    for part in ["agent", "proxy"] {
        let name = format!("{prefix}{part}");
        if let Some(p) = state.processes.iter().find(|p| p.name == name).cloned() {
            process::stop(&p, Duration::from_secs(5));
        }
    }
    if let Some(rt) = containerd_of(node).await {
        if let Ok(containers) = rt.list().await {
            if !containers.is_empty() {
                progress(&format!(
                    "Stopping {} containers on {}",
                    containers.len(),
                    node.name
                ));
            }
            for c in containers {
                let _ = rt.kill(&c.id, 9).await;
                if let Err(e) = rt.remove(&c.id).await {
                    warn!(node = %node.name, container = %c.id, error = %e, "removing container");
                }
            }
        }
    }
    if let Some(p) = state
        .processes
        .iter()
        .find(|p| p.name == format!("{prefix}containerd"))
        .cloned()
    {
        process::stop(&p, Duration::from_secs(5));
    }
    state.processes.retain(|p| !p.name.starts_with(&prefix));
}

/// Unmounts and removes the pod network namespaces the agents made under the cluster's run dir.
fn release_pod_namespaces(l: &Layout) {
    let dir = l.run_dir.join("netns");
    unmount_under(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lazily unmounts every mount point under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Err(e) = nix::mount::umount2(Path::new(&p), nix::mount::MntFlags::MNT_DETACH) {
            debug!(mount = %p, error = %e, "unmount");
        }
    }
}

/// Removes every process, namespace, link, route, mount and directory the cluster made.
pub async fn delete(opts: &Options, name: &str, progress: &(dyn Fn(&str) + Sync)) -> Result<()> {
    require_root()?;
    let mut state = State::load(&opts.base, name)?;
    stop_processes(&mut state, progress).await;
    let l = state.layout.clone();
    let others = list(opts).iter().filter(|s| s.layout.name != name).count();
    progress(&format!(
        "Removing network {} and node namespaces",
        l.bridge
    ));
    net::teardown(&l, others == 0).await?;
    unmount_under(&l.run_dir);
    unmount_under(&l.dir);
    for dir in [&l.run_dir, &l.dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io_err(dir))?;
        }
    }
    progress(&format!("Cluster {name:?} deleted"));
    Ok(())
}

/// Finds the cluster and layout of a node by name.
pub fn find_node(opts: &Options, node: &str) -> Result<(State, NodeLayout)> {
    for state in list(opts) {
        if let Some(n) = state.layout.nodes.iter().find(|n| n.name == node) {
            let n = n.clone();
            return Ok((state, n));
        }
    }
    Err(Error::NodeNotFound(node.to_string()))
}

/// Failure drill: kills a node's agent, proxy and containerd and takes its link down. Its
/// containers keep running, cut off, as on a host that dropped off the network.
pub async fn node_stop(opts: &Options, node: &str) -> Result<()> {
    require_root()?;
    let (mut state, n) = find_node(opts, node)?;
    let prefix = format!("{}/", n.name);
    for p in state
        .processes
        .iter()
        .filter(|p| p.name.starts_with(&prefix))
    {
        if let Ok(pid) = i32::try_from(p.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for p in state
        .processes
        .iter()
        .filter(|p| p.name.starts_with(&prefix))
    {
        process::stop(p, Duration::from_secs(2));
    }
    state.processes.retain(|p| !p.name.starts_with(&prefix));
    net::set_node_link(&n, false)?;
    if !state.stopped_nodes.contains(&n.name) {
        state.stopped_nodes.push(n.name.clone());
    }
    state.save()
}

/// Brings a stopped node back: link up, containerd and agent started again.
pub async fn node_start(opts: &Options, node: &str, timeout: Duration) -> Result<()> {
    require_root()?;
    let (mut state, n) = find_node(opts, node)?;
    let l = state.layout.clone();
    net::set_node_link(&n, true)?;
    let specs = layout::node_processes(&l, &n, &opts.binaries);
    let p = process::spawn(&specs[0])?;
    state.processes.push(p);
    state.save()?;
    wait_for_containerd(&l, &n, timeout).await?;
    for spec in specs.iter().skip(1) {
        let p = process::spawn(spec)?;
        state.processes.push(p);
    }
    state.stopped_nodes.retain(|s| s != &n.name);
    state.save()?;
    let client = wait_for_api(&l, timeout).await?;
    wait_for_nodes_ready(&client, std::slice::from_ref(&n.name), &l.name, timeout).await
}

/// Drill: kills one process of a running cluster (`controlplane`, `scheduler`,
/// `NODE/containerd`, `NODE/agent`, `NODE/proxy`) with `signal` and waits until it is gone;
/// only that process, so containerd's shims and the containers live on.
pub fn kill_process(
    opts: &Options,
    cluster: &str,
    process: &str,
    signal: nix::sys::signal::Signal,
) -> Result<()> {
    require_root()?;
    let mut state = State::load(&opts.base, cluster)?;
    let p = state
        .processes
        .iter()
        .find(|p| p.name == process)
        .cloned()
        .ok_or_else(|| Error::State {
            path: State::path(&opts.base, cluster).display().to_string(),
            message: format!("no running process {process:?}"),
        })?;
    if let Ok(pid) = i32::try_from(p.pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
    process::stop(&p, Duration::from_secs(5));
    state.processes.retain(|q| q.name != process);
    state.save()
}

/// Drill: starts one process of the cluster again (after `kill_process`) and waits until it
/// serves: the API for the control plane, the socket for a node's containerd.
pub async fn start_process(
    opts: &Options,
    cluster: &str,
    process: &str,
    timeout: Duration,
) -> Result<()> {
    require_root()?;
    let mut state = State::load(&opts.base, cluster)?;
    let l = state.layout.clone();
    let mut specs = layout::control_processes(&l, &opts.binaries);
    for node in &l.nodes {
        specs.extend(layout::node_processes(&l, node, &opts.binaries));
    }
    let spec = specs
        .into_iter()
        .find(|s| s.name == process)
        .ok_or_else(|| Error::State {
            path: State::path(&opts.base, cluster).display().to_string(),
            message: format!("no process {process:?} in the layout"),
        })?;
    let p = process::spawn(&spec)?;
    state.processes.retain(|q| q.name != process);
    state.processes.push(p);
    state.save()?;
    if process == "controlplane" {
        wait_for_api(&l, timeout).await?;
    } else if let Some(node) = process
        .strip_suffix("/containerd")
        .and_then(|n| l.nodes.iter().find(|x| x.name == n))
    {
        wait_for_containerd(&l, node, timeout).await?;
    }
    Ok(())
}

/// The containers in a node's containerd (what its agent runs), straight from containerd.
pub async fn node_containers(node: &NodeLayout) -> Result<Vec<corral_containerd::ContainerInfo>> {
    let rt = containerd_of(node)
        .await
        .ok_or_else(|| Error::ContainerdDown {
            node: node.name.clone(),
        })?;
    rt.list().await.map_err(|source| Error::Containerd {
        node: node.name.clone(),
        source,
    })
}

/// Imports image archives onto every running node of a cluster (and keeps them in each node's
/// images directory, so a restarted node has them too).
pub async fn import_images(
    opts: &Options,
    name: &str,
    archives: &[PathBuf],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    require_root()?;
    let state = State::load(&opts.base, name)?;
    let mut jobs = Vec::new();
    for node in state
        .layout
        .nodes
        .iter()
        .filter(|n| !state.stopped_nodes.contains(&n.name))
    {
        for archive in archives {
            let dest = node
                .images_dir()
                .join(archive.file_name().unwrap_or_default());
            std::fs::create_dir_all(node.images_dir()).map_err(io_err(&node.images_dir()))?;
            // The node's copy may be a hard link to this very file: replace it, never copy
            // onto it (that would truncate the source).
            if dest.exists() {
                std::fs::remove_file(&dest).map_err(io_err(&dest))?;
            }
            if std::fs::hard_link(archive, &dest).is_err() {
                std::fs::copy(archive, &dest).map_err(io_err(archive))?;
            }
            let node = node.clone();
            let archive = archive.clone();
            jobs.push(async move {
                let rt = containerd_of(&node).await.ok_or_else(|| Error::Import {
                    path: archive.display().to_string(),
                    node: node.name.clone(),
                    message: "containerd is not running".into(),
                })?;
                let refs = rt
                    .import_archive(&archive)
                    .await
                    .map_err(|e| Error::Import {
                        path: archive.display().to_string(),
                        node: node.name.clone(),
                        message: e.to_string(),
                    })?;
                Ok::<_, Error>((node.name, refs))
            });
        }
    }
    for result in futures::future::join_all(jobs).await {
        let (node, refs) = result?;
        progress(&format!("Imported {} into {node}", refs.join(", ")));
    }
    Ok(())
}

/// The log file of a component: `controlplane`, `scheduler`, or `NODE-agent` / `NODE-containerd`.
pub fn log_files(opts: &Options, name: &str) -> Result<Vec<PathBuf>> {
    let state = State::load(&opts.base, name)?;
    let dir = state.layout.dir.join("logs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}
