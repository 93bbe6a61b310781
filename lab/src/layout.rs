//! The layout of a lab, computed from its name, index and size: the bridge, the subnet, each
//! machine's name, address and directories, the files written into a machine before it boots,
//! the systemd-nspawn command line, the installer's environment and the cgroup directories.
//! Pure: the executors in `host.rs`, `machine.rs` and `lib.rs` carry it out.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// At most this many labs at once (one /24 of 10.77.0.0/16 each).
pub const MAX_LABS: u8 = 250;
/// At most this many machines per lab.
pub const MAX_MACHINES: usize = 32;
/// The control plane's port on machine 0.
pub const API_PORT: u16 = 7443;
/// Where the binaries directory is bound, read-only, inside every machine.
pub const BIN_MOUNT: &str = "/opt/corral/bin";
/// Where the embedded scripts (installer, killall, uninstall, host-state) are bound.
pub const SCRIPTS_MOUNT: &str = "/opt/corral";
/// The installer inside every machine.
pub const INSTALL_MOUNT: &str = "/opt/corral/install.sh";
/// Inside a machine: where the installer puts the admin kubeconfig and a server's agent token.
pub const ADMIN_KUBECONFIG: &str = "etc/corral/admin.kubeconfig";
pub const AGENT_TOKEN: &str = "var/lib/corral/controlplane/agent-token";
/// Inside a server on etcd: the server token's long form, for the next servers.
pub const SERVER_TOKEN: &str = "var/lib/corral/server-token";
/// Inside a machine: the agent's images directory (archives there are imported).
pub const IMAGES_DIR: &str = "var/lib/corral/agent/images";
/// Prefix of each machine's cgroup directory in every hierarchy.
pub const CGROUP_PREFIX: &str = "corral-lab-";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineLayout {
    /// `NAME-i`: machine name, hostname and node name.
    pub name: String,
    pub index: usize,
    /// 10.77.<k>.(10+i)
    pub ip: String,
    /// `/var/lib/corral-lab/<lab>/<machine>`: upper dir, nspawn's work dir, logs.
    pub dir: PathBuf,
}

impl MachineLayout {
    /// The overlay's upper directory: everything the machine writes (kept across poweroff).
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    /// systemd-nspawn's output (the machine's console).
    pub fn log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// The installer's output.
    pub fn install_log(&self) -> PathBuf {
        self.dir.join("install.log")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub name: String,
    pub index: u8,
    /// `crlab<k>`
    pub bridge: String,
    /// 10.77.<k>.1, on the bridge.
    pub bridge_ip: String,
    /// 10.77.<k>.0/24
    pub subnet: String,
    /// `/var/lib/corral-lab/<lab>`
    pub dir: PathBuf,
    pub machines: Vec<MachineLayout>,
    /// Machines 0..servers are servers (more than one: on an embedded etcd, machine 0 with
    /// `--cluster-init`, the next joining it); the rest are agents.
    #[serde(default = "one")]
    pub servers: usize,
}

fn one() -> usize {
    1
}

impl Layout {
    /// The control plane of machine 0, as agents and the host reach it.
    pub fn server_url(&self) -> String {
        format!("https://{}:{API_PORT}", self.machines[0].ip)
    }
    /// The admin kubeconfig copied out of machine 0, pointing at [`Layout::server_url`].
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }
    /// The embedded scripts, written here and bound into every machine at /opt/corral (with
    /// an empty `bin/` as the mount point of the binaries).
    pub fn scripts_dir(&self) -> PathBuf {
        self.dir.join("opt")
    }
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn machine(&self, name: &str) -> Option<&MachineLayout> {
        self.machines.iter().find(|m| m.name == name)
    }
    /// The control plane of every server machine.
    pub fn server_urls(&self) -> Vec<String> {
        self.machines
            .iter()
            .take(self.servers)
            .map(|m| format!("https://{}:{API_PORT}", m.ip))
            .collect()
    }
    /// The installer's role on machine `i`.
    pub fn role(&self, i: usize) -> Role {
        match (i, self.servers) {
            (0, 1) => Role::Server,
            (0, _) => Role::ServerInit,
            (i, n) if i < n => Role::ServerJoin,
            _ => Role::Agent,
        }
    }
    /// The same lab with `servers` server machines.
    pub fn with_servers(mut self, servers: usize) -> Result<Self, LayoutError> {
        if servers == 0 || servers > self.machines.len() {
            return Err(LayoutError::Servers {
                servers,
                machines: self.machines.len(),
            });
        }
        self.servers = servers;
        Ok(self)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("lab name {0:?} is invalid: use 1-20 lower case letters, digits or '-', starting with a letter")]
    Name(String),
    #[error("a lab has 1 to {MAX_MACHINES} machines (asked for {0})")]
    Size(usize),
    #[error("no free lab index: at most {MAX_LABS} labs can exist at once")]
    NoIndex,
    #[error("a lab of {machines} machines has 1 to {machines} servers (asked for {servers})")]
    Servers { servers: usize, machines: usize },
}

pub fn validate_name(name: &str) -> Result<(), LayoutError> {
    if corral_cluster::layout::is_rig_name(name) {
        Ok(())
    } else {
        Err(LayoutError::Name(name.to_string()))
    }
}

/// The lowest lab index no existing lab uses.
pub fn free_index(used: &[u8]) -> Result<u8, LayoutError> {
    (0..MAX_LABS)
        .find(|k| !used.contains(k))
        .ok_or(LayoutError::NoIndex)
}

/// Lays out lab `name` with index `index` and `machines` machines under `base`.
pub fn layout(name: &str, index: u8, machines: usize, base: &Path) -> Result<Layout, LayoutError> {
    validate_name(name)?;
    if machines == 0 || machines > MAX_MACHINES {
        return Err(LayoutError::Size(machines));
    }
    if index >= MAX_LABS {
        return Err(LayoutError::NoIndex);
    }
    let dir = base.join(name);
    let machines = (0..machines)
        .map(|i| {
            let mname = format!("{name}-{i}");
            MachineLayout {
                dir: dir.join(&mname),
                ip: format!("10.77.{index}.{}", 10 + i),
                name: mname,
                index: i,
            }
        })
        .collect();
    Ok(Layout {
        name: name.to_string(),
        index,
        bridge: format!("crlab{index}"),
        bridge_ip: format!("10.77.{index}.1"),
        subnet: format!("10.77.{index}.0/24"),
        dir,
        machines,
        servers: 1,
    })
}

/// A machine name (`NAME-i`) split into its lab name and index.
pub fn split_machine(machine: &str) -> Option<(&str, usize)> {
    let (lab, i) = machine.rsplit_once('-')?;
    let i: usize = i.parse().ok()?;
    validate_name(lab).ok()?;
    Some((lab, i))
}

/// The Service range (ClusterIPs), blackholed on the host.
pub const SERVICE_CIDR: &str = "10.43.0.0/16";

/// systemd-networkd's file for the machine's end of the bridge: a static address and no
/// gateway, since lab machines have no route out. Only the Service range is routed, to the
/// host (which blackholes it): a host's own connection to a ClusterIP is routed before the
/// proxy's OUTPUT DNAT, so without a route (real hosts have their default one) it fails with
/// "network unreachable".
pub fn network_file(m: &MachineLayout, bridge_ip: &str) -> String {
    format!(
        "# Written by corral lab: {name} on its lab bridge, no route out.\n\
         [Match]\nName=host0\n\n[Network]\nAddress={ip}/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n\
         [Route]\nDestination={SERVICE_CIDR}\nGateway={bridge_ip}\n",
        name = m.name,
        ip = m.ip
    )
}

/// The files written into a machine's upper directory before its first boot (relative path,
/// contents): a fresh machine ID, its hostname, its network, and a resolv.conf naming no
/// resolver (debootstrap copied this host's; a lab machine has no route to it, and its cluster
/// DNS must never forward there).
pub fn first_boot_files(
    l: &Layout,
    m: &MachineLayout,
    machine_id: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("etc/machine-id", format!("{machine_id}\n")),
        ("etc/hostname", format!("{}\n", m.name)),
        (
            "etc/systemd/network/10-corral-lab-host0.network",
            network_file(m, &l.bridge_ip),
        ),
        (
            "etc/resolv.conf",
            "# Written by corral lab: no resolvers, lab machines have no route out.\n".into(),
        ),
    ]
}

/// The systemd-nspawn command line booting machine `m` (machine-hosts.md): no machined
/// registration, all capabilities, the keyring syscalls runc needs, an overlay over the
/// shared rootfs, the lab bridge, the scripts and the binaries bound read-only.
pub fn nspawn_argv(l: &Layout, m: &MachineLayout, rootfs: &Path, bin_dir: &Path) -> Vec<String> {
    let rootfs = rootfs.display().to_string();
    vec![
        "systemd-nspawn".into(),
        "--quiet".into(),
        "--register=no".into(),
        "--keep-unit".into(),
        "--console=passive".into(),
        "--capability=all".into(),
        "--system-call-filter=@keyring bpf".into(),
        format!("--directory={rootfs}"),
        format!("--overlay={rootfs}:{}:/", m.upper().display()),
        format!("--machine={}", m.name),
        format!("--network-bridge={}", l.bridge),
        // The parent first: the binaries are bound on its empty bin/.
        format!("--bind-ro={}:{SCRIPTS_MOUNT}", l.scripts_dir().display()),
        format!("--bind-ro={}:{BIN_MOUNT}", bin_dir.display()),
        "--boot".into(),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The only server, on SQLite.
    Server,
    /// The first of several servers: `server --cluster-init` (embedded etcd).
    ServerInit,
    /// A next server: `server --server <machine 0>` with the server token.
    ServerJoin,
    Agent,
}

/// The command running the installer inside a machine, as a user would on a real host;
/// `token` is the agent token of an agent, the server token of a joining server;
/// `server_exec` becomes a server's `INSTALL_CORRAL_EXEC`.
pub fn install_argv(
    l: &Layout,
    role: Role,
    token: Option<&str>,
    server_exec: Option<&str>,
) -> Vec<String> {
    let mut argv = vec![
        "env".to_string(),
        format!("INSTALL_CORRAL_BIN_DIR={BIN_MOUNT}"),
    ];
    match role {
        Role::Agent => {
            argv.push(format!("CORRAL_URL={}", l.server_url()));
            argv.push(format!("CORRAL_TOKEN={}", token.unwrap_or_default()));
        }
        Role::Server | Role::ServerInit | Role::ServerJoin => {
            if let Some(exec) = server_exec.filter(|e| !e.trim().is_empty()) {
                argv.push(format!("INSTALL_CORRAL_EXEC={exec}"));
            }
            if role == Role::ServerJoin {
                argv.push(format!("CORRAL_TOKEN={}", token.unwrap_or_default()));
            }
        }
    }
    argv.extend(["bash".into(), INSTALL_MOUNT.into()]);
    match role {
        Role::Server => argv.push("server".into()),
        Role::ServerInit => argv.extend(["server".into(), "--cluster-init".into()]),
        Role::ServerJoin => argv.extend(["server".into(), "--server".into(), l.server_url()]),
        Role::Agent => argv.push("agent".into()),
    }
    argv
}

/// The mount points of every cgroup hierarchy (v1 controllers, named ones, and the v2 one),
/// from `/proc/self/mountinfo`.
pub fn cgroup_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            left.split_whitespace().nth(4).map(PathBuf::from)
        })
        .collect()
}

/// The machine's own cgroup directory in each hierarchy.
pub fn cgroup_dirs(mounts: &[PathBuf], machine: &str) -> Vec<PathBuf> {
    mounts
        .iter()
        .map(|m| m.join(format!("{CGROUP_PREFIX}{machine}")))
        .collect()
}

/// True when `systemctl is-system-running` printed a state in which the machine has booted.
pub fn booted(is_system_running: &str) -> bool {
    matches!(is_system_running.trim(), "running" | "degraded")
}

#[cfg(test)]
mod tests;
