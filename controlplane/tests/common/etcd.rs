//! Real etcd members (Debian's etcd-server) on loopback for the store's tests: a cluster of
//! N members on free ports in a temp dir, killed and removed when dropped (also when a test
//! fails; a stopped member is continued first). `None` when the etcd binary is missing
//! (setup.sh installs it; CI fails without).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ETCD: &str = "/usr/bin/etcd";

pub struct Member {
    pub name: String,
    pub client_url: String,
    pub child: Option<Child>,
    args: Vec<String>,
    /// SIGSTOPped: it accepts connections and answers nothing, as a hung or cut-off host.
    stopped: bool,
}

pub struct EtcdCluster {
    pub members: Vec<Member>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers; `None` without etcd.
    pub fn start(n: usize) -> Option<EtcdCluster> {
        if !std::path::Path::new(ETCD).exists() {
            if std::env::var_os("CI").is_some() {
                panic!("{ETCD} is missing: CI must install etcd-server (scripts/setup.sh)");
            }
            eprintln!("SKIPPED: {ETCD} is missing");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let token = format!("corral-test-{}", std::process::id());
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let data: PathBuf = dir.path().join(format!("m{i}"));
                let args = vec![
                    format!("--name=m{i}"),
                    format!("--data-dir={}", data.display()),
                    format!("--listen-client-urls=http://127.0.0.1:{client}"),
                    format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                    format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                    format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                    format!("--initial-cluster={}", initial.join(",")),
                    format!("--initial-cluster-token={token}"),
                    "--initial-cluster-state=new".into(),
                    // Quick elections on loopback (defaults: 100 ms and 1 s).
                    "--heartbeat-interval=50".into(),
                    "--election-timeout=500".into(),
                    "--logger=zap".into(),
                    "--log-level=error".into(),
                ];
                let mut m = Member {
                    name: format!("m{i}"),
                    client_url: format!("http://127.0.0.1:{client}"),
                    child: None,
                    args,
                    stopped: false,
                };
                m.start();
                m
            })
            .collect();
        let cluster = EtcdCluster { members, _dir: dir };
        cluster.wait_healthy();
        Some(cluster)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Waits until etcdctl reports every running member's endpoint healthy.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let running: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client_url.clone())
            .collect();
        loop {
            let ok = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", running.join(",")))
                .args(["endpoint", "health", "--command-timeout=2s"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd cluster not healthy in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl EtcdCluster {
    /// The index of the member that leads now (asked with etcdctl).
    pub fn leader(&self) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let out = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", m.client_url))
                .args(["endpoint", "status", "-w", "json", "--command-timeout=2s"])
                .output()
                .ok()?;
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let s = &status[0]["Status"];
            if s["leader"].is_u64() && s["leader"] == s["header"]["member_id"] {
                return Some(i);
            }
        }
        None
    }
}

impl Member {
    pub fn start(&mut self) {
        let child = Command::new(ETCD)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    fn signal(&self, signal: &str) -> bool {
        self.child.as_ref().is_some_and(|c| {
            Command::new("kill")
                .args([signal, &c.id().to_string()])
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// SIGSTOP: the member hangs (its sockets stay open, nothing answers).
    pub fn stop(&mut self) {
        assert!(self.signal("-STOP"), "SIGSTOP {}", self.name);
        self.stopped = true;
    }

    /// SIGCONT: the member runs again and catches up with the others.
    pub fn cont(&mut self) {
        assert!(self.signal("-CONT"), "SIGCONT {}", self.name);
        self.stopped = false;
    }

    pub fn kill(&mut self) {
        if self.stopped {
            // Never leave a stopped process behind, even if the kill below fails.
            let _ = self.signal("-CONT");
            self.stopped = false;
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}
