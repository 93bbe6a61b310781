//! `corral lab`: a Vagrant-style rig of machines on one Linux host. Each machine boots real
//! systemd (systemd-nspawn over an overlay of a cached Debian rootfs) on the lab's bridge with
//! its own address, and runs the installer as a real host does. The state file lets any later
//! `corral` power machines off, boot them and delete the lab, leaving nothing behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod host;
pub mod install;
pub mod layout;
pub mod machine;
pub mod state;

pub use layout::{Layout, MachineLayout};
pub use state::State;

/// Builds (once, cached) the Debian rootfs and prints its path. Its hash is the cache key.
pub const ROOTFS_SCRIPT: &str = include_str!("../../scripts/lab-rootfs.sh");
/// The installer and the scripts it installs beside the binaries, plus the host snapshot the
/// uninstall tests diff: written to the lab's `opt/` and bound into every machine at
/// /opt/corral (`bash /opt/corral/install.sh server`, as a user runs it from a checkout).
pub const SCRIPTS: [(&str, &str); 4] = [
    ("install.sh", include_str!("../../scripts/install.sh")),
    ("killall.sh", include_str!("../../scripts/killall.sh")),
    ("uninstall.sh", include_str!("../../scripts/uninstall.sh")),
    ("host-state.sh", include_str!("../../scripts/host-state.sh")),
];

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
    #[error("state file {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("lab {0:?} already exists (delete it with `corral lab delete {0}`)")]
    Exists(String),
    #[error("lab {0:?} not found")]
    NotFound(String),
    #[error("machine {0:?} not found in any lab")]
    MachineNotFound(String),
    #[error("machine {0:?} is running")]
    Running(String),
    #[error("machine {0:?} is powered off (start it with `corral lab boot {0}`)")]
    PoweredOff(String),
    #[error("machine {machine} did not boot; its console ({log}) ends with:\n{tail}")]
    Boot {
        machine: String,
        log: PathBuf,
        tail: String,
    },
    #[error("the installer failed on machine {machine}; its log ({log}) ends with:\n{tail}")]
    Install {
        machine: String,
        log: PathBuf,
        tail: String,
    },
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    #[error("binaries directory {0} does not exist (give one with --bin-dir)")]
    BinDir(PathBuf),
    #[error("an installer task of lab {lab}: {source}")]
    Task {
        lab: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("left behind: {what}")]
    Lingering { what: String },
    #[error("lab credentials: {0}")]
    Kubeconfig(#[from] corral_api::kubeconfig::KubeconfigError),
    #[error("corral lab needs root (systemd-nspawn, bridges, cgroups)")]
    NotRoot,
    #[error("{tool} is not installed (apt-get install {package})")]
    Missing {
        tool: &'static str,
        package: &'static str,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where labs live and what they boot.
#[derive(Debug, Clone)]
pub struct Options {
    /// `/var/lib/corral-lab`
    pub base: PathBuf,
    /// Bound read-only at /opt/corral/bin in every machine.
    pub bin_dir: PathBuf,
    /// How long a machine may take to boot.
    pub boot_timeout: Duration,
    /// Extra flags for the server's control plane (the installer's `INSTALL_CORRAL_EXEC`),
    /// e.g. shorter node grace and eviction times for drills.
    pub server_exec: Option<String>,
}

impl Options {
    /// Labs under /var/lib/corral-lab, binaries from the directory of `exe`.
    pub fn beside(exe: &Path) -> Self {
        Self {
            base: PathBuf::from("/var/lib/corral-lab"),
            bin_dir: exe.parent().unwrap_or(Path::new(".")).to_path_buf(),
            boot_timeout: Duration::from_secs(60),
            server_exec: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub name: String,
    pub machines: usize,
    /// Image archives copied into every machine's agent images directory before install.
    pub images: Vec<PathBuf>,
    /// Boot the machines only (no installer).
    pub install: bool,
    /// How long the installs and nodes becoming Ready may take.
    pub timeout: Duration,
}

fn require_host() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(Error::NotRoot);
    }
    for (tool, package) in [
        ("systemd-nspawn", "systemd-container"),
        ("nsenter", "util-linux"),
        ("ip", "iproute2"),
    ] {
        if which(tool).is_none() {
            return Err(Error::Missing { tool, package });
        }
    }
    Ok(())
}

pub fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|p| p.exists())
    })
}

/// Builds the rootfs if it is not cached yet and returns its path (the script's last line).
pub fn rootfs(base: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(base).map_err(io_err(base))?;
    let script = base.join("lab-rootfs.sh");
    // Replaced whole (never rewritten in place): another `corral lab` may be running it, and
    // a half-written copy would hash to another cache key.
    if std::fs::read_to_string(&script).ok().as_deref() != Some(ROOTFS_SCRIPT) {
        let tmp = base.join(format!(".lab-rootfs.sh.{}", std::process::id()));
        std::fs::write(&tmp, ROOTFS_SCRIPT).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &script).map_err(io_err(&script))?;
    }
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|source| Error::Exec {
            command: format!("bash {}", script.display()),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().last().map(str::trim) {
        Some(path) if out.status.success() && Path::new(path).is_dir() => Ok(PathBuf::from(path)),
        _ => Err(Error::Command {
            command: format!("bash {}", script.display()),
            stderr: format!("exit {}, output {:?}", out.status, text.trim()),
        }),
    }
}

mod lifecycle;
pub use lifecycle::{
    boot, create, create_with_servers, delete, exec, exec_output, find_machine, install_lab,
    layout_of, list, power_cut, poweroff, LabInfo,
};

/// Seconds since `t`, for progress lines.
pub(crate) fn secs(t: Instant) -> String {
    format!("{:.1}s", t.elapsed().as_secs_f64())
}
