//! The agent's pod network task against an in-process control plane, inside a network
//! namespace of its own (root): with a node's own credentials it reads every Node, publishes
//! its VTEP MAC, routes to the other node over VXLAN, follows the node's deletion, and writes
//! its egress chains. Addresses in 10.62.0.0/16; the namespace has `podnet` in its name.

use std::process::Command;
use std::time::{Duration, Instant};

use corral_agent::podnet::{run, PodNetConfig};
use corral_api::Client;
use corral_podnet::{Mode, VTEP_MAC_ANNOTATION};
use k8s_openapi::api::core::v1::Node;

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn node(name: &str, cidr: &str, addr: &str, mac: Option<&str>) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "annotations": mac.map(|m| serde_json::json!({VTEP_MAC_ANNOTATION: m})),
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": addr}]},
    }))
    .unwrap()
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_routes_to_other_nodes_over_vxlan_and_publishes_its_vtep_mac() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(std::env::var_os("CI").is_none(), "needs root in CI");
        eprintln!("SKIPPED: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cp = corral_controlplane::start(corral_controlplane::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        controllers: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = cp.client().await.unwrap();
    for n in [
        node("podnet-a", "10.62.1.0/24", "10.62.9.10", None),
        node(
            "podnet-b",
            "10.62.2.0/24",
            "10.62.9.11",
            Some("0a:00:00:00:00:0b"),
        ),
    ] {
        let created = admin.create(&n).await.unwrap();
        let mut with_status = created.clone();
        with_status.status = n.status.clone();
        admin.update_status(&with_status).await.unwrap();
    }
    let ns = Netns(format!("podnet-agent-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    // No dummy driver in every kernel: a veth pair inside the namespace stands in for a NIC.
    ip(&[
        "-n", &ns.0, "link", "add", "ext0", "type", "veth", "peer", "name", "ext1",
    ]);
    ip(&["-n", &ns.0, "link", "set", "ext1", "up"]);
    ip(&["-n", &ns.0, "addr", "add", "10.62.9.10/24", "dev", "ext0"]);
    ip(&["-n", &ns.0, "link", "set", "ext0", "up"]);
    // The node's own identity: the Node authorizer must let it read every Node and annotate
    // its own. Connected here, so the channel lives in the host's namespace.
    let creds = cp
        .credentials_for("system:node:podnet-a", &["system:nodes"])
        .unwrap();
    let client = Client::connect_with(&cp.url(), &creds).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let path = format!("/run/netns/{}", ns.0);
    let task = std::thread::spawn(move || {
        let f = std::fs::File::open(path).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let cfg = PodNetConfig {
                node_name: "podnet-a".into(),
                mode: Mode::Vxlan,
                cluster_cidr: "10.62.0.0/16".parse().unwrap(),
                node_ip: Some("10.62.9.10".parse().unwrap()),
                resync: Duration::from_secs(30),
            };
            tokio::select! {
                _ = run(client, cfg) => {}
                _ = stopped => {}
            }
        });
    });
    let routes = || ip(&["-n", &ns.0, "route", "show", "proto", "77"]);
    eventually("the VXLAN route to node b", || {
        routes()
            .contains("10.62.2.0/24 via 10.62.2.0 dev corral.1 onlink")
            .then_some(())
    })
    .await;
    let mac = loop {
        let a: Node = admin.get("", "podnet-a").await.unwrap();
        if let Some(m) = a
            .metadata
            .annotations
            .and_then(|a| a.get(VTEP_MAC_ANNOTATION).cloned())
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let link = ip(&["-n", &ns.0, "link", "show", "corral.1"]);
    assert!(link.contains(&mac), "published {mac}, device: {link}");
    let nat = Command::new("ip")
        .args(["netns", "exec", &ns.0, "iptables-save", "-t", "nat"])
        .output()
        .unwrap();
    let nat = String::from_utf8_lossy(&nat.stdout).into_owned();
    assert!(
        nat.contains("-A CORRAL-POD-EGRESS -s 10.62.1.0/24 ! -d 10.62.0.0/16"),
        "{nat}"
    );
    admin
        .delete::<Node>("", "podnet-b", Default::default())
        .await
        .unwrap();
    eventually("node b's route to go", || {
        routes().trim().is_empty().then_some(())
    })
    .await;
    let _ = stop.send(());
    task.join().unwrap();
    cp.shutdown().await;
}
