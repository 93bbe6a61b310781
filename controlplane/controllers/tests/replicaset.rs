//! ReplicaSet behaviour over the real API server.

mod common;

use common::*;
use corral_api::k8s::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use corral_api::k8s::api::core::v1::{Container, Event, Pod, PodSpec, PodTemplateSpec};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector;
use corral_api::{DeleteOptions, ListParams};

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pod_spec(image: &str) -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "mi-pod".into(),
            image: Some(image.into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    let mut tm = meta("", "");
    tm.name = None;
    tm.labels = Some(labels(&[("app", name)]));
    ReplicaSet {
        metadata: meta("default", name),
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", name)])),
                ..Default::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(tm),
                spec: Some(pod_spec("fedek3/workshop-uns:v0.2.0")),
            }),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

fn active(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_set_keeps_its_replicas_and_replaces_deleted_pods() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    c.client.create(&replica_set("mi-app", 3)).await.unwrap();
    let pods = eventually(10, "3 ready pods", || async {
        let rs: ReplicaSet = c.client.get("default", "mi-app").await.ok()?;
        let st = rs.status?;
        (st.ready_replicas == Some(3) && st.replicas == 3 && st.available_replicas == Some(3))
            .then_some(())?;
        Some(c.pods("app=mi-app").await)
    })
    .await;
    assert_eq!(pods.len(), 3);
    for p in &pods {
        let name = p.metadata.name.as_deref().unwrap();
        let suffix = name
            .strip_prefix("mi-app-")
            .expect("named after the replica set");
        assert_eq!(suffix.len(), 5);
        assert!(suffix
            .bytes()
            .all(|b| corral_api::object::NAME_ALPHABET.contains(&b)));
        let o = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((o.kind.as_str(), o.controller), ("ReplicaSet", Some(true)));
    }
    // Self-healing: the deleted pod comes back under a new name.
    let victim = pods[0].metadata.name.clone().unwrap();
    c.client
        .delete::<Pod>("default", &victim, DeleteOptions::default())
        .await
        .unwrap();
    eventually(10, "a replacement", || async {
        let pods = c.pods("app=mi-app").await;
        let names: Vec<_> = active(&pods)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        (names.len() == 3 && !names.contains(&victim)).then_some(())
    })
    .await;
    // Scale up and down through the scale subresource.
    c.client
        .scale(
            corral_api::kinds::by_plural("replicasets").unwrap(),
            "default",
            "mi-app",
            5,
        )
        .await
        .unwrap();
    eventually(10, "5 pods", || async {
        (active(&c.pods("app=mi-app").await).len() == 5).then_some(())
    })
    .await;
    c.client
        .scale(
            corral_api::kinds::by_plural("replicasets").unwrap(),
            "default",
            "mi-app",
            2,
        )
        .await
        .unwrap();
    eventually(10, "2 pods", || async {
        (c.pods("app=mi-app").await.len() == 2).then_some(())
    })
    .await;
    // Events describe what happened.
    let events = eventually(10, "events", || async {
        let (evs, _) = c
            .client
            .list::<Event>("default", &ListParams::default())
            .await
            .ok()?;
        let creates = evs
            .iter()
            .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
            .count();
        let deletes = evs
            .iter()
            .filter(|e| e.reason.as_deref() == Some("SuccessfulDelete"))
            .count();
        (creates >= 6 && deletes >= 3).then_some(evs)
    })
    .await;
    let e = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
        .unwrap();
    assert_eq!(e.involved_object.kind.as_deref(), Some("ReplicaSet"));
    assert_eq!(e.type_.as_deref(), Some("Normal"));
    assert!(e
        .message
        .as_deref()
        .unwrap()
        .starts_with("Created pod: mi-app-"));
    assert_eq!(
        e.source.as_ref().unwrap().component.as_deref(),
        Some("corral-controller-manager")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_set_adopts_matching_orphans_and_releases_relabelled_pods() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    // An orphan pod that matches the selector exists before the ReplicaSet.
    let mut orphan = Pod {
        metadata: meta("default", "orphan"),
        spec: Some(pod_spec("fedek3/workshop-uns:v0.2.0")),
        status: None,
    };
    orphan.metadata.labels = Some(labels(&[("app", "adopt")]));
    c.client.create(&orphan).await.unwrap();
    c.client.create(&replica_set("adopt", 2)).await.unwrap();
    let rs: ReplicaSet = c.client.get("default", "adopt").await.unwrap();
    let rs_uid = rs.metadata.uid.clone().unwrap();
    eventually(10, "the orphan adopted and one pod created", || async {
        let pods = c.pods("app=adopt").await;
        let p: Pod = c.client.get("default", "orphan").await.ok()?;
        let owned = p
            .metadata
            .owner_references
            .as_ref()?
            .iter()
            .any(|o| o.uid == rs_uid && o.controller == Some(true));
        (owned && pods.len() == 2).then_some(())
    })
    .await;
    // Relabel the orphan: released (owner reference gone) and replaced.
    // The simulated kubelet writes the pod too: retry on conflicts.
    loop {
        let mut p: Pod = c.client.get("default", "orphan").await.unwrap();
        p.metadata.labels = Some(labels(&[("app", "debug")]));
        match c.client.update(&p).await {
            Ok(_) => break,
            Err(e) if e.is_conflict() => continue,
            Err(e) => panic!("{e}"),
        }
    }
    eventually(10, "released and replaced", || async {
        let p: Pod = c.client.get("default", "orphan").await.ok()?;
        let released = p
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.iter().all(|o| o.uid != rs_uid));
        (released && c.pods("app=adopt").await.len() == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pods_are_replaced_and_template_changes_only_affect_new_pods() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    c.client.create(&replica_set("fail", 1)).await.unwrap();
    let first = eventually(10, "a running pod", || async {
        c.pods("app=fail")
            .await
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    // Change the template: the running pod keeps its image.
    loop {
        let mut rs: ReplicaSet = c.client.get("default", "fail").await.unwrap();
        rs.spec.as_mut().unwrap().template.as_mut().unwrap().spec =
            Some(pod_spec("fedek3/workshop-uns:v0.3.0"));
        match c.client.update(&rs).await {
            Ok(_) => break,
            Err(e) if e.is_conflict() => continue,
            Err(e) => panic!("{e}"),
        }
    }
    // Wait until the controller has seen the new template before the pod fails.
    eventually(10, "new template observed", || async {
        let rs: ReplicaSet = c.client.get("default", "fail").await.ok()?;
        (rs.status?.observed_generation == rs.metadata.generation).then_some(())
    })
    .await;
    let mut failed = first.clone();
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    failed.metadata.resource_version = None;
    c.client.update_status(&failed).await.unwrap();
    let image = |p: &Pod| {
        p.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    };
    let replacement = eventually(10, "a replacement for the failed pod", || async {
        c.pods("app=fail")
            .await
            .into_iter()
            .find(|p| p.metadata.name != first.metadata.name)
    })
    .await;
    assert_eq!(image(&first), "fedek3/workshop-uns:v0.2.0");
    assert_eq!(image(&replacement), "fedek3/workshop-uns:v0.3.0");
}
