//! corral-proxy end to end: the real binary in a node netns, pods in their own netns on the
//! node's bridge, the control plane (with its Endpoints controller) in-process.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use corral_api::k8s::api::core::v1::Endpoints;
use corral_api::k8s::api::networking::v1::Ingress;
use corral_proxy::loadgen::{get_once, Target};

const PODS: &[&str] = &["pod-a", "pod-b", "pod-c"];
const INGRESS_PORT: u16 = 80;

/// Sends `n` requests on fresh connections from the node netns; the answering pod names.
async fn names(rig: &Rig, target: &Target, n: usize) -> Vec<String> {
    let t = target.clone();
    rig.node_rt
        .run(async move {
            let mut out = vec![];
            for _ in 0..n {
                match get_once(&t, Duration::from_secs(2)).await {
                    Ok((200, body)) => out.push(body),
                    Ok((status, body)) => out.push(format!("{status} {body}")),
                    Err(e) => out.push(format!("error: {e}")),
                }
            }
            out
        })
        .await
}

async fn reaches_all(rig: &Rig, target: &Target, want: &[&str], what: &str) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let mut seen = BTreeSet::new();
    let mut last = vec![];
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen != want {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: saw {seen:?}, last answers {last:?}\n{}",
            rig.iptables_save()
        );
        last = names(rig, target, 6).await;
        for n in last.clone() {
            if want.contains(&n) {
                seen.insert(n);
            }
        }
    }
}

fn target(addr: SocketAddr, host: &str) -> Target {
    Target {
        addr,
        host: host.into(),
        path: "/".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_node_port_and_ingress_reach_ready_pods_only() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the corral-proxy end-to-end test: {why}");
        return;
    }
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let mut rig = Rig::new(PODS);
    let d = deploy(&mut rig).await;
    let (client, cluster_ip, node_port) = (d.client.clone(), d.cluster_ip, d.node_port);
    rig.start_proxy(INGRESS_PORT);

    let via_cluster_ip = target(SocketAddr::from((cluster_ip, 80)), "mi-app-svc");
    let via_node_port = target(SocketAddr::from((rig.node_ip, node_port)), "x");
    let via_ingress = target(SocketAddr::from((rig.node_ip, INGRESS_PORT)), "mi-app.com");
    reaches_all(
        &rig,
        &via_cluster_ip,
        PODS,
        "the ClusterIP reaching all pods",
    )
    .await;
    reaches_all(&rig, &via_node_port, PODS, "the NodePort reaching all pods").await;
    reaches_all(&rig, &via_ingress, PODS, "the Ingress reaching all pods").await;
    let unknown = names(&rig, &target(via_ingress.addr, "otro.com"), 1).await;
    assert!(unknown[0].starts_with("404"), "{unknown:?}");

    // The Ingress reports the node address.
    let node_ip = rig.node_ip.to_string();
    eventually(10, "ingress status with the node address", || {
        let client = client.clone();
        let node_ip = node_ip.clone();
        async move {
            let ing = client
                .get::<Ingress>("default", "mi-app-ingress")
                .await
                .ok()?;
            let ips: Vec<String> = ing
                .status?
                .load_balancer?
                .ingress?
                .into_iter()
                .filter_map(|i| i.ip)
                .collect();
            (ips == [node_ip]).then_some(())
        }
    })
    .await;

    // A pod leaving the endpoints gets no new connection within a second.
    let c = &rig.pods[2];
    let changed_at = Instant::now();
    set_ready(&client, &c.name, &c.ip.to_string(), false).await;
    let mut last_c = None;
    let mut clean_run = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while clean_run < 30 {
        assert!(Instant::now() < deadline, "pod-c kept receiving traffic");
        for n in names(&rig, &via_cluster_ip, 5).await {
            if n == "pod-c" {
                last_c = Some(Instant::now());
                clean_run = 0;
            } else {
                assert!(n == "pod-a" || n == "pod-b", "unexpected answer {n}");
                clean_run += 1;
            }
        }
    }
    if let Some(t) = last_c {
        let lag = t - changed_at;
        assert!(
            lag < Duration::from_secs(1),
            "pod-c answered {lag:?} after leaving"
        );
    }
    let ep = client
        .get::<Endpoints>("default", "mi-app-svc")
        .await
        .unwrap();
    assert_eq!(
        ep.subsets.unwrap()[0].not_ready_addresses.as_ref().unwrap()[0].ip,
        c.ip.to_string()
    );

    // No ready endpoint: the Ingress answers 503 and the ClusterIP refuses at once.
    for p in &rig.pods[..2] {
        set_ready(&client, &p.name, &p.ip.to_string(), false).await;
    }
    eventually(5, "503 from the ingress", || {
        let fut = names(&rig, &via_ingress, 1);
        async move { fut.await[0].starts_with("503").then_some(()) }
    })
    .await;
    eventually(5, "the ClusterIP refusing connections", || {
        let fut = names(&rig, &via_cluster_ip, 1);
        async move { fut.await[0].starts_with("error").then_some(()) }
    })
    .await;

    // A clean stop removes every rule; a restart rebuilds them; a crash and a restart leave
    // no duplicates.
    for p in &rig.pods {
        set_ready(&client, &p.name, &p.ip.to_string(), true).await;
    }
    reaches_all(&rig, &via_cluster_ip, PODS, "all pods back").await;
    assert!(rig.stop_proxy(), "corral-proxy exits cleanly on SIGTERM");
    let after_stop = rig.iptables_save();
    assert!(!after_stop.contains("CORRAL-"), "{after_stop}");
    rig.start_proxy(INGRESS_PORT);
    reaches_all(&rig, &via_cluster_ip, PODS, "rules rebuilt after restart").await;
    rig.kill_proxy();
    rig.start_proxy(INGRESS_PORT);
    reaches_all(
        &rig,
        &via_ingress,
        PODS,
        "ingress after a crash and restart",
    )
    .await;
    let save = rig.iptables_save();
    for chain in ["PREROUTING", "OUTPUT", "POSTROUTING", "INPUT", "FORWARD"] {
        let jumps = save
            .lines()
            .filter(|l| l.starts_with(&format!("-A {chain} ")) && l.contains("-j CORRAL-"))
            .count();
        let want = if chain == "OUTPUT" { 2 } else { 1 };
        assert_eq!(jumps, want, "jumps from {chain}\n{save}");
    }
    assert_eq!(
        save.lines()
            .filter(|l| l.contains("--to-destination"))
            .count(),
        3,
        "{save}"
    );
    assert!(rig.stop_proxy());
    assert!(!rig.iptables_save().contains("CORRAL-"));
}
