//! The layout of a local cluster, computed from its name, slot and node counts: node names,
//! namespaces, interface names, addresses, CIDRs, paths and the command line of every process.
//! Pure: the executor in `lib.rs` carries it out.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// At most this many clusters at once (one /24 of node addresses each).
pub const MAX_SLOTS: u8 = 16;
/// At most this many nodes per cluster (one /24 pod CIDR each, 16 per cluster slot).
pub const MAX_NODES: usize = 16;
pub const API_PORT: u16 = 7443;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Server,
    Agent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLayout {
    /// `corral-NAME-server-0`, `corral-NAME-agent-1`, as k3d names them.
    pub name: String,
    pub role: Role,
    pub index: usize,
    /// Network namespace (under /run/netns).
    pub netns: String,
    /// Host side of the node's veth pair (on the cluster bridge).
    pub host_veth: String,
    /// Node side of the veth pair before it is renamed to eth0 inside the namespace.
    pub peer_veth: String,
    pub ip: String,
    pub pod_cidr: String,
    /// containerd root (images, snapshots) and agent data.
    pub dir: PathBuf,
    /// containerd state and socket (short path: unix sockets are limited to 108 bytes).
    pub run_dir: PathBuf,
}

impl NodeLayout {
    pub fn containerd_socket(&self) -> PathBuf {
        self.run_dir.join("containerd.sock")
    }
    pub fn containerd_config(&self) -> PathBuf {
        self.dir.join("containerd.toml")
    }
    /// The agent's data directory.
    pub fn agent_dir(&self) -> PathBuf {
        self.dir.join("agent")
    }
    /// The node's kubeconfig (its `system:node:<name>` certificate), written by its agent when
    /// it joins with the cluster's agent token, and used by its proxy too.
    pub fn kubeconfig(&self) -> PathBuf {
        self.agent_dir().join("kubeconfig")
    }

    pub fn images_dir(&self) -> PathBuf {
        self.dir.join("images")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub name: String,
    pub slot: u8,
    pub dir: PathBuf,
    pub run_dir: PathBuf,
    pub bridge: String,
    pub bridge_ip: String,
    pub subnet: String,
    pub api_addr: String,
    pub nodes: Vec<NodeLayout>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("cluster name {0:?} is invalid: use 1-20 lower case letters, digits or '-', starting with a letter")]
    Name(String),
    #[error("a cluster needs at least one server and at most {MAX_NODES} nodes in all (asked for {servers} servers and {agents} agents)")]
    Size { servers: usize, agents: usize },
    #[error("no free cluster slot: at most {MAX_SLOTS} clusters can exist at once")]
    NoSlot,
}

/// The name rule of local rigs (clusters and labs): 1-20 lower case letters, digits or '-',
/// starting with a letter and not ending with '-' (it becomes part of link and machine names).
pub fn is_rig_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 20
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-')
}

pub fn validate_name(name: &str) -> Result<(), LayoutError> {
    if is_rig_name(name) {
        Ok(())
    } else {
        Err(LayoutError::Name(name.to_string()))
    }
}

/// Lays out cluster `name` in `slot` with its data under `base` (e.g. /var/lib/corral/clusters).
pub fn layout(
    name: &str,
    slot: u8,
    servers: usize,
    agents: usize,
    base: &Path,
    run_base: &Path,
) -> Result<Layout, LayoutError> {
    validate_name(name)?;
    if servers == 0 || servers + agents > MAX_NODES {
        return Err(LayoutError::Size { servers, agents });
    }
    if slot >= MAX_SLOTS {
        return Err(LayoutError::NoSlot);
    }
    let dir = base.join(name);
    let run_dir = run_base.join(format!("c{slot}"));
    let roles = (0..servers)
        .map(|i| (Role::Server, i))
        .chain((0..agents).map(|i| (Role::Agent, i)));
    let nodes = roles
        .enumerate()
        .map(|(n, (role, i))| {
            let kind = if role == Role::Server {
                "server"
            } else {
                "agent"
            };
            let node_name = format!("corral-{name}-{kind}-{i}");
            NodeLayout {
                netns: node_name.clone(),
                host_veth: format!("crl{slot}n{n}"),
                peer_veth: format!("crl{slot}p{n}"),
                ip: format!("10.44.{slot}.{}", 10 + n),
                pod_cidr: format!("10.42.{}.0/24", slot as usize * MAX_NODES + n),
                dir: dir.join("nodes").join(&node_name),
                run_dir: run_dir.join(format!("n{n}")),
                name: node_name,
                role,
                index: n,
            }
        })
        .collect();
    Ok(Layout {
        name: name.to_string(),
        slot,
        bridge: format!("crl{slot}br"),
        bridge_ip: format!("10.44.{slot}.1"),
        subnet: format!("10.44.{slot}.0/24"),
        api_addr: format!("10.44.{slot}.1:{API_PORT}"),
        dir,
        run_dir,
        nodes,
    })
}

impl Layout {
    /// The block holding every pod CIDR of this cluster's slot (16 /24s): the host's pod
    /// routes inside it are this cluster's, those of other slots are left alone.
    pub fn pod_block(&self) -> String {
        format!("10.42.{}.0/20", self.slot as usize * MAX_NODES)
    }
}

/// The cluster-wide ranges that get blackhole routes on the host, so that a packet for a pod
/// or service address without a more specific route is dropped here instead of leaving.
pub const BLACKHOLES: &[&str] = &["10.42.0.0/16", SERVICE_CIDR];

/// The control plane's default service range (ClusterIPs).
pub const SERVICE_CIDR: &str = "10.43.0.0/16";

/// containerd's configuration for one node: its own root, state and socket.
pub fn containerd_config(node: &NodeLayout) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
        root = node.dir.join("containerd").display(),
        state = node.run_dir.join("state").display(),
        sock = node.containerd_socket().display(),
        opt = node.dir.join("opt").display(),
    )
}

/// A process of the cluster: its name, whether it runs inside a node's namespace, and argv.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// `controlplane`, `scheduler`, `NODE/containerd`, `NODE/agent`, `NODE/proxy`.
    pub name: String,
    pub netns: Option<String>,
    pub argv: Vec<String>,
    pub log: PathBuf,
}

/// Where the binaries are: normally next to the `corral` binary.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub controlplane: PathBuf,
    pub scheduler: PathBuf,
    pub agent: PathBuf,
    pub proxy: Option<PathBuf>,
}

/// The control plane's data directory.
pub fn controlplane_dir(l: &Layout) -> PathBuf {
    l.dir.join("controlplane")
}

/// The admin kubeconfig the control plane writes.
pub fn admin_kubeconfig(l: &Layout) -> PathBuf {
    controlplane_dir(l).join("admin.kubeconfig")
}

/// The scheduler's kubeconfig the control plane writes.
pub fn scheduler_kubeconfig(l: &Layout) -> PathBuf {
    controlplane_dir(l).join("tls").join("scheduler.kubeconfig")
}

/// The control plane, then the scheduler (which needs the kubeconfig the control plane
/// writes, so it is started once the API serves).
pub fn control_processes(l: &Layout, bins: &Binaries) -> Vec<ProcessSpec> {
    let logs = l.dir.join("logs");
    vec![
        ProcessSpec {
            name: "controlplane".into(),
            netns: None,
            argv: vec![
                bins.controlplane.display().to_string(),
                "--listen".into(),
                l.api_addr.clone(),
                "--data-dir".into(),
                controlplane_dir(l).display().to_string(),
            ],
            log: logs.join("controlplane.log"),
        },
        ProcessSpec {
            name: "scheduler".into(),
            netns: None,
            argv: vec![
                bins.scheduler.display().to_string(),
                "--kubeconfig".into(),
                scheduler_kubeconfig(l).display().to_string(),
            ],
            log: logs.join("scheduler.log"),
        },
    ]
}

pub fn node_processes(l: &Layout, node: &NodeLayout, bins: &Binaries) -> Vec<ProcessSpec> {
    let logs = l.dir.join("logs");
    let kubeconfig = node.kubeconfig().display().to_string();
    let mut out = vec![
        ProcessSpec {
            name: format!("{}/containerd", node.name),
            netns: Some(node.netns.clone()),
            argv: vec![
                "containerd".into(),
                "--config".into(),
                node.containerd_config().display().to_string(),
            ],
            log: logs.join(format!("{}-containerd.log", node.name)),
        },
        ProcessSpec {
            name: format!("{}/agent", node.name),
            netns: Some(node.netns.clone()),
            argv: vec![
                bins.agent.display().to_string(),
                "--server".into(),
                format!("https://{}", l.api_addr),
                "--node-name".into(),
                node.name.clone(),
                "--node-ip".into(),
                node.ip.clone(),
                "--containerd-socket".into(),
                node.containerd_socket().display().to_string(),
                "--data-dir".into(),
                node.agent_dir().display().to_string(),
                "--pod-cidr".into(),
                node.pod_cidr.clone(),
                "--images-dir".into(),
                node.images_dir().display().to_string(),
                "--netns-dir".into(),
                l.run_dir.join("netns").display().to_string(),
                // The control plane's default agent token (written before it serves): the
                // node joins with it as a lab host does, when it has no certificate yet.
                "--token-file".into(),
                l.dir.join("controlplane/agent-token").display().to_string(),
            ],
            log: logs.join(format!("{}-agent.log", node.name)),
        },
    ];
    if let Some(proxy) = &bins.proxy {
        out.push(ProcessSpec {
            name: format!("{}/proxy", node.name),
            netns: Some(node.netns.clone()),
            argv: vec![
                proxy.display().to_string(),
                "--kubeconfig".into(),
                kubeconfig,
                "--node-name".into(),
                node.name.clone(),
            ],
            log: logs.join(format!("{}-proxy.log", node.name)),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_four_node_cluster_is_laid_out_like_k3d() {
        let l = layout(
            "mi-cluster",
            2,
            1,
            3,
            Path::new("/var/lib/corral/clusters"),
            Path::new("/run/corral"),
        )
        .unwrap();
        let names: Vec<_> = l.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "corral-mi-cluster-server-0",
                "corral-mi-cluster-agent-0",
                "corral-mi-cluster-agent-1",
                "corral-mi-cluster-agent-2"
            ]
        );
        assert_eq!(l.api_addr, "10.44.2.1:7443");
        assert_eq!(l.nodes[3].ip, "10.44.2.13");
        assert_eq!(l.nodes[3].pod_cidr, "10.42.35.0/24");
        assert_eq!(l.pod_block(), "10.42.32.0/20");
        assert!(l
            .nodes
            .iter()
            .all(|n| n.host_veth.len() <= 15 && n.peer_veth.len() <= 15));
        assert!(l
            .nodes
            .iter()
            .all(|n| n.containerd_socket().display().to_string().len() < 100));
    }

    #[test]
    fn bad_names_and_sizes_are_refused() {
        let base = Path::new("/x");
        assert_eq!(
            layout("Mi_Cluster", 0, 1, 1, base, base).unwrap_err(),
            LayoutError::Name("Mi_Cluster".into())
        );
        assert!(matches!(
            layout("a", 0, 0, 3, base, base),
            Err(LayoutError::Size { .. })
        ));
        assert!(matches!(
            layout("a", 0, 1, 16, base, base),
            Err(LayoutError::Size { .. })
        ));
        assert_eq!(
            layout("a", 16, 1, 1, base, base).unwrap_err(),
            LayoutError::NoSlot
        );
    }
}
