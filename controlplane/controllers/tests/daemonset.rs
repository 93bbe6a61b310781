//! DaemonSet behaviour over the real API server, as Kubernetes' e2e suite asserts it.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use corral_api::k8s::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use corral_api::k8s::api::core::v1::{Container, Node, Pod, PodSpec, PodTemplateSpec, Taint};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector;
use corral_api::k8s::apimachinery::pkg::util::intstr::IntOrString;
use corral_api::{DeleteOptions, ListParams, WatchEvent};
use futures::StreamExt;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn daemon_set(
    name: &str,
    image: &str,
    node_selector: Option<BTreeMap<String, String>>,
) -> DaemonSet {
    let mut tm = meta("", "");
    tm.name = None;
    tm.labels = Some(labels(&[("app", name)]));
    DaemonSet {
        metadata: meta("default", name),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", name)])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(tm),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "mi-pod".into(),
                        image: Some(image.into()),
                        ..Default::default()
                    }],
                    node_selector,
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone()
}

fn live(pods: Vec<Pod>) -> Vec<Pod> {
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Node name → live pod names, once every live pod is bound.
async fn placement(c: &Cluster, selector: &str) -> Option<BTreeMap<String, Vec<String>>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in live(c.pods(selector).await) {
        m.entry(node_of(&p)?)
            .or_default()
            .push(p.metadata.name.clone().unwrap());
    }
    Some(m)
}

async fn relabel(c: &Cluster, node: &str, pairs: &[(&str, &str)]) {
    loop {
        let mut n: Node = c.client.get("", node).await.unwrap();
        let l = n.metadata.labels.get_or_insert_with(Default::default);
        for (k, v) in pairs {
            l.insert(k.to_string(), v.to_string());
        }
        match c.client.update(&n).await {
            Ok(_) => return,
            Err(e) if e.is_conflict() => continue,
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_set_runs_one_pod_per_schedulable_node_and_replaces_a_deleted_one_on_the_same_node()
{
    let c = start(Default::default()).await;
    for n in ["node-1", "node-2", "node-3"] {
        c.add_node(n, &[]).await;
    }
    c.add_node("tainted", &[]).await;
    // Node IPAM may set the node's pod CIDR between the read and the write: read again then.
    for attempt in 0.. {
        let mut t: Node = c.client.get("", "tainted").await.unwrap();
        t.spec.get_or_insert_with(Default::default).taints = Some(vec![Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        }]);
        match c.client.update(&t).await {
            Ok(_) => break,
            Err(e) if e.is_conflict() && attempt < 10 => continue,
            Err(e) => panic!("tainting the node: {e}"),
        }
    }
    c.client
        .create(&daemon_set("mi-app", "fedek3/workshop-uns:v0.2.0", None))
        .await
        .unwrap();
    let want: Vec<String> = vec!["node-1".into(), "node-2".into(), "node-3".into()];
    let placed = eventually(10, "one pod on each untainted node", || async {
        let m = placement(&c, "app=mi-app").await?;
        (m.keys().cloned().collect::<Vec<_>>() == want && m.values().all(|v| v.len() == 1))
            .then_some(m)
    })
    .await;
    eventually(10, "status counts 3 ready", || async {
        let ds: DaemonSet = c.client.get("default", "mi-app").await.ok()?;
        let st = ds.status?;
        (st.desired_number_scheduled == 3
            && st.current_number_scheduled == 3
            && st.number_ready == 3
            && st.number_available == Some(3)
            && st.updated_number_scheduled == Some(3))
        .then_some(())
    })
    .await;
    let victim = placed["node-2"][0].clone();
    c.client
        .delete::<Pod>("default", &victim, DeleteOptions::default())
        .await
        .unwrap();
    eventually(10, "a new pod on node-2", || async {
        let m = placement(&c, "app=mi-app").await?;
        let on2 = m.get("node-2")?;
        (on2.len() == 1 && on2[0] != victim && m.len() == 3).then_some(())
    })
    .await;
    let revisions = c
        .client
        .list::<ControllerRevision>("default", &ListParams::labels("app=mi-app"))
        .await
        .unwrap()
        .0;
    assert_eq!(revisions.len(), 1);
    let hash = revisions[0].metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
    assert_eq!(
        revisions[0].metadata.name.as_deref(),
        Some(format!("mi-app-{hash}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_set_follows_node_labels_and_new_nodes() {
    let c = start(Default::default()).await;
    c.add_node("blue-1", &[("color", "blue")]).await;
    c.add_node("green-1", &[("color", "green")]).await;
    c.client
        .create(&daemon_set(
            "picky",
            "app:v1",
            Some(labels(&[("color", "blue")])),
        ))
        .await
        .unwrap();
    let nodes = |want: &'static [&'static str]| {
        let c = &c;
        async move {
            let m = placement(c, "app=picky").await?;
            (m.keys().map(String::as_str).collect::<Vec<_>>() == want).then_some(())
        }
    };
    eventually(10, "pod on blue-1 only", || nodes(&["blue-1"])).await;
    relabel(&c, "green-1", &[("color", "blue")]).await;
    eventually(10, "relabelled node gets a pod", || {
        nodes(&["blue-1", "green-1"])
    })
    .await;
    relabel(&c, "blue-1", &[("color", "red")]).await;
    eventually(10, "node that stops matching loses it", || {
        nodes(&["green-1"])
    })
    .await;
    c.add_node("blue-2", &[("color", "blue")]).await;
    eventually(10, "new node gets a pod", || nodes(&["blue-2", "green-1"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_daemon_pods_are_retried_on_their_node() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    c.client
        .create(&daemon_set("retry", "app:v1", None))
        .await
        .unwrap();
    let first = eventually(10, "a running daemon pod", || async {
        c.pods("app=retry")
            .await
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    let mut failed = first.clone();
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    failed.metadata.resource_version = None;
    c.client.update_status(&failed).await.unwrap();
    eventually(10, "the failed pod replaced on node-1", || async {
        let pods = live(c.pods("app=retry").await);
        (pods.len() == 1
            && pods[0].metadata.name != first.metadata.name
            && node_of(&pods[0]).as_deref() == Some("node-1"))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_daemon_set_keeps_at_most_max_unavailable_down() {
    let c = start(Default::default()).await;
    let nodes = ["node-1", "node-2", "node-3", "node-4"];
    for n in nodes {
        c.add_node(n, &[]).await;
    }
    let mut ds = daemon_set("roll", "app:v1", None);
    ds.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::Int(1)),
            max_surge: Some(IntOrString::Int(0)),
        }),
    });
    c.client.create(&ds).await.unwrap();
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    eventually(10, "4 ready daemon pods", || async {
        let pods = live(c.pods("app=roll").await);
        (pods.len() == 4 && pods.iter().all(ready)).then_some(())
    })
    .await;
    // Watch: at every event at least 3 of 4 nodes have a ready, live daemon pod.
    let params = ListParams::labels("app=roll");
    let (pods, rv) = c.client.list::<Pod>("default", &params).await.unwrap();
    let mut set: BTreeMap<String, Pod> = pods
        .into_iter()
        .map(|p| (p.metadata.name.clone().unwrap(), p))
        .collect();
    let mut stream = Box::pin(c.client.watch::<Pod>("default", &params, rv).await.unwrap());
    let worst = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(4));
    let w = worst.clone();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            match ev {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                    set.insert(p.metadata.name.clone().unwrap(), p);
                }
                WatchEvent::Deleted(p) => {
                    set.remove(p.metadata.name.as_deref().unwrap());
                }
                WatchEvent::Bookmark(_) => continue,
            }
            let up: BTreeSet<String> = set
                .values()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
                .filter_map(node_of)
                .collect();
            w.fetch_min(up.len(), std::sync::atomic::Ordering::SeqCst);
        }
    });
    loop {
        let mut d: DaemonSet = c.client.get("default", "roll").await.unwrap();
        d.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("app:v2".into());
        if c.client.update(&d).await.is_ok() {
            break;
        }
    }
    eventually(20, "all daemon pods on v2", || async {
        let pods = live(c.pods("app=roll").await);
        let done = pods.len() == 4
            && pods.iter().all(|p| {
                ready(p)
                    && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("app:v2")
            });
        let ds: DaemonSet = c.client.get("default", "roll").await.ok()?;
        (done && ds.status?.updated_number_scheduled == Some(4)).then_some(())
    })
    .await;
    watcher.abort();
    let worst = worst.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        worst >= 3,
        "only {worst} nodes had a ready pod at some point"
    );
    let revisions = c
        .client
        .list::<ControllerRevision>("default", &ListParams::labels("app=roll"))
        .await
        .unwrap()
        .0;
    let mut numbers: Vec<i64> = revisions.iter().map(|r| r.revision).collect();
    numbers.sort();
    assert_eq!(numbers, vec![1, 2]);
}
