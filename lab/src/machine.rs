//! One machine's life: its upper directory prepared for a first boot, systemd-nspawn started
//! detached inside the machine's cgroups, its leader (the machine's systemd) found, boot
//! awaited through `systemctl is-system-running`, commands run with `nsenter -t LEADER -a`,
//! poweroff bounded by a deadline and then SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{debug, info};

use crate::layout::{self, Layout, MachineLayout, IMAGES_DIR};
use crate::{io_err, Error};

/// The environment of a command run inside a machine: the machine's own, not the caller's.
const MACHINE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Writes the first-boot files (a fresh machine ID, hostname, network) unless the machine has
/// booted before, and copies image archives into the agent's images directory.
pub fn prepare(l: &Layout, m: &MachineLayout, images: &[PathBuf]) -> Result<(), Error> {
    let upper = m.upper();
    std::fs::create_dir_all(&upper).map_err(io_err(&upper))?;
    if !upper.join("etc/machine-id").exists() {
        let id = uuid::Uuid::new_v4().simple().to_string();
        for (rel, text) in layout::first_boot_files(l, m, &id) {
            let path = upper.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            std::fs::write(&path, text).map_err(io_err(&path))?;
        }
    }
    if !images.is_empty() {
        let dir = upper.join(IMAGES_DIR);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        for src in images {
            let Some(file) = src.file_name() else {
                continue;
            };
            let dst = dir.join(file);
            std::fs::copy(src, &dst).map_err(io_err(src))?;
        }
    }
    Ok(())
}

/// Starts systemd-nspawn for `m`, detached (own session, console to the machine's log, not
/// our child once the launching shell exits), inside the machine's cgroups. Returns its PID
/// and start time.
pub fn spawn(
    l: &Layout,
    m: &MachineLayout,
    rootfs: &Path,
    bin_dir: &Path,
    cgroups: &[PathBuf],
) -> Result<(i32, u64), Error> {
    let argv = layout::nspawn_argv(l, m, rootfs, bin_dir);
    // The shell moves itself into every cgroup of the machine, then starts nspawn in the
    // background so that nspawn inherits them and is reparented when the shell exits.
    let script = r#"n=$1; shift
i=0
while [ "$i" -lt "$n" ]; do echo $$ >"$1/cgroup.procs" || exit 1; shift; i=$((i+1)); done
log=$1; shift
setsid "$@" </dev/null >>"$log" 2>&1 &
echo $!"#;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg("sh")
        .arg(cgroups.len().to_string())
        .args(cgroups)
        .arg(m.log())
        .args(&argv);
    let out = cmd.output().map_err(|source| Error::Exec {
        command: argv.join(" "),
        source,
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pid: i32 = match (out.status.success(), text.trim().parse()) {
        (true, Ok(pid)) => pid,
        _ => {
            return Err(Error::Command {
                command: argv.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    };
    let start = start_time(pid).ok_or_else(|| Error::Boot {
        machine: m.name.clone(),
        log: m.log(),
        tail: log_tail(&m.log(), 10),
    })?;
    info!(machine = %m.name, pid, "systemd-nspawn started");
    Ok((pid, start))
}

/// (state, start time) of a process, from /proc/PID/stat.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields.get(19)?.parse().ok()?))
}

fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, t)| t)
}

/// True when `pid` still runs (not a zombie) and is the process that started at `start`.
pub fn alive(pid: Option<i32>, start: Option<u64>) -> bool {
    let (Some(pid), Some(start)) = (pid, start) else {
        return false;
    };
    matches!(stat(pid), Some((s, t)) if s != 'Z' && s != 'X' && t == start)
}

fn parent_of(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The machine's leader: the child of nspawn in another PID namespace (its systemd).
pub fn leader(nspawn: i32) -> Option<i32> {
    let own_ns = std::fs::read_link(format!("/proc/{nspawn}/ns/pid")).ok()?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| parent_of(p) == Some(nspawn))
        .find(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|ns| ns != own_ns))
}

/// `nsenter -t LEADER -a` with the machine's root and working directory and a clean
/// environment, then `argv`.
pub fn nsenter(leader: i32, argv: &[String]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg("-t")
        .arg(leader.to_string())
        .args([
            "-a",
            "--root",
            "--wd",
            "--",
            "env",
            "-i",
            MACHINE_PATH,
            "HOME=/root",
        ])
        .args(argv);
    cmd
}

/// Runs `argv` inside the machine and returns its stdout, or None when it failed.
fn output(leader: i32, argv: &[&str]) -> Option<String> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let out = nsenter(leader, &argv)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until the machine's systemd reports `running` or `degraded`; returns its leader.
pub async fn wait_booted(
    m: &MachineLayout,
    pid: i32,
    start: u64,
    timeout: Duration,
) -> Result<i32, Error> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        if !alive(Some(pid), Some(start)) {
            return Err(Error::Boot {
                machine: m.name.clone(),
                log: m.log(),
                tail: log_tail(&m.log(), 15),
            });
        }
        if let Some(l) = leader(pid) {
            if let Some(out) = output(l, &["systemctl", "is-system-running"]) {
                if layout::booted(&out) {
                    debug!(machine = %m.name, leader = l, state = out.trim(), "booted");
                    return Ok(l);
                }
                last = out.trim().to_string();
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("machine {} to boot (last state {last:?})", m.name),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asks the machine's systemd to power off and waits for nspawn to exit; past `timeout`, the
/// machine is killed.
pub async fn poweroff(m: &MachineLayout, pid: i32, start: u64, timeout: Duration) {
    if let Some(l) = leader(pid) {
        let _ = output(l, &["systemctl", "poweroff"]);
    }
    let deadline = Instant::now() + timeout;
    while alive(Some(pid), Some(start)) {
        if Instant::now() > deadline {
            info!(machine = %m.name, "poweroff timed out: killing the machine");
            kill_machine(pid, start);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILL to the machine's systemd (which ends its PID namespace) and to nspawn.
pub fn kill_machine(pid: i32, start: u64) {
    if !alive(Some(pid), Some(start)) {
        return;
    }
    if let Some(l) = leader(pid) {
        let _ = kill(Pid::from_raw(l), Signal::SIGKILL);
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// The last `n` lines of a log file.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
