//! Leader election: two controller managers against one API server, only the leader acts;
//! when it stops, the other takes over after the lease expires.

mod common;

use std::time::Duration;

use common::*;
use corral_api::k8s::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use corral_api::k8s::api::coordination::v1::Lease;
use corral_api::k8s::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector;

fn config() -> corral_controllers::Config {
    corral_controllers::Config {
        leader_lease: Duration::from_secs(2),
        ..Default::default()
    }
}

fn replica_set(replicas: i32) -> ReplicaSet {
    let l: std::collections::BTreeMap<String, String> =
        [("app".to_string(), "le".to_string())].into();
    ReplicaSet {
        metadata: meta("default", "le"),
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(l.clone()),
                ..Default::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(
                    corral_api::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        labels: Some(l),
                        ..Default::default()
                    },
                ),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_runs_controllers_and_a_standby_takes_over() {
    let mut c = start(config()).await;
    c.add_node("node-1", &[]).await;
    let first = eventually(10, "a leader", || async {
        let l: Lease = c
            .client
            .get_opt("kube-system", "corral-controller-manager")
            .await
            .ok()??;
        l.spec?.holder_identity
    })
    .await;
    // A second manager starts and stays on standby.
    let standby = corral_controllers::spawn(c.client.clone(), config());
    c.client.create(&replica_set(3)).await.unwrap();
    eventually(10, "3 pods", || async {
        let rs: ReplicaSet = c.client.get("default", "le").await.ok()?;
        (rs.status?.replicas == 3 && c.pods("app=le").await.len() == 3).then_some(())
    })
    .await;
    let l: Lease = c
        .client
        .get("kube-system", "corral-controller-manager")
        .await
        .unwrap();
    assert_eq!(
        l.spec.unwrap().holder_identity,
        Some(first.clone()),
        "the leader did not change"
    );
    assert_eq!(
        c.pods("app=le").await.len(),
        3,
        "two managers would have created 6 pods"
    );

    // The leader stops: the standby takes the lease and reconciles a scale-up.
    c.stop_controllers();
    let second = eventually(15, "a new leader", || async {
        let l: Lease = c
            .client
            .get("kube-system", "corral-controller-manager")
            .await
            .ok()?;
        l.spec?.holder_identity.filter(|h| *h != first)
    })
    .await;
    assert_ne!(second, first);
    c.client
        .scale(
            corral_api::kinds::by_plural("replicasets").unwrap(),
            "default",
            "le",
            5,
        )
        .await
        .unwrap();
    eventually(15, "5 pods from the new leader", || async {
        (c.pods("app=le").await.len() == 5).then_some(())
    })
    .await;
    for h in standby {
        h.abort();
    }
}
