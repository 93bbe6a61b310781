//! Node lifecycle over the real API server: a node that stops renewing its Lease is marked
//! Unknown and tainted, its pods are evicted and replaced elsewhere, daemon pods stay.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use corral_api::k8s::api::apps::v1::{DaemonSet, DaemonSetSpec, ReplicaSet, ReplicaSetSpec};
use corral_api::k8s::api::core::v1::{Container, Node, Pod, PodSpec, PodTemplateSpec};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector;
use corral_api::DeleteOptions;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn template(app: &str) -> PodTemplateSpec {
    let mut tm = meta("", "");
    tm.name = None;
    tm.labels = Some(labels(&[("app", app)]));
    PodTemplateSpec {
        metadata: Some(tm),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("app:v1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(&[("app", app)])),
        ..Default::default()
    }
}

fn fast() -> corral_controllers::Config {
    corral_controllers::Config {
        node_monitor_grace: Duration::from_secs(1),
        pod_eviction_timeout: Duration::from_secs(1),
        ..Default::default()
    }
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref()?.node_name.as_deref()
}

fn running_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_dead_node_are_replaced_on_live_nodes_and_daemon_pods_stay() {
    let c = start(fast()).await;
    c.add_node("node-1", &[]).await;
    c.add_node("node-2", &[]).await;
    let rs = ReplicaSet {
        metadata: meta("default", "web"),
        spec: Some(ReplicaSetSpec {
            replicas: Some(4),
            selector: selector("web"),
            template: Some(template("web")),
            min_ready_seconds: None,
        }),
        status: None,
    };
    c.client.create(&rs).await.unwrap();
    let ds = DaemonSet {
        metadata: meta("default", "agent"),
        spec: Some(DaemonSetSpec {
            selector: selector("agent"),
            template: template("agent"),
            ..Default::default()
        }),
        status: None,
    };
    c.client.create(&ds).await.unwrap();
    eventually(
        10,
        "4 web pods over both nodes and 2 daemon pods",
        || async {
            let web = c.pods("app=web").await;
            let on1 = web.iter().filter(|p| node_of(p) == Some("node-1")).count();
            let agents = c.pods("app=agent").await;
            (web.len() == 4
                && web.iter().all(running_ready)
                && on1 > 0
                && agents.len() == 2
                && agents.iter().all(running_ready))
            .then_some(())
        },
    )
    .await;
    let daemon_on_1 = c
        .pods("app=agent")
        .await
        .into_iter()
        .find(|p| node_of(p) == Some("node-1"))
        .unwrap();

    let killed = Instant::now();
    c.kill_node("node-1");
    let node: Node = eventually(10, "node-1 Unknown and tainted", || async {
        let n: Node = c.client.get("", "node-1").await.ok()?;
        let ready = n
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready")?
            .clone();
        let tainted = n
            .spec
            .as_ref()?
            .taints
            .as_ref()?
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute");
        (ready.status == "Unknown"
            && ready.reason.as_deref() == Some("NodeStatusUnknown")
            && tainted)
            .then_some(n)
    })
    .await;
    assert!(node.metadata.name.is_some());
    eventually(15, "4 ready web pods on node-2", || async {
        let web = c.pods("app=web").await;
        let live: Vec<_> = web.iter().filter(|p| running_ready(p)).collect();
        (live.len() == 4 && live.iter().all(|p| node_of(p) == Some("node-2"))).then_some(())
    })
    .await;
    let replaced_after = killed.elapsed();
    // The daemon pod tolerates the unreachable taint and is not evicted.
    let still: Pod = c
        .client
        .get("default", daemon_on_1.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert!(
        still.metadata.deletion_timestamp.is_none(),
        "daemon pod evicted"
    );
    eprintln!("node death to replacements ready: {replaced_after:?}");

    // The node comes back: the taint goes and its agent finishes the evicted pods.
    c.nodes.lock().get_mut("node-1").unwrap().dead = false;
    eventually(10, "node-1 untainted and its stale pods gone", || async {
        let n: Node = c.client.get("", "node-1").await.ok()?;
        let tainted = n
            .spec
            .as_ref()?
            .taints
            .as_ref()
            .is_some_and(|t| t.iter().any(|t| t.key == "node.kubernetes.io/unreachable"));
        let web = c.pods("app=web").await;
        let stale = web.iter().any(|p| node_of(p) == Some("node-1"));
        (!tainted && !stale && web.len() == 4).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_deleted_node_are_deleted() {
    let c = start(fast()).await;
    c.add_node("node-1", &[]).await;
    let rs = ReplicaSet {
        metadata: meta("default", "gone"),
        spec: Some(ReplicaSetSpec {
            replicas: Some(2),
            selector: selector("gone"),
            template: Some(template("gone")),
            min_ready_seconds: None,
        }),
        status: None,
    };
    c.client.create(&rs).await.unwrap();
    let first = eventually(10, "2 running pods", || async {
        let pods = c.pods("app=gone").await;
        (pods.len() == 2 && pods.iter().all(running_ready)).then_some(pods)
    })
    .await;
    c.kill_node("node-1");
    c.client
        .delete::<Node>("", "node-1", DeleteOptions::default())
        .await
        .unwrap();
    c.nodes.lock().remove("node-1");
    c.add_node("node-2", &[]).await;
    eventually(15, "old pods removed, replacements on node-2", || async {
        let pods = c.pods("app=gone").await;
        let old_left = pods
            .iter()
            .any(|p| first.iter().any(|f| f.metadata.name == p.metadata.name));
        (!old_left
            && pods.len() == 2
            && pods
                .iter()
                .all(|p| node_of(p) == Some("node-2") && running_ready(p)))
        .then_some(())
    })
    .await;
}
