//! The real `corral-controlplane` binary as systemd runs it: `READY=1` reaches
//! `$NOTIFY_SOCKET` only once the API serves, its node IPAM (under the controller manager's
//! own identity and RBAC) gives nodes pod CIDRs from `--cluster-cidr`, and bad node IPAM
//! flags stop it with an error naming the flag.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use corral_api::k8s::api::core::v1::Node;
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use corral_api::Client;

/// The control plane process, killed when dropped.
struct Plane(Child);

impl Drop for Plane {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_reaches_the_notify_socket_once_the_api_serves_and_nodes_get_pod_cidrs() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("controlplane.log")).unwrap();
    let _plane = Plane(
        Command::new(env!("CARGO_BIN_EXE_corral-controlplane"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data)
            .args(["--cluster-cidr", "10.61.0.0/16"])
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting corral-controlplane"),
    );
    let mut buf = [0u8; 256];
    let n = tokio::task::spawn_blocking(move || socket.recv(&mut buf).map(|n| buf[..n].to_vec()))
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            panic!(
                "no sd-notify datagram within 30s ({e}); log:\n{}",
                std::fs::read_to_string(dir.path().join("controlplane.log")).unwrap_or_default()
            )
        });
    let text = String::from_utf8_lossy(&n);
    assert!(text.lines().any(|l| l == "READY=1"), "{text:?}");
    // Right after READY=1, without retrying: the admin kubeconfig is written and the API answers.
    let (_, creds) = corral_api::kubeconfig::load(&data.join("admin.kubeconfig"))
        .expect("admin kubeconfig written before READY=1");
    let client = Client::connect_with(&format!("https://127.0.0.1:{port}"), &creds)
        .await
        .expect("the API accepts connections once READY=1 is sent");
    client.version().await.expect("the API answers");

    // The controllers (system:kube-controller-manager, not the admin) patch node specs.
    let node = Node {
        metadata: ObjectMeta {
            name: Some("n1".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    client.create(&node).await.unwrap();
    let start = std::time::Instant::now();
    loop {
        let n: Node = client.get("", "n1").await.unwrap();
        if let Some(cidr) = n.spec.and_then(|s| s.pod_cidr) {
            assert_eq!(cidr, "10.61.0.0/24");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "node n1 never got a pod CIDR"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn bad_node_ipam_flags_stop_the_control_plane_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, want) in [
        (
            vec!["--cluster-cidr", "10.42.0.0/33"],
            "--cluster-cidr \"10.42.0.0/33\": not an IPv4 CIDR",
        ),
        (
            vec!["--cluster-cidr", "10.61.0.0/16", "--node-cidr-mask-size", "12"],
            "--node-cidr-mask-size 12: must be at least the prefix length of --cluster-cidr 10.61.0.0/16",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_corral-controlplane"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(&flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} was accepted");
        assert!(stderr.contains(want), "{flags:?}: {stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "{flags:?}: nothing is created before the flags are checked"
        );
    }
}
