//! Child processes of a cluster: started detached (own process group, log file), found again
//! by PID from the state file, and stopped with SIGTERM then SIGKILL.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::layout::ProcessSpec;
use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub name: String,
    pub pid: u32,
    /// argv[0], to tell our process from another that reused the PID.
    pub program: String,
}

pub fn spawn(spec: &ProcessSpec) -> Result<Running, Error> {
    if let Some(dir) = spec.log.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|source| Error::Io {
            path: spec.log.display().to_string(),
            source,
        })?;
    let err_log = log.try_clone().map_err(|source| Error::Io {
        path: spec.log.display().to_string(),
        source,
    })?;
    let mut cmd = match &spec.netns {
        // nsenter without --fork execs the program, so the PID is the program's own.
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}"))
                .arg("--")
                .args(&spec.argv);
            c
        }
        None => {
            let mut c = Command::new(&spec.argv[0]);
            c.args(&spec.argv[1..]);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .process_group(0)
        .env(
            "RUST_LOG",
            std::env::var("CORRAL_LOG").unwrap_or_else(|_| "info".into()),
        );
    let child = cmd.spawn().map_err(|source| Error::Exec {
        command: spec.argv.join(" "),
        source,
    })?;
    Ok(Running {
        name: spec.name.clone(),
        pid: child.id(),
        program: spec.argv[0].clone(),
    })
}

/// True when `p` is alive and still runs the program we started.
pub fn alive(p: &Running) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", p.pid)) else {
        return false;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)) else {
        return false;
    };
    let zombie = stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'));
    let base = std::path::Path::new(&p.program)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    !zombie && String::from_utf8_lossy(&cmdline).contains(&base)
}

/// SIGTERM, then SIGKILL after `grace`. Returns when the process is gone.
pub fn stop(p: &Running, grace: Duration) {
    if !alive(p) {
        return;
    }
    let pid = Pid::from_raw(p.pid as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while alive(p) && Instant::now() < deadline {
        reap(p.pid);
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(p) {
        let _ = kill(pid, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(p) && Instant::now() < deadline {
            reap(p.pid);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    reap(p.pid);
}

/// Collects the exit status when the process is our own child (no zombie left behind).
fn reap(pid: u32) {
    let _ = nix::sys::wait::waitpid(
        Pid::from_raw(pid as i32),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
}
