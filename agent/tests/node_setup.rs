//! The agent binary without `--pod-cidr`: it registers, waits for the Node's spec.podCIDR
//! (set here as the control plane's node IPAM does) before it tells systemd READY=1 and runs
//! pods in that range; restarted with a `--pod-cidr` that differs, it stops with a clear error.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use corral_api::k8s::api::core::v1::Node;

fn recv_ready(socket: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pod_cidr_the_agent_waits_for_the_assigned_one_then_reports_ready() {
    skip_unless_runnable!();
    let notify_dir = tempfile::tempdir().unwrap();
    let path = notify_dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut c = Cluster::start_opts(vec![], false, vec![("NOTIFY_SOCKET".into(), path)]).await;

    // Registered (the node is Ready), but no pod CIDR yet: not ready for systemd.
    let node: Node = c.client.get("", &c.name).await.unwrap();
    assert_eq!(node.spec.as_ref().and_then(|s| s.pod_cidr.clone()), None);
    let internal = node.status.unwrap().addresses.unwrap();
    assert_eq!(
        internal[0].address, "127.0.0.1",
        "--node-ip is the InternalIP"
    );
    socket.set_nonblocking(true).unwrap();
    assert_eq!(
        recv_ready(&socket),
        None,
        "READY=1 before the pod CIDR is known"
    );

    let mut node: Node = c.client.get("", &c.name).await.unwrap();
    let spec = node.spec.get_or_insert_with(Default::default);
    spec.pod_cidr = Some(c.cidr.clone());
    spec.pod_cidrs = Some(vec![c.cidr.clone()]);
    c.client.update(&node).await.unwrap();

    socket.set_nonblocking(false).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let got = tokio::task::spawn_blocking(move || recv_ready(&socket))
        .await
        .unwrap();
    assert_eq!(
        got.as_deref().map(str::trim),
        Some("READY=1"),
        "{}",
        c.agent_log()
    );

    c.create_pod("p", "docker.io/corral-test/sleeper:v1", None)
        .await;
    let p = c
        .wait_pod("p", "an IP", |p| {
            p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
        })
        .await;
    let ip = p.status.unwrap().pod_ip.unwrap();
    assert!(
        ip.starts_with(&c.cidr[..c.cidr.len() - 5]),
        "{ip} in {}",
        c.cidr
    );

    // A --pod-cidr other than the Node's: a clear error, and the Node keeps its pod CIDR.
    c.stop_agent();
    c.agent_args = vec!["--pod-cidr".into(), "10.61.250.0/24".into()];
    c.start_agent();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = c.agent.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "agent kept running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
    let log = c.agent_log();
    assert!(
        log.contains(&format!(
            "--pod-cidr 10.61.250.0/24 differs from spec.podCIDR {}",
            c.cidr
        )),
        "{log}"
    );
    let node: Node = c.client.get("", &c.name).await.unwrap();
    assert_eq!(node.spec.unwrap().pod_cidr, Some(c.cidr.clone()));
}
