//! End to end: the real `corral-agent` binary against a real containerd (private root and
//! socket), runc and the CNI plugins, with the control plane in-process (see
//! `common/cluster.rs`).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cluster::{http_get, Cluster, DEADLINE};
use corral_agent::runtime::containerd::Containerd;
use corral_agent::runtime::ContainerRuntime;
use corral_api::client::DeleteOptions;
use corral_api::k8s::api::core::v1::{Container, Node, Pod, PodSpec};

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn app_status(p: &Pod) -> Option<&corral_api::k8s::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn waiting_reason(p: &Pod) -> Option<String> {
    app_status(p)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runs_answers_http_and_delete_releases_everything() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    c.wait_node_ready().await;
    let node = c.client.get::<Node>("", &c.name).await.unwrap();
    let labels = node.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], c.name);
    assert!(node
        .status
        .unwrap()
        .capacity
        .unwrap()
        .contains_key("memory"));

    c.create_pod("web", "fedek3/workshop-uns:v0.2.0", None)
        .await;
    let pod = c
        .wait_pod("web", "Running with an IP", |p| {
            phase(p) == "Running" && p.status.as_ref().unwrap().pod_ip.is_some()
        })
        .await;
    let st = pod.status.clone().unwrap();
    let pod_ip = st.pod_ip.clone().unwrap();
    assert!(
        pod_ip.starts_with(&c.cidr[..c.cidr.len() - 5]),
        "{pod_ip} in {}",
        c.cidr
    );
    let conds = st.conditions.unwrap();
    for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert!(
            conds.iter().any(|x| x.type_ == t && x.status == "True"),
            "{t}: {conds:?}"
        );
    }
    assert!(st.start_time.is_some());
    assert_eq!(app_status(&pod).unwrap().restart_count, 0);

    // The app answers on the pod IP with its hostname (= pod name) and version.
    let start = Instant::now();
    let body = loop {
        match http_get(&pod_ip, 80) {
            Ok(b) if b.contains("200 OK") => break b,
            other => {
                assert!(
                    start.elapsed() < DEADLINE,
                    "no HTTP answer from {pod_ip}: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(body.contains("Hello from web"), "{body}");
    assert!(body.contains("version: v0.2.0"), "{body}");

    let uid = pod.metadata.uid.clone().unwrap();
    let rt = c.runtime().await;
    assert_eq!(rt.list().await.unwrap().len(), 1);
    let netns = PathBuf::from(format!("/run/netns/corral-{uid}"));
    assert!(netns.exists());
    let ipam = c.agent_dir().join("cni/ipam/corral").join(&pod_ip);
    assert!(ipam.exists(), "host-local reservation {}", ipam.display());

    // Graceful delete: the agent stops the container and confirms; the pod disappears.
    c.client
        .delete::<Pod>("default", "web", DeleteOptions::default())
        .await
        .unwrap();
    let start = Instant::now();
    while c
        .client
        .get_opt::<Pod>("default", "web")
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            start.elapsed() < DEADLINE,
            "pod never deleted\n{}",
            c.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rt.list().await.unwrap().is_empty(), "containers left");
    assert!(!netns.exists(), "netns left");
    assert!(!ipam.exists(), "IP still reserved");
    assert!(
        !c.agent_dir().join("pods").join(&uid).exists(),
        "pod dir left"
    );
    let snaps = snapshot_keys(&rt).await;
    assert!(
        snaps.iter().all(|k| !k.contains(&uid)),
        "snapshots left: {snaps:?}"
    );
    let cgroup = PathBuf::from(format!("/sys/fs/cgroup/memory/corral/pod{uid}"));
    let start = Instant::now();
    while cgroup.exists() {
        assert!(
            start.elapsed() < DEADLINE,
            "pod cgroup left: {}",
            cgroup.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn snapshot_keys(rt: &Containerd) -> Vec<String> {
    use containerd_client::services::v1::snapshots as ss;
    let mut client = ss::snapshots_client::SnapshotsClient::new(rt.channel());
    let mut req = tonic::Request::new(ss::ListSnapshotsRequest {
        snapshotter: "overlayfs".into(),
        filters: vec![],
    });
    req.metadata_mut()
        .insert("containerd-namespace", "corral".parse().unwrap());
    let mut stream = client.list(req).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(Ok(r)) = futures::StreamExt::next(&mut stream).await {
        out.extend(r.info.into_iter().map(|i| i.name));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_container_reaches_crash_loop_back_off_with_growing_restarts() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    c.create_pod("crash", "corral-test/crasher:v1", None).await;
    let p = c
        .wait_pod("crash", "CrashLoopBackOff after 2 restarts", |p| {
            waiting_reason(p).as_deref() == Some("CrashLoopBackOff")
                && app_status(p).is_some_and(|s| s.restart_count >= 2)
        })
        .await;
    let s = app_status(&p).unwrap();
    let last = s.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.exit_code, 3);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert_eq!(phase(&p), "Running");
    let ready = p
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready.status, "False");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_pod_with_restart_never_succeeds() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    let mut p = Pod::default();
    p.metadata.name = Some("once".into());
    p.metadata.namespace = Some("default".into());
    p.spec = Some(PodSpec {
        restart_policy: Some("Never".into()),
        containers: vec![Container {
            name: "app".into(),
            image: Some("corral-test/sleeper:v1".into()),
            command: Some(vec!["sh".into(), "-c".into(), "echo done; exit 0".into()]),
            ..Default::default()
        }],
        ..Default::default()
    });
    let p = c.client.create(&p).await.unwrap();
    c.client
        .bind(
            "default",
            "once",
            p.metadata.uid.as_deref().unwrap(),
            &c.name,
        )
        .await
        .unwrap();
    let p = c
        .wait_pod("once", "Succeeded", |p| phase(p) == "Succeeded")
        .await;
    let t = app_status(&p)
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_image_gives_err_image_pull_then_image_pull_back_off() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    c.create_pod("ghost", "corral-test/does-not-exist:v9", None)
        .await;
    let p = c
        .wait_pod("ghost", "ErrImagePull", |p| {
            waiting_reason(p).as_deref() == Some("ErrImagePull")
        })
        .await;
    let msg = app_status(&p)
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .waiting
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(msg.contains("corral-test/does-not-exist:v9"), "{msg}");
    assert!(msg.contains("allowed registries"), "{msg}");
    c.wait_pod("ghost", "ImagePullBackOff", |p| {
        waiting_reason(p).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    assert_eq!(phase(&p), "Pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restart_keeps_pods_running_with_restart_count_unchanged() {
    skip_unless_runnable!();
    let mut c = Cluster::start().await;
    c.create_pod("keep", "corral-test/sleeper:v1", None).await;
    let before = c
        .wait_pod("keep", "Running", |p| phase(p) == "Running")
        .await;
    let rt = c.runtime().await;
    let ids: Vec<String> = rt.list().await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 1);

    // An orphan: a container whose pod does not exist must be removed by the restarted agent.
    let orphan = corral_agent::runtime::CreateContainer {
        id: "orphan-app-0".into(),
        image: "corral-test/sleeper:v1".into(),
        spec: serde_json::json!({
            "ociVersion": "1.0.2-dev",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["sleep", "1000"], "cwd": "/"},
            "root": {"path": "rootfs"},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
        }),
        labels: [("corral.pod.uid".to_string(), "no-such-pod".to_string())].into(),
        log_path: c.dir.path().join("orphan.log"),
    };

    c.stop_agent();
    rt.create(&orphan).await.unwrap();
    c.start_agent();
    let start = Instant::now();
    loop {
        let now: Vec<String> = rt.list().await.unwrap().into_iter().map(|i| i.id).collect();
        if now == ids {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "orphan not removed: {now:?}\n{}",
            c.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give the new agent time to post status; it must not have restarted anything.
    let log_marker = "adopted running container";
    let start = Instant::now();
    while !c.agent_log().contains(log_marker) {
        assert!(
            start.elapsed() < DEADLINE,
            "no adoption logged\n{}",
            c.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = c
        .wait_pod("keep", "Running", |p| phase(p) == "Running")
        .await;
    assert_eq!(app_status(&after).unwrap().restart_count, 0);
    assert_eq!(
        app_status(&after).unwrap().container_id,
        app_status(&before).unwrap().container_id
    );
    assert_eq!(rt.list().await.unwrap().len(), 1);
}

/// A `docker-registry` on loopback with its storage in a temp dir; killed on drop.
struct Registry {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Option<Self> {
        if !std::path::Path::new("/usr/bin/docker-registry").exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < DEADLINE,
                "registry did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            addr,
            _dir: dir,
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pulled_from_a_local_registry_runs() {
    skip_unless_runnable!();
    let Some(reg) = Registry::start() else {
        eprintln!("SKIPPED: docker-registry is not installed");
        return;
    };
    let image = format!("{}/corral/pulled:v1", reg.addr);
    let pushed = std::process::Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!(
            "oci-archive:{}",
            common::image_archive("docker.io/fedek3/workshop-uns:v0.3.0").display()
        ))
        .arg(format!("docker://{image}"))
        .output()
        .expect("skopeo runs");
    assert!(
        pushed.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );

    let c = Cluster::start_with(vec!["--insecure-registry".into(), reg.addr.clone()]).await;
    c.create_pod("pulled", &image, None).await;
    let p = c
        .wait_pod("pulled", "Running", |p| phase(p) == "Running")
        .await;
    let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let start = Instant::now();
    loop {
        match http_get(&ip, 80) {
            Ok(b) if b.contains("version: v0.3.0") => break,
            other => {
                assert!(start.elapsed() < DEADLINE, "no answer from {ip}: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(app_status(&p).unwrap().image_id.starts_with("sha256:"));
}

async fn read_logs(c: &Cluster, req: corral_proto::LogsRequest) -> Result<String, tonic::Status> {
    let mut stream = c.client.raw().logs(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        out.extend(chunk.data);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_travel_through_the_agent_tunnel_with_tail_previous_and_follow() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    c.create_pod(
        "talk",
        "corral-test/sleeper:v1",
        Some(vec!["sh", "-c", "echo one; echo two; echo three; exit 1"]),
    )
    .await;
    c.wait_pod("talk", "a restart", |p| {
        app_status(p).is_some_and(|s| s.restart_count >= 1)
    })
    .await;
    let req = |previous: bool, tail: i64| corral_proto::LogsRequest {
        namespace: "default".into(),
        pod: "talk".into(),
        container: String::new(),
        follow: false,
        previous,
        tail_lines: tail,
        ..Default::default()
    };
    // The tunnel may still be connecting right after start.
    let start = Instant::now();
    let all = loop {
        match read_logs(&c, req(false, -1)).await {
            Ok(s) if s.contains("three") => break s,
            other => {
                assert!(
                    start.elapsed() < DEADLINE,
                    "logs: {other:?}\n{}",
                    c.agent_log()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(all, "one\ntwo\nthree\n");
    assert_eq!(read_logs(&c, req(false, 1)).await.unwrap(), "three\n");
    assert_eq!(read_logs(&c, req(true, 2)).await.unwrap(), "two\nthree\n");
    let err = read_logs(
        &c,
        corral_proto::LogsRequest {
            container: "nope".into(),
            ..req(false, -1)
        },
    )
    .await
    .unwrap_err();
    assert!(err.message().contains("nope"), "{err:?}");

    // Follow: new output arrives on an open stream.
    c.create_pod(
        "ticker",
        "corral-test/sleeper:v1",
        Some(vec![
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        ]),
    )
    .await;
    c.wait_pod("ticker", "Running", |p| phase(p) == "Running")
        .await;
    let mut stream = c
        .client
        .raw()
        .logs(corral_proto::LogsRequest {
            pod: "ticker".into(),
            follow: true,
            ..req(false, -1)
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = String::new();
    let followed = tokio::time::timeout(DEADLINE, async {
        while let Some(chunk) = stream.message().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk.data));
            if seen.contains("tick 8") {
                return;
            }
        }
    })
    .await;
    assert!(followed.is_ok(), "follow saw only {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_breach_is_reported_as_oom_killed() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    let mut p = Pod::default();
    p.metadata.name = Some("hog".into());
    p.metadata.namespace = Some("default".into());
    p.spec = Some(PodSpec {
        restart_policy: Some("Never".into()),
        containers: vec![Container {
            name: "app".into(),
            image: Some("corral-test/sleeper:v1".into()),
            // tail keeps everything until a newline, which /dev/zero never sends.
            command: Some(vec!["tail".into(), "/dev/zero".into()]),
            resources: Some(corral_api::k8s::api::core::v1::ResourceRequirements {
                limits: Some(
                    [(
                        "memory".to_string(),
                        corral_api::k8s::apimachinery::pkg::api::resource::Quantity("16Mi".into()),
                    )]
                    .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    let p = c.client.create(&p).await.unwrap();
    c.client
        .bind(
            "default",
            "hog",
            p.metadata.uid.as_deref().unwrap(),
            &c.name,
        )
        .await
        .unwrap();
    let p = c.wait_pod("hog", "Failed", |p| phase(p) == "Failed").await;
    let t = app_status(&p)
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));
}
