//! Each plugin's effect, end to end over gRPC against an in-process control plane.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use corral_api::k8s::api::core::v1::{Node, Pod};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tainted_node_is_skipped_unless_the_pod_tolerates_it() {
    let c = cluster().await;
    node(&c.client, "clean", "4", json!({})).await;
    node(&c.client, "gpu", "4", json!({"spec": {"taints": [
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}, "metadata": {"labels": {"gpu": "yes"}}}))
    .await;
    let _s = scheduler(&c.client);
    for i in 0..4 {
        pod(&c.client, &format!("plain-{i}"), "100m", json!({})).await;
    }
    pod(&c.client, "tolerant", "100m", json!({"spec": {
        "nodeSelector": {"gpu": "yes"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}))
    .await;
    for i in 0..4 {
        assert_eq!(bound(&c.client, &format!("plain-{i}")).await, "clean");
    }
    assert_eq!(bound(&c.client, "tolerant").await, "gpu");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_fits_nowhere_stays_pending_with_the_reasons_and_is_placed_when_a_node_arrives()
{
    let c = cluster().await;
    // As the node lifecycle controller taints an unreachable node. Pods tolerate the NoExecute
    // one for a while (DefaultTolerationSeconds), not the NoSchedule one.
    node(
        &c.client,
        "gone",
        "8",
        json!({"spec": {"taints": [
        {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}}),
    )
    .await;
    for n in ["a", "b", "c"] {
        node(&c.client, n, "1", json!({})).await;
    }
    let _s = scheduler(&c.client);
    pod(&c.client, "big", "2", json!({})).await;
    let want = "0/4 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 3 Insufficient cpu.";
    let msg = eventually(20, "a FailedScheduling event", || {
        failed_scheduling_message(&c.client, "big")
    })
    .await;
    assert_eq!(msg, want);
    let cond = eventually(20, "PodScheduled=False", || async {
        let p: Pod = c.client.get("default", "big").await.ok()?;
        p.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(cond.message.as_deref(), Some(want));
    assert_eq!(node_of(&c.client, "big").await, None);
    let ev: Vec<_> = c
        .client
        .list::<corral_api::k8s::api::core::v1::Event>("default", &Default::default())
        .await
        .unwrap()
        .0;
    let ev = ev
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .unwrap();
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(ev.involved_object.kind.as_deref(), Some("Pod"));

    // The cluster changes: a node with room arrives and the parked pod is retried.
    node(&c.client, "roomy", "4", json!({})).await;
    assert_eq!(bound(&c.client, "big").await, "roomy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_one_owner_spread_across_nodes() {
    let c = cluster().await;
    for n in ["a", "b", "c"] {
        node(&c.client, n, "8", json!({})).await;
    }
    // A busy node with pods of another owner must not attract or repel the replicas.
    let _s = scheduler(&c.client);
    let owner = json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1",
        "kind": "ReplicaSet", "name": "web-1", "uid": "3f1c0e2e-0000-4000-8000-000000000001",
        "controller": true}]}});
    for i in 0..6 {
        pod(&c.client, &format!("web-{i}"), "10m", owner.clone()).await;
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        *per_node
            .entry(bound(&c.client, &format!("web-{i}")).await)
            .or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|n| *n == 2), "{per_node:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cordoned_node_gets_nothing_new() {
    let c = cluster().await;
    node(&c.client, "open", "8", json!({})).await;
    node(
        &c.client,
        "cordoned",
        "8",
        json!({"spec": {"unschedulable": true}}),
    )
    .await;
    let _s = scheduler(&c.client);
    for i in 0..5 {
        pod(&c.client, &format!("p-{i}"), "10m", json!({})).await;
    }
    for i in 0..5 {
        assert_eq!(bound(&c.client, &format!("p-{i}")).await, "open");
    }
    // Cordon the last open node: a new pod waits, naming both reasons.
    let mut open: Node = c.client.get("", "open").await.unwrap();
    open.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
    c.client.update(&open).await.unwrap();
    pod(&c.client, "late", "10m", json!({})).await;
    let msg = eventually(20, "FailedScheduling for late", || {
        failed_scheduling_message(&c.client, "late")
    })
    .await;
    assert_eq!(
        msg,
        "0/2 nodes are available: 2 node(s) were unschedulable."
    );
    // Uncordoning is a cluster change: the pod is placed without any busy retrying.
    let mut open: Node = c.client.get("", "open").await.unwrap();
    open.spec.get_or_insert_with(Default::default).unschedulable = Some(false);
    c.client.update(&open).await.unwrap();
    assert_eq!(bound(&c.client, "late").await, "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_affinity_match_fields_pins_a_pod_to_its_node_like_a_daemonset() {
    let c = cluster().await;
    for n in ["n1", "n2", "n3"] {
        node(
            &c.client,
            n,
            "8",
            json!({"metadata": {"labels": {"disk": if n == "n3" { "ssd" } else { "hdd" }}}}),
        )
        .await;
    }
    let _s = scheduler(&c.client);
    for n in ["n1", "n2"] {
        pod(
            &c.client,
            &format!("ds-{n}"),
            "10m",
            json!({"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}]}}}}}),
        )
        .await;
    }
    pod(
        &c.client,
        "fast",
        "10m",
        json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
    )
    .await;
    pod(
        &c.client,
        "prefers",
        "10m",
        json!({"spec": {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference":
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}}),
    )
    .await;
    assert_eq!(bound(&c.client, "ds-n1").await, "n1");
    assert_eq!(bound(&c.client, "ds-n2").await, "n2");
    assert_eq!(bound(&c.client, "fast").await, "n3");
    assert_eq!(bound(&c.client, "prefers").await, "n3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ports_and_required_anti_affinity_keep_pods_apart() {
    let c = cluster().await;
    for n in ["a", "b"] {
        node(&c.client, n, "8", json!({})).await;
    }
    let _s = scheduler(&c.client);
    let port = json!({"spec": {"containers": [{"name": "c", "image": "nginx",
        "ports": [{"containerPort": 80, "hostPort": 8080}]}]}});
    pod(&c.client, "port-1", "10m", port.clone()).await;
    pod(&c.client, "port-2", "10m", port.clone()).await;
    let n1 = bound(&c.client, "port-1").await;
    let n2 = bound(&c.client, "port-2").await;
    assert_ne!(n1, n2);
    pod(&c.client, "port-3", "10m", port).await;
    let msg = eventually(20, "FailedScheduling for port-3", || {
        failed_scheduling_message(&c.client, "port-3")
    })
    .await;
    assert_eq!(
        msg,
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
    );

    let apart = json!({"metadata": {"labels": {"app": "db"}}, "spec": {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "db"}},
            "topologyKey": "kubernetes.io/hostname"}]}}}});
    for i in 0..3 {
        pod(&c.client, &format!("db-{i}"), "10m", apart.clone()).await;
    }
    let placed = eventually(20, "two db pods bound", || async {
        let mut nodes = Vec::new();
        for i in 0..3 {
            if let Some(n) = node_of(&c.client, &format!("db-{i}")).await {
                nodes.push(n);
            }
        }
        (nodes.len() == 2).then_some(nodes)
    })
    .await;
    assert_ne!(placed[0], placed[1]);
    let waiting = eventually(20, "the third db pod rejected", || async {
        for i in 0..3 {
            let name = format!("db-{i}");
            if node_of(&c.client, &name).await.is_none() {
                return failed_scheduling_message(&c.client, &name).await;
            }
        }
        None
    })
    .await;
    assert_eq!(
        waiting,
        "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules."
    );
    // Still unbound a moment later: nothing retries it in a loop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bound_count = {
        let (pods, _) = c
            .client
            .list::<Pod>("default", &Default::default())
            .await
            .unwrap();
        pods.iter()
            .filter(|p| p.metadata.name.as_deref().unwrap().starts_with("db-"))
            .filter(|p| p.spec.as_ref().unwrap().node_name.is_some())
            .count()
    };
    assert_eq!(bound_count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pod_frees_room_for_a_waiting_one() {
    let c = cluster().await;
    node(&c.client, "only", "1", json!({})).await;
    let _s = scheduler(&c.client);
    pod(&c.client, "first", "800m", json!({})).await;
    assert_eq!(bound(&c.client, "first").await, "only");
    pod(&c.client, "second", "800m", json!({})).await;
    let msg = eventually(20, "FailedScheduling for second", || {
        failed_scheduling_message(&c.client, "second")
    })
    .await;
    assert_eq!(msg, "0/1 nodes are available: 1 Insufficient cpu.");
    // A bound pod is deleted gracefully; it holds its resources until the node confirms.
    c.client
        .delete::<Pod>("default", "first", corral_api::DeleteOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(node_of(&c.client, "second").await, None);
    c.client
        .delete::<Pod>("default", "first", corral_api::DeleteOptions::grace(0))
        .await
        .unwrap();
    assert_eq!(bound(&c.client, "second").await, "only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_pod_affinity_waits_for_a_matching_pod_and_joins_its_node() {
    let c = cluster().await;
    for n in ["a", "b", "c"] {
        node(&c.client, n, "8", json!({})).await;
    }
    let _s = scheduler(&c.client);
    let near_cache = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "cache"}},
            "topologyKey": "kubernetes.io/hostname"}]}}}});
    pod(&c.client, "web", "10m", near_cache).await;
    let msg = eventually(20, "FailedScheduling for web", || {
        failed_scheduling_message(&c.client, "web")
    })
    .await;
    assert_eq!(
        msg,
        "0/3 nodes are available: 3 node(s) didn't match pod affinity rules."
    );
    // The cache pod arriving is the event that brings the parked web pod back.
    pod(
        &c.client,
        "cache",
        "10m",
        json!({"metadata": {"labels": {"app": "cache"}}}),
    )
    .await;
    let cache_node = bound(&c.client, "cache").await;
    assert_eq!(bound(&c.client, "web").await, cache_node);
}
