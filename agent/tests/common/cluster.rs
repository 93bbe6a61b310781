//! A one-node cluster for end-to-end tests: the real `corral-agent` binary against the
//! private containerd, with the control plane in-process. The pod CIDR gets a low-priority
//! blackhole route on the host, so pod traffic can never leave the machine; the bridge,
//! namespaces, route and containers are removed on drop, even after a failure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_agent::runtime::containerd::Containerd;
use corral_api::k8s::api::core::v1::{Container, Node, Pod, PodSpec};
use corral_api::Client;
use rand::Rng;

pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Cluster {
    pub name: String,
    pub ctd: Option<super::ContainerdFixture>,
    cp: Option<corral_controlplane::Running>,
    pub agent: Option<Child>,
    pub dir: tempfile::TempDir,
    bridge: String,
    pub cidr: String,
    pub client: Client,
    /// Extra flags for the agent.
    pub agent_args: Vec<String>,
    /// Pass `--pod-cidr` (else the agent waits for the Node's spec.podCIDR).
    pub pod_cidr_flag: bool,
    /// Extra environment of the agent.
    pub agent_env: Vec<(String, PathBuf)>,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Cluster {
    pub async fn start() -> Self {
        Self::start_with(Vec::new()).await
    }

    pub async fn start_with(agent_args: Vec<String>) -> Self {
        Self::start_opts(agent_args, true, Vec::new()).await
    }

    pub async fn start_opts(
        agent_args: Vec<String>,
        pod_cidr_flag: bool,
        agent_env: Vec<(String, PathBuf)>,
    ) -> Self {
        let ctd = super::ContainerdFixture::start();
        let dir = tempfile::Builder::new()
            .prefix("e2e")
            .tempdir_in("/tmp")
            .unwrap();
        let cp = corral_controlplane::start(corral_controlplane::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("cp"),
            controllers: false,
            ..Default::default()
        })
        .await
        .expect("control plane starts");
        let client = cp.client().await.unwrap();
        let n: u32 = rand::thread_rng().gen_range(0..60_000);
        let cidr = format!("10.{}.{}.0/24", 200 + n / 1000 % 50, n % 250);
        let bridge = format!("crl{n}");
        // Low priority (metric): the bridge's own route wins while it exists.
        assert!(
            ip(&["route", "add", "blackhole", &cidr, "metric", "4000"]),
            "blackhole route for {cidr}"
        );
        let mut c = Cluster {
            name: format!("node-{n}"),
            ctd: Some(ctd),
            cp: Some(cp),
            agent: None,
            dir,
            bridge,
            cidr,
            client,
            agent_args,
            pod_cidr_flag,
            agent_env,
        };
        c.start_agent();
        c.wait_node_ready().await;
        c
    }

    pub fn agent_dir(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    pub fn start_agent(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        let cp = self.cp.as_ref().unwrap();
        // CORRAL_AGENT_BIN runs another build of the agent (A/B benchmark runs).
        let bin = std::env::var_os("CORRAL_AGENT_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_corral-agent").into());
        let kubeconfig = self.dir.path().join("node.kubeconfig");
        let creds = cp
            .credentials_for(&format!("system:node:{}", self.name), &["system:nodes"])
            .unwrap();
        corral_api::kubeconfig::write(&kubeconfig, "corral", &cp.url(), &creds).unwrap();
        let mut cmd = Command::new(bin);
        if self.pod_cidr_flag {
            cmd.args(["--pod-cidr", &self.cidr]);
        }
        let child = cmd
            .envs(self.agent_env.iter().map(|(k, v)| (k, v)))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--node-name", &self.name])
            .arg("--containerd-socket")
            .arg(&self.ctd.as_ref().unwrap().socket)
            .arg("--data-dir")
            .arg(self.agent_dir())
            .args(["--bridge", &self.bridge])
            // The address these tests were written for (the agent now detects one by default).
            .args(["--node-ip", "127.0.0.1"])
            .arg("--images-dir")
            .arg(super::images_dir())
            .args(["--backoff-initial", "1", "--backoff-max", "4"])
            // Pulls never leave the machine: only loopback registries are allowed.
            .args(["--allowed-registry", "127.0.0.1"])
            .args(&self.agent_args)
            .env("RUST_LOG", "info,corral_agent=debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("corral-agent starts");
        self.agent = Some(child);
    }

    pub fn stop_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
    }

    /// Uids of the pods the agent has directories for.
    pub fn pod_uids(&self) -> Vec<String> {
        std::fs::read_dir(self.agent_dir().join("pods"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A node reboot as containerd sees it, with the agent stopped: containerd, shims and
    /// containers killed, containerd's state directory gone, its container records kept.
    pub fn reboot_containerd(&mut self) {
        self.stop_agent();
        let pods: Vec<String> = self.pod_uids().iter().map(|u| format!("pod{u}")).collect();
        self.ctd
            .as_mut()
            .unwrap()
            .crash_and_restart(|| super::kill_cgroup_processes("corral", &pods));
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub async fn runtime(&self) -> Containerd {
        Containerd::connect(
            &self.ctd.as_ref().unwrap().socket,
            "corral",
            "overlayfs",
            self.dir.path().to_path_buf(),
        )
        .await
        .unwrap()
    }

    /// Polls `get` until `ok` holds, failing with the last value and the agent's log.
    pub async fn wait_pod(&self, name: &str, what: &str, ok: impl Fn(&Pod) -> bool) -> Pod {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < DEADLINE {
            if let Ok(Some(p)) = self.client.get_opt::<Pod>("default", name).await {
                if ok(&p) {
                    return p;
                }
                last = Some(p);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "pod {name} never got {what}; last: {}\n--- agent log ---\n{}",
            serde_json::to_string_pretty(&last).unwrap(),
            self.agent_log()
        );
    }

    pub async fn create_pod(&self, name: &str, image: &str, command: Option<Vec<&str>>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("default".into());
        p.spec = Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some(image.into()),
                command: command.map(|c| c.into_iter().map(String::from).collect()),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(5),
            ..Default::default()
        });
        let p = self.client.create(&p).await.unwrap();
        let uid = p.metadata.uid.clone().unwrap();
        self.client
            .bind("default", name, &uid, &self.name)
            .await
            .unwrap();
        p
    }

    pub async fn wait_node_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Ok(Some(n)) = self.client.get_opt::<Node>("", &self.name).await {
                let ready = n
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if ready {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "node {} never became Ready\n{}",
            self.name,
            self.agent_log()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_agent();
        // Removes every container (and so the shims) before containerd stops.
        drop(self.ctd.take());
        drop(self.cp.take());
        // cgroups of pods the agent did not get to clean.
        let uids = self.pod_uids();
        let pods: Vec<String> = uids.iter().map(|u| format!("pod{u}")).collect();
        super::remove_cgroups("corral", &pods);
        // Namespaces of pods the agent did not get to clean.
        let results = self.agent_dir().join("cni/results");
        if let Ok(rd) = std::fs::read_dir(&results) {
            for e in rd.flatten() {
                if let Some(uid) = e.file_name().to_str().and_then(|n| n.strip_suffix(".json")) {
                    let _ = corral_agent::network::delete_netns(Path::new(&format!(
                        "/run/netns/corral-{uid}"
                    )));
                }
            }
        }
        ip(&["link", "del", &self.bridge]);
        ip(&["route", "del", "blackhole", &self.cidr, "metric", "4000"]);
        super::unmount_under(self.dir.path());
    }
}

pub fn http_get(ip: &str, port: u16) -> std::io::Result<String> {
    let addr = format!("{ip}:{port}").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
