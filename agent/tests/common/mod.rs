//! Test fixtures: a private containerd (own root, state and socket in a temp dir) and the
//! test images. Everything is torn down on drop, even when the test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_agent::runtime::containerd::Containerd;
use corral_agent::runtime::ContainerRuntime;

pub const NAMESPACE: &str = "corral-test";

/// Why a test cannot run here, or None when it can.
pub fn skip_reason() -> Option<String> {
    for bin in ["containerd", "runc"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).exists()))
            .unwrap_or(false);
        if !found {
            return Some(format!("{bin} is not installed"));
        }
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (containerd, netns, CNI)".into());
    }
    if !Path::new("/usr/bin/busybox").exists() {
        return Some("busybox-static is not installed (/usr/bin/busybox)".into());
    }
    None
}

#[macro_export]
macro_rules! skip_unless_runnable {
    () => {
        if let Some(why) = common::skip_reason() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

pub struct ContainerdFixture {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
}

impl ContainerdFixture {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ctd")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let socket = d.join("c.sock");
        let config = format!(
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
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = socket.display(),
            opt = d.join("opt").display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let mut f = Self {
            dir,
            socket,
            child: None,
        };
        f.spawn();
        f
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("containerd.log"))
            .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not create {}",
                self.socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What a node reboot does to containerd: it and its shims die with SIGKILL (the
    /// containers' processes are killed by the caller), its state directory (a tmpfs under
    /// /run on a real node) is gone, its root with the container records survives. Then it
    /// starts again on the same root.
    pub fn crash_and_restart(&mut self, kill_containers: impl FnOnce()) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_shims_of(&self.socket);
        kill_containers();
        let state = self.path().join("state");
        unmount_under(&state);
        let _ = std::fs::remove_dir_all(&state);
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(self.path().join("c.sock.ttrpc"));
        self.spawn();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub async fn runtime(&self) -> Containerd {
        let tmp = self.path().join("agent-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        Containerd::connect(&self.socket, NAMESPACE, "overlayfs", tmp)
            .await
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("containerd.log")).unwrap_or_default()
    }
}

/// Removes every container left in the fixture's namespaces (this stops their shims).
async fn remove_all(socket: PathBuf, dir: PathBuf) {
    for ns in [NAMESPACE, "corral"] {
        let Ok(rt) = Containerd::connect(&socket, ns, "overlayfs", dir.clone()).await else {
            return;
        };
        if let Ok(list) = rt.list().await {
            for c in list {
                let _ = rt.remove(&c.id).await;
            }
        }
    }
}

impl Drop for ContainerdFixture {
    fn drop(&mut self) {
        let (socket, dir) = (self.socket.clone(), self.path().to_path_buf());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(30), remove_all(socket, dir))
                        .await;
                })
        })
        .join();
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_shims_of(&self.socket);
        unmount_under(self.path());
    }
}

/// Kills the containerd shims (and so their containers) still bound to `socket`: a shim whose
/// task was not deleted outlives its containerd and would be left running after the test.
pub fn kill_shims_of(socket: &Path) {
    let needle = format!("-address {}", socket.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("containerd-shim") && cmdline.contains(&needle) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// SIGKILLs every process in the `parent/child` cgroups of every hierarchy (what a reboot
/// does to the containers whose shims are gone).
pub fn kill_cgroup_processes(parent: &str, children: &[String]) {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for root in roots {
        for c in children {
            let Ok(rd) = std::fs::read_dir(root.join(parent).join(c)) else {
                continue;
            };
            for leaf in rd.flatten().filter(|e| e.path().is_dir()) {
                let procs = std::fs::read_to_string(leaf.path().join("cgroup.procs"));
                for pid in procs.unwrap_or_default().lines() {
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
    }
}

/// Lazily unmounts whatever is still mounted below `dir` (snapshots, rootfs), deepest first.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Builds the test images once per test binary.
pub fn images_dir() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("corral-test-images");
        corral_testimages::build_standard_images(Path::new("/usr/bin/busybox"), &dir)
            .expect("test images build");
        dir
    })
    .clone()
}

pub fn image_archive(reference: &str) -> PathBuf {
    images_dir().join(corral_testimages::archive_name(reference))
}
pub mod cluster;

/// Removes `parent/child` cgroup directories (and `parent` when empty) under every hierarchy;
/// runc leaves parents behind. Only empty cgroups can be removed, so nothing running is hit.
pub fn remove_cgroups(parent: &str, children: &[String]) {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for root in roots {
        let dir = root.join(parent.trim_start_matches('/'));
        for c in children {
            let _ = std::fs::remove_dir(dir.join(c));
        }
        let _ = std::fs::remove_dir(&dir);
    }
}
