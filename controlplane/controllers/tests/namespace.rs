//! Namespace deletion over the real API server: Terminating until the namespace controller has
//! emptied it (pods through their graceful deletion), no new content meanwhile, then gone.

mod common;

use std::collections::BTreeMap;

use common::*;
use corral_api::k8s::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use corral_api::k8s::api::core::v1::{
    ConfigMap, Container, Namespace, Pod, PodSpec, PodTemplateSpec, Secret,
};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector;
use corral_api::status::StatusReason;
use corral_api::{DeleteOptions, ListParams};

fn config_map(ns: &str, name: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(ns, name),
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    }
}

fn replica_set(ns: &str, name: &str) -> ReplicaSet {
    let labels = BTreeMap::from([("app".to_string(), name.to_string())]);
    ReplicaSet {
        metadata: meta(ns, name),
        spec: Some(ReplicaSetSpec {
            replicas: Some(2),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(
                    corral_api::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    },
                ),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("app:v1".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

fn condition(ns: &Namespace, type_: &str) -> Option<(String, String)> {
    ns.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.message.clone().unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_is_terminating_until_emptied_waits_for_its_pods_then_goes() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    let ns = c
        .client
        .create(&Namespace {
            metadata: meta("", "shop"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ns.spec.and_then(|s| s.finalizers),
        Some(vec!["kubernetes".to_string()]),
        "created with the kubernetes finalizer"
    );
    for i in 0..20 {
        c.client
            .create(&config_map("shop", &format!("cm-{i}")))
            .await
            .unwrap();
    }
    c.client
        .create(&Secret {
            metadata: meta("shop", "s"),
            ..Default::default()
        })
        .await
        .unwrap();
    c.client.create(&replica_set("shop", "web")).await.unwrap();
    eventually(10, "2 running pods in shop", || async {
        let (pods, _) = c
            .client
            .list::<Pod>("shop", &ListParams::default())
            .await
            .unwrap();
        let running = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (running == 2).then_some(())
    })
    .await;
    // The node's kubelet stops confirming deletions: the pods stay Terminating.
    c.kill_node("node-1");

    let finished = c
        .client
        .delete::<Namespace>("", "shop", DeleteOptions::default())
        .await
        .unwrap();
    assert!(!finished, "a namespace with content is only marked");
    let ns: Namespace = c.client.get("", "shop").await.unwrap();
    assert_eq!(
        ns.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Terminating")
    );

    let err = c
        .client
        .create(&config_map("shop", "late"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some(&StatusReason::Forbidden), "{err}");
    assert_eq!(
        err.status().map(|s| s.message.as_str()),
        Some("configmaps \"late\" is forbidden: unable to create new content in namespace shop because it is being terminated")
    );
    let cause = &err.status().unwrap().details.causes[0];
    assert_eq!(
        (
            cause.kind.as_str(),
            cause.field.as_str(),
            cause.message.as_str()
        ),
        (
            "NamespaceTerminating",
            "metadata.namespace",
            "namespace shop is being terminated"
        )
    );

    // Everything else goes; the pods are marked and waited for.
    let waiting = eventually(15, "only terminating pods left in shop", || async {
        let ns: Namespace = c.client.get("", "shop").await.ok()?;
        let (cms, _) = c
            .client
            .list::<ConfigMap>("shop", &ListParams::default())
            .await
            .ok()?;
        let (pods, _) = c
            .client
            .list::<Pod>("shop", &ListParams::default())
            .await
            .ok()?;
        let remaining = condition(&ns, "NamespaceContentRemaining")?;
        (cms.is_empty()
            && !pods.is_empty()
            && pods.iter().all(|p| p.metadata.deletion_timestamp.is_some())
            && remaining.0 == "True"
            && remaining
                .1
                .starts_with("Some resources are remaining: pods. has"))
        .then_some(ns)
    })
    .await;
    assert!(waiting.metadata.deletion_timestamp.is_some());

    c.revive_node("node-1");
    eventually(15, "namespace shop gone", || async {
        matches!(c.client.get_opt::<Namespace>("", "shop").await, Ok(None)).then_some(())
    })
    .await;
    let (left, _) = c
        .client
        .list::<Pod>("shop", &ListParams::default())
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_found_on_start_is_emptied_by_a_new_controller() {
    let mut c = start(corral_controllers::Config {
        disabled: ["namespace".to_string()].into(),
        leader_election: false,
        ..Default::default()
    })
    .await;
    c.client
        .create(&Namespace {
            metadata: meta("", "left"),
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..30 {
        c.client
            .create(&config_map("left", &format!("cm-{i}")))
            .await
            .unwrap();
    }
    c.client
        .delete::<Namespace>("", "left", DeleteOptions::default())
        .await
        .unwrap();
    // No namespace controller ran: the namespace and its content wait, nothing is orphaned.
    let (cms, _) = c
        .client
        .list::<ConfigMap>("left", &ListParams::default())
        .await
        .unwrap();
    assert_eq!(cms.len(), 30);
    assert!(c
        .client
        .get_opt::<Namespace>("", "left")
        .await
        .unwrap()
        .is_some());

    c.stop_controllers();
    c.start_controllers(corral_controllers::Config {
        leader_election: false,
        ..Default::default()
    });
    eventually(15, "namespace left gone", || async {
        matches!(c.client.get_opt::<Namespace>("", "left").await, Ok(None)).then_some(())
    })
    .await;
    let (cms, _) = c
        .client
        .list::<ConfigMap>("", &ListParams::fields("metadata.namespace=left"))
        .await
        .unwrap();
    assert!(cms.is_empty(), "{} orphaned", cms.len());
}
