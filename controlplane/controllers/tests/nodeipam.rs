//! Node IPAM over the real API server: nodes without a pod CIDR get distinct subnets of the
//! cluster CIDR, a node created with one keeps it, and a deleted node's subnet is reused.

mod common;

use std::time::{Duration, Instant};

use common::*;
use corral_api::k8s::api::core::v1::{Node, NodeSpec};
use corral_api::DeleteOptions;
use corral_controllers::nodeipam::plan::Range;

const DEADLINE: Duration = Duration::from_secs(20);

fn config() -> corral_controllers::Config {
    corral_controllers::Config {
        cluster_cidr: Some(Range::new("10.61.0.0/16", 24).unwrap()),
        ..Default::default()
    }
}

async fn create_node(c: &Cluster, name: &str, pod_cidr: Option<&str>) {
    let node = Node {
        metadata: meta("", name),
        spec: Some(NodeSpec {
            pod_cidr: pod_cidr.map(String::from),
            pod_cidrs: pod_cidr.map(|p| vec![p.to_string()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    c.client.create(&node).await.unwrap();
}

/// Waits for the node's pod CIDR; returns (podCIDR, podCIDRs).
async fn pod_cidr(c: &Cluster, name: &str) -> (String, Vec<String>) {
    let start = Instant::now();
    loop {
        let n: Node = c.client.get("", name).await.unwrap();
        let spec = n.spec.unwrap_or_default();
        if let Some(cidr) = spec.pod_cidr {
            return (cidr, spec.pod_cidrs.unwrap_or_default());
        }
        assert!(
            start.elapsed() < DEADLINE,
            "node {name} never got a pod CIDR"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_subnets_and_a_deleted_nodes_subnet_is_reused() {
    let c = start(config()).await;
    create_node(&c, "kept", Some("10.61.0.0/24")).await;
    create_node(&c, "a", None).await;
    create_node(&c, "b", None).await;
    let a = pod_cidr(&c, "a").await;
    let b = pod_cidr(&c, "b").await;
    assert_eq!(
        pod_cidr(&c, "kept").await.0,
        "10.61.0.0/24",
        "a node's own pod CIDR stays"
    );
    assert_ne!(a.0, b.0);
    for (cidr, cidrs) in [&a, &b] {
        assert!(
            ["10.61.1.0/24", "10.61.2.0/24"].contains(&cidr.as_str()),
            "{cidr}"
        );
        assert_eq!(
            cidrs,
            std::slice::from_ref(cidr),
            "podCIDRs holds the podCIDR"
        );
    }

    c.client
        .delete::<Node>("", "a", DeleteOptions::default())
        .await
        .unwrap();
    // Deleted means gone from the API: only then is the subnet free (derived from the Nodes).
    let start = Instant::now();
    while c.client.get_opt::<Node>("", "a").await.unwrap().is_some() {
        assert!(start.elapsed() < DEADLINE, "node a is never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    create_node(&c, "c", None).await;
    assert_eq!(
        pod_cidr(&c, "c").await.0,
        a.0,
        "the lowest free subnet is the deleted node's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_waits_while_the_range_is_full_and_gets_the_subnet_freed() {
    let c = start(corral_controllers::Config {
        cluster_cidr: Some(Range::new("10.61.8.0/23", 24).unwrap()),
        ..Default::default()
    })
    .await;
    create_node(&c, "a", None).await;
    create_node(&c, "b", None).await;
    let (a, b) = (pod_cidr(&c, "a").await.0, pod_cidr(&c, "b").await.0);
    create_node(&c, "c", None).await;
    // The range is full: c waits (its Warning event says why) until a subnet is freed.
    let start = Instant::now();
    loop {
        let (events, _) = c
            .client
            .list::<corral_api::k8s::api::core::v1::Event>("default", &Default::default())
            .await
            .unwrap();
        if events
            .iter()
            .any(|e| e.reason.as_deref() == Some("CIDRNotAvailable"))
        {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "no CIDRNotAvailable event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n: Node = c.client.get("", "c").await.unwrap();
    assert_eq!(n.spec.and_then(|s| s.pod_cidr), None);
    c.client
        .delete::<Node>("", "b", DeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(pod_cidr(&c, "c").await.0, b);
    assert_ne!(a, b);
}
