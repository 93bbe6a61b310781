//! What a lab changes on the host, carried out with iproute2 and cgroupfs: the lab bridge,
//! the blackhole routes for the pod and service ranges (shared with the cluster rig), and one
//! cgroup directory per machine in every hierarchy. Each step is idempotent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{debug, warn};

use crate::layout::{self, Layout};
use crate::Error;

/// The ranges the cluster rig blackholes on the host: pod and service traffic that no route
/// claims is dropped here instead of leaving.
pub use corral_cluster::layout::BLACKHOLES;

pub(crate) fn run(args: &[&str]) -> Result<String, Error> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|source| Error::Exec {
            command: args.join(" "),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

pub fn link_exists(name: &str) -> bool {
    run(&["ip", "link", "show", "dev", name]).is_ok()
}

/// The names of the host's links (one `ip` call).
pub fn links() -> Result<Vec<String>, Error> {
    Ok(run(&["ip", "-o", "link", "show"])?
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .collect())
}

/// The lab bridge with 10.77.<k>.1/24, up.
pub fn ensure_bridge(l: &Layout) -> Result<(), Error> {
    if !link_exists(&l.bridge) {
        run(&["ip", "link", "add", &l.bridge, "type", "bridge"])?;
    }
    let addr = format!("{}/24", l.bridge_ip);
    let shown = run(&["ip", "-4", "-o", "addr", "show", "dev", &l.bridge])?;
    if !shown.contains(&format!("inet {addr} ")) {
        run(&["ip", "addr", "add", &addr, "dev", &l.bridge])?;
    }
    run(&["ip", "link", "set", &l.bridge, "up"])?;
    Ok(())
}

/// The host end of machine `machine`'s veth (`vb-NAME`, when that fits a link name): the
/// kernel removes it with the machine's network namespace, but TCP connections the machine's
/// processes left half-closed (etcd's, to a peer whose power was cut) keep that namespace for
/// minutes after the machine is gone, and a machine of the same name could not boot.
pub fn remove_host_veth(machine: &str) -> Result<(), Error> {
    let name = format!("vb-{machine}");
    if name.len() <= 15 && link_exists(&name) {
        match run(&["ip", "link", "del", &name]) {
            // The kernel removes it with the machine's network namespace, which may have
            // gone between the check and the delete: that is the outcome wanted.
            Err(_) if !link_exists(&name) => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

pub fn remove_bridge(l: &Layout) -> Result<(), Error> {
    if link_exists(&l.bridge) {
        run(&["ip", "link", "del", &l.bridge])?;
    }
    Ok(())
}

fn blackhole_present(range: &str) -> bool {
    run(&["ip", "route", "show", "type", "blackhole", range]).is_ok_and(|o| !o.trim().is_empty())
}

/// Adds the blackhole routes that are missing; returns those it added (the lab removes only
/// those, and only when nothing else may need them).
pub fn ensure_blackholes() -> Result<Vec<String>, Error> {
    let mut added = Vec::new();
    for range in BLACKHOLES {
        if !blackhole_present(range) {
            run(&["ip", "route", "add", "blackhole", range])?;
            added.push(range.to_string());
        }
    }
    Ok(added)
}

/// Removes blackholes this lab added, unless a local cluster (a `crl*br` bridge) is there.
pub fn remove_blackholes(added: &[String]) -> Result<(), Error> {
    let links = run(&["ip", "-o", "link", "show", "type", "bridge"]).unwrap_or_default();
    let cluster_rig = links.split_whitespace().any(|w| {
        let w = w.trim_end_matches(':');
        w.starts_with("crl") && w.ends_with("br") && !w.starts_with("crlab")
    });
    if cluster_rig {
        debug!("a local cluster is present: blackhole routes kept");
        return Ok(());
    }
    for range in added {
        if blackhole_present(range) {
            run(&["ip", "route", "del", "blackhole", range])?;
        }
    }
    Ok(())
}

/// The machine's cgroup directory in every hierarchy of this host.
pub fn cgroup_dirs(machine: &str) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    layout::cgroup_dirs(&layout::cgroup_mounts(&mountinfo), machine)
}

/// Creates the machine's cgroup directories (cpuset: cpus and mems copied from the parent
/// first, or moving a process in fails).
pub fn ensure_cgroups(dirs: &[PathBuf]) -> Result<(), Error> {
    for dir in dirs {
        std::fs::create_dir_all(dir).map_err(crate::io_err(dir))?;
        for knob in ["cpuset.cpus", "cpuset.mems"] {
            let file = dir.join(knob);
            if !file.exists() {
                continue;
            }
            let current = std::fs::read_to_string(&file).unwrap_or_default();
            if current.trim().is_empty() {
                let parent = dir.parent().unwrap_or(Path::new("/")).join(knob);
                let value = std::fs::read_to_string(&parent).map_err(crate::io_err(&parent))?;
                std::fs::write(&file, value.trim()).map_err(crate::io_err(&file))?;
            }
        }
    }
    Ok(())
}

/// Every process in `dir` and below.
pub fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids
}

/// Kills every process left in the machine's cgroups, then removes the directories (deepest
/// first: the machine's own systemd and runc make sub-cgroups).
pub async fn remove_cgroups(dirs: &[PathBuf]) -> Result<(), Error> {
    kill_cgroup_procs(dirs).await?;
    for dir in dirs {
        remove_tree(dir).await?;
    }
    Ok(())
}

/// SIGKILLs every process in the machine's cgroups until none is left (bounded).
pub async fn kill_cgroup_procs(dirs: &[PathBuf]) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<i32> = dirs.iter().flat_map(|d| cgroup_pids(d)).collect();
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::Lingering {
                what: format!("processes {pids:?} in the cgroups of {}", dirs[0].display()),
            });
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn remove_tree(dir: &Path) -> Result<(), Error> {
    if !dir.exists() {
        return Ok(());
    }
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if let Ok(entries) = std::fs::read_dir(&all[i]) {
            all.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        i += 1;
    }
    // A cgroup whose last process just died can stay busy for a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    for d in all.iter().rev() {
        loop {
            match std::fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if Instant::now() < deadline => {
                    debug!(dir = %d.display(), error = %e, "cgroup busy, retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    warn!(dir = %d.display(), error = %e, "cannot remove cgroup");
                    return Err(crate::io_err(d)(e));
                }
            }
        }
    }
    Ok(())
}

/// What systemd-nspawn leaves on the host when its machine is killed rather than powered off:
/// `/run/systemd/nspawn/propagate/<machine>`.
pub fn remove_nspawn_leftovers(machine: &str) {
    let dir = Path::new(NSPAWN_RUN).join("propagate").join(machine);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(dir = %dir.display(), error = %e, "cannot remove nspawn's propagation dir");
        }
    }
}

const NSPAWN_RUN: &str = "/run/systemd/nspawn";

/// nspawn's lock on the shared rootfs (`locks/inode-DEV:INO`) once no machine uses it, and
/// nspawn's run directories if they are empty.
pub fn remove_rootfs_lock(rootfs: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::metadata(rootfs) {
        let lock = Path::new(NSPAWN_RUN).join("locks").join(format!(
            "inode-{}:{}",
            meta.dev(),
            meta.ino()
        ));
        let _ = std::fs::remove_file(lock);
    }
    for dir in ["propagate", "locks", ""] {
        // Only empty ones go: another nspawn user may keep its own there.
        let _ = std::fs::remove_dir(Path::new(NSPAWN_RUN).join(dir));
    }
}
