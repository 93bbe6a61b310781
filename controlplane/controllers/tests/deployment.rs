//! Deployment behaviour over the real API server, asserted as Kubernetes' e2e suite does.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use corral_api::k8s::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use corral_api::k8s::api::core::v1::{Container, Event, Pod, PodSpec, PodTemplateSpec};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector;
use corral_api::k8s::apimachinery::pkg::util::intstr::IntOrString;
use corral_api::{ListParams, WatchEvent};
use futures::StreamExt;
use parking_lot::Mutex;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn deployment(name: &str, replicas: i32, image: &str, strategy: DeploymentStrategy) -> Deployment {
    let mut tm = meta("", "");
    tm.name = None;
    tm.labels = Some(labels(&[("app", name)]));
    Deployment {
        metadata: meta("default", name),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", name)])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(tm),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some(image.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            strategy: Some(strategy),
            ..Default::default()
        }),
        status: None,
    }
}

fn rolling(surge: IntOrString, unavailable: IntOrString) -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(surge),
            max_unavailable: Some(unavailable),
        }),
    }
}

async fn wait_complete(c: &Cluster, name: &str, replicas: i32) -> Deployment {
    eventually(20, &format!("deployment {name} complete"), || async {
        let d: Deployment = c.client.get("default", name).await.ok()?;
        let st = d.status.clone()?;
        let r = Some(replicas);
        let done = st.observed_generation == d.metadata.generation
            && st.updated_replicas == r
            && st.replicas == r
            && st.available_replicas == r;
        let pods = c.pods(&format!("app={name}")).await;
        (done && pods.len() == replicas as usize).then_some(d)
    })
    .await
}

async fn set_image(c: &Cluster, name: &str, image: &str) {
    loop {
        let mut d: Deployment = c.client.get("default", name).await.unwrap();
        d.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some(image.into());
        match c.client.update(&d).await {
            Ok(_) => return,
            Err(e) if e.is_conflict() => continue,
            Err(e) => panic!("{e}"),
        }
    }
}

async fn replica_sets(c: &Cluster, name: &str) -> Vec<ReplicaSet> {
    let mut rss = c
        .client
        .list::<ReplicaSet>("default", &ListParams::labels(format!("app={name}")))
        .await
        .unwrap()
        .0;
    // Creation times have second resolution: order by revision (then by name).
    rss.sort_by_key(|r| {
        let rev = r
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"));
        (
            rev.and_then(|r| r.parse::<i64>().ok()).unwrap_or(0),
            r.metadata.name.clone(),
        )
    });
    rss
}

fn image(r: &ReplicaSet) -> String {
    r.spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Follows the pods matching `selector` and runs `check` on the whole set after every event.
fn watch_pods(
    c: &Cluster,
    selector: &str,
    check: impl Fn(&BTreeMap<String, Pod>) -> Option<String> + Send + 'static,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<String>>>) {
    let violations = Arc::new(Mutex::new(Vec::new()));
    let v = violations.clone();
    let client = c.client.clone();
    let selector = selector.to_string();
    let handle = tokio::spawn(async move {
        let params = ListParams::labels(selector);
        let (pods, rv) = client.list::<Pod>("default", &params).await.unwrap();
        let mut set: BTreeMap<String, Pod> = pods
            .into_iter()
            .map(|p| (p.metadata.name.clone().unwrap(), p))
            .collect();
        let mut stream = Box::pin(client.watch::<Pod>("default", &params, rv).await.unwrap());
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
            if let Some(msg) = check(&set) {
                v.lock().push(msg);
            }
        }
    });
    (handle, violations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_replaces_pods_within_surge_and_unavailable_bounds() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    c.add_node("node-2", &[]).await;
    let strategy = rolling(IntOrString::Int(1), IntOrString::Int(1));
    c.client
        .create(&deployment("web", 4, "app:v1", strategy))
        .await
        .unwrap();
    let d = wait_complete(&c, "web", 4).await;
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );
    let first = replica_sets(&c, "web").await;
    assert_eq!(first.len(), 1);
    let hash = first[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        first[0].metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    for p in c.pods("app=web").await {
        assert!(p
            .metadata
            .name
            .unwrap()
            .starts_with(&format!("web-{hash}-")));
    }

    // At most replicas + maxSurge pods, at least replicas - maxUnavailable ready, at every event.
    let (watcher, violations) = watch_pods(&c, "app=web", |set| {
        let active: Vec<&Pod> = set
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let ready = active.iter().filter(|p| is_ready(p)).count();
        (active.len() > 5 || ready < 3).then(|| format!("{} active, {} ready", active.len(), ready))
    });
    set_image(&c, "web", "app:v2").await;
    let d = wait_complete(&c, "web", 4).await;
    watcher.abort();
    assert!(
        violations.lock().is_empty(),
        "bounds exceeded: {:?}",
        violations.lock()
    );
    for p in c.pods("app=web").await {
        assert_eq!(
            p.spec.unwrap().containers[0].image.as_deref(),
            Some("app:v2")
        );
    }
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    let rss = replica_sets(&c, "web").await;
    assert_eq!(rss.len(), 2);
    assert_eq!(rss[0].spec.as_ref().unwrap().replicas, Some(0));
    let conds = d.status.unwrap().conditions.unwrap();
    let prog = conds.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(prog.reason.as_deref(), Some("NewReplicaSetAvailable"));
    let events = c
        .client
        .list::<Event>("default", &ListParams::default())
        .await
        .unwrap()
        .0;
    assert!(events
        .iter()
        .any(|e| e.reason.as_deref() == Some("ScalingReplicaSet")
            && e.message.as_deref()
                == Some(format!("Scaled up replica set web-{hash} from 0 to 4").as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_runs_old_and_new_pods_together() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    let strategy = DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    };
    c.client
        .create(&deployment("re", 3, "app:v1", strategy))
        .await
        .unwrap();
    wait_complete(&c, "re", 3).await;
    let (watcher, violations) = watch_pods(&c, "app=re", |set| {
        let hashes: std::collections::BTreeSet<&str> = set
            .values()
            .map(|p| p.metadata.labels.as_ref().unwrap()["pod-template-hash"].as_str())
            .collect();
        (hashes.len() > 1).then(|| format!("mixed: {hashes:?}"))
    });
    set_image(&c, "re", "app:v2").await;
    wait_complete(&c, "re", 3).await;
    watcher.abort();
    assert!(violations.lock().is_empty(), "{:?}", violations.lock());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollover_mid_rollout_goes_straight_to_the_newest_template() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    let strategy = rolling(IntOrString::Int(1), IntOrString::Int(0));
    c.client
        .create(&deployment("ro", 3, "app:v1", strategy))
        .await
        .unwrap();
    wait_complete(&c, "ro", 3).await;
    // v2 never becomes ready; roll over to v3 while it is stuck.
    c.auto_ready.store(false, Ordering::SeqCst);
    set_image(&c, "ro", "app:v2").await;
    eventually(10, "the v2 replica set surging", || async {
        let rss = replica_sets(&c, "ro").await;
        (rss.len() == 2 && rss[1].status.as_ref().is_some_and(|s| s.replicas == 1)).then_some(())
    })
    .await;
    set_image(&c, "ro", "app:v3").await;
    c.auto_ready.store(true, Ordering::SeqCst);
    wait_complete(&c, "ro", 3).await;
    let rss = replica_sets(&c, "ro").await;
    assert_eq!(rss.len(), 3);
    let sizes: Vec<_> = rss
        .iter()
        .map(|r| r.spec.as_ref().unwrap().replicas.unwrap())
        .collect();
    assert_eq!(sizes, vec![0, 0, 3]);
    assert_eq!(image(&rss[2]), "app:v3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_history_limit_zero_keeps_no_old_replica_sets() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    let mut d = deployment(
        "hist",
        2,
        "app:v1",
        rolling(IntOrString::Int(1), IntOrString::Int(0)),
    );
    d.spec.as_mut().unwrap().revision_history_limit = Some(0);
    c.client.create(&d).await.unwrap();
    wait_complete(&c, "hist", 2).await;
    set_image(&c, "hist", "app:v2").await;
    wait_complete(&c, "hist", 2).await;
    eventually(10, "only the new replica set left", || async {
        (replica_sets(&c, "hist").await.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_mid_rollout_is_proportional() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    let strategy = rolling(IntOrString::Int(3), IntOrString::Int(2));
    c.client
        .create(&deployment("prop", 10, "app:v1", strategy))
        .await
        .unwrap();
    wait_complete(&c, "prop", 10).await;
    // The new template never becomes ready: the rollout stalls at 8 old + 5 new.
    c.auto_ready.store(false, Ordering::SeqCst);
    set_image(&c, "prop", "app:v2").await;
    let sizes = |rss: &[ReplicaSet]| -> Vec<i32> {
        rss.iter()
            .map(|r| r.spec.as_ref().unwrap().replicas.unwrap())
            .collect()
    };
    eventually(10, "rollout stalled at 8 + 5", || async {
        (sizes(&replica_sets(&c, "prop").await) == vec![8, 5]).then_some(())
    })
    .await;
    c.client
        .scale(
            corral_api::kinds::by_plural("deployments").unwrap(),
            "default",
            "prop",
            30,
        )
        .await
        .unwrap();
    // 20 more pods split by each replica set's share of 13: 8 → 20, 5 → 13.
    eventually(10, "proportional split 20 + 13", || async {
        (sizes(&replica_sets(&c, "prop").await) == vec![20, 13]).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_back_to_an_old_template_reuses_its_replica_set_with_a_new_revision() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    c.client
        .create(&deployment(
            "undo",
            2,
            "app:v1",
            rolling(IntOrString::Int(1), IntOrString::Int(0)),
        ))
        .await
        .unwrap();
    wait_complete(&c, "undo", 2).await;
    set_image(&c, "undo", "app:v2").await;
    wait_complete(&c, "undo", 2).await;
    set_image(&c, "undo", "app:v1").await;
    let d = wait_complete(&c, "undo", 2).await;
    let rss = replica_sets(&c, "undo").await;
    assert_eq!(rss.len(), 2);
    let rev = |r: &ReplicaSet| {
        r.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"].clone()
    };
    let v1 = rss.iter().find(|r| image(r) == "app:v1").unwrap();
    assert_eq!(rev(v1), "3");
    assert_eq!(v1.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "3"
    );
}
