//! Processes a test starts itself (control planes, schedulers, hollow nodes): a free loopback
//! port for each, and a child logging to a file that is killed when dropped.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::kubectl::KillOnDrop;

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Starts `cmd` with stdout and stderr in `log` (RUST_LOG=info), killed on drop.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> KillOnDrop {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    KillOnDrop(
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}")),
    )
}
