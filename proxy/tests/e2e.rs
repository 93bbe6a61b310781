//! corral-proxy end to end: the real binary in a node netns, pods in their own netns on the
//! node's bridge, the control plane (with its Endpoints controller) in-process.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use corral_api::k8s::api::core::v1::{
    Container, Endpoints, Node, NodeAddress, NodeCondition, NodeStatus, Pod, PodCondition, PodSpec,
    PodStatus, Service, ServicePort, ServiceSpec,
};
use corral_api::k8s::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use corral_api::k8s::apimachinery::pkg::util::intstr::IntOrString;
use corral_api::Client;
use corral_proxy::loadgen::{get_once, Target};

const PODS: &[&str] = &["pod-a", "pod-b", "pod-c"];
const INGRESS_PORT: u16 = 80;

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        ..Default::default()
    }
}

fn labels() -> std::collections::BTreeMap<String, String> {
    [("app".to_string(), "mi-app".to_string())]
        .into_iter()
        .collect()
}

async fn set_ready(client: &Client, name: &str, ip: &str, ready: bool) {
    let mut p = client.get::<Pod>("default", name).await.unwrap();
    p.metadata.resource_version = None;
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some(ip.into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    client.update_status(&p).await.unwrap();
}

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
    let dir = tempfile::tempdir().unwrap();
    let cp = corral_controlplane::start(corral_controlplane::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        service_cidr: rig.service_cidr.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = Client::connect(&cp.url()).await.unwrap();
    rig.start_relay(cp.addr);

    // The node (Ready, with its InternalIP) and the pods, Ready with their IPs.
    let node = client
        .create(&Node {
            metadata: ObjectMeta {
                name: Some("node-1".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
    let mut node = node;
    node.status = Some(NodeStatus {
        addresses: Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: rig.node_ip.to_string(),
        }]),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    node.metadata.resource_version = None;
    client.update_status(&node).await.unwrap();
    for p in &rig.pods {
        let mut m = meta(&p.name);
        m.labels = Some(labels());
        client
            .create(&Pod {
                metadata: m,
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("fedek3/workshop-uns:v0.2.0".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        set_ready(&client, &p.name, &p.ip.to_string(), true).await;
    }
    let svc = client
        .create(&Service {
            metadata: meta("mi-app-svc"),
            spec: Some(ServiceSpec {
                type_: Some("NodePort".into()),
                selector: Some(labels()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::Int(80)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let spec = svc.spec.unwrap();
    let cluster_ip: std::net::Ipv4Addr = spec.cluster_ip.unwrap().parse().unwrap();
    let node_port = spec.ports.unwrap()[0].node_port.unwrap() as u16;
    client
        .create(&Ingress {
            metadata: meta("mi-app-ingress"),
            spec: Some(IngressSpec {
                rules: Some(vec![IngressRule {
                    host: Some("mi-app.com".into()),
                    http: Some(HTTPIngressRuleValue {
                        paths: vec![HTTPIngressPath {
                            path: Some("/".into()),
                            path_type: "Prefix".into(),
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: "mi-app-svc".into(),
                                    port: Some(ServiceBackendPort {
                                        number: Some(80),
                                        ..Default::default()
                                    }),
                                }),
                                ..Default::default()
                            },
                        }],
                    }),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
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
