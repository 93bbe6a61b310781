//! The lab's state file (`/var/lib/corral-lab/<lab>/state.json`): its layout, the rootfs and
//! binaries it boots, each machine's nspawn PID and cgroups, the blackholes it added. Written
//! before anything is created and after every step, so a half-created lab can be deleted.

use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::{io_err, Error};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    pub name: String,
    /// The systemd-nspawn process while the machine runs.
    pub pid: Option<i32>,
    /// Its start time (clock ticks after boot, /proc/PID/stat), to tell it from a reused PID.
    pub start_time: Option<u64>,
    /// The machine's cgroup directory in every hierarchy.
    pub cgroups: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub layout: Layout,
    pub rootfs: PathBuf,
    pub bin_dir: PathBuf,
    pub machines: Vec<MachineState>,
    /// Blackhole routes this lab added on the host (removed with the last lab).
    #[serde(default)]
    pub blackholes_added: Vec<String>,
    /// The installer ran (server on machine 0, agents on the others).
    #[serde(default)]
    pub installed: bool,
}

impl State {
    pub fn new(layout: Layout, rootfs: PathBuf, bin_dir: PathBuf) -> Self {
        let machines = layout
            .machines
            .iter()
            .map(|m| MachineState {
                name: m.name.clone(),
                pid: None,
                start_time: None,
                cgroups: Vec::new(),
            })
            .collect();
        Self {
            layout,
            rootfs,
            bin_dir,
            machines,
            blackholes_added: Vec::new(),
            installed: false,
        }
    }

    pub fn path(base: &Path, name: &str) -> PathBuf {
        base.join(name).join("state.json")
    }

    /// The lab's state, or None when it does not exist.
    pub fn load(base: &Path, name: &str) -> Result<Option<Self>, Error> {
        let path = Self::path(base, name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| Error::State { path, source })
    }

    /// Writes the state whole (temp file, then rename).
    pub fn save(&self) -> Result<(), Error> {
        let path = self.layout.state_file();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|source| Error::State {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    pub fn machine_mut(&mut self, name: &str) -> Option<&mut MachineState> {
        self.machines.iter_mut().find(|m| m.name == name)
    }
}

/// Every lab under `base`, by name.
pub fn list(base: &Path) -> Vec<State> {
    let mut names: Vec<String> = std::fs::read_dir(base)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .filter_map(|n| State::load(base, n).ok().flatten())
        .collect()
}

/// An exclusive lock on `base/.lock`, held while a lab picks its index and writes its first
/// state (two `lab create` at once would otherwise pick the same bridge).
pub fn lock(base: &Path) -> Result<Flock<std::fs::File>, Error> {
    std::fs::create_dir_all(base).map_err(io_err(base))?;
    let path = base.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| Error::Io {
        path: path.display().to_string(),
        source: errno.into(),
    })
}
