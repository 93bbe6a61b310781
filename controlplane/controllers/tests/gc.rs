//! Garbage collection over the real API server: Background, Foreground and Orphan deletion.

mod common;

use std::collections::BTreeMap;

use common::*;
use corral_api::client::PropagationPolicy;
use corral_api::k8s::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet, ReplicaSetSpec};
use corral_api::k8s::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector;
use corral_api::{DeleteOptions, ListParams};

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

fn replica_set(name: &str) -> ReplicaSet {
    ReplicaSet {
        metadata: meta("default", name),
        spec: Some(ReplicaSetSpec {
            replicas: Some(3),
            selector: selector(name),
            template: Some(template(name)),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

async fn wait_pods(c: &Cluster, app: &str, n: usize) -> Vec<Pod> {
    eventually(10, &format!("{n} pods of {app}"), || async {
        let pods = c.pods(&format!("app={app}")).await;
        let running = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (running == n && pods.len() == n).then_some(pods)
    })
    .await
}

fn delete_opts(p: PropagationPolicy) -> DeleteOptions {
    DeleteOptions {
        propagation: p,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_removes_its_replica_sets_and_pods() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    let d = Deployment {
        metadata: meta("default", "mi-deploy"),
        spec: Some(DeploymentSpec {
            replicas: Some(3),
            selector: selector("mi-deploy"),
            template: template("mi-deploy"),
            ..Default::default()
        }),
        status: None,
    };
    c.client.create(&d).await.unwrap();
    wait_pods(&c, "mi-deploy", 3).await;
    c.client
        .delete::<Deployment>(
            "default",
            "mi-deploy",
            delete_opts(PropagationPolicy::Background),
        )
        .await
        .unwrap();
    eventually(15, "replica sets and pods gone", || async {
        let rss = c
            .client
            .list::<ReplicaSet>("default", &ListParams::labels("app=mi-deploy"))
            .await
            .ok()?
            .0;
        (rss.is_empty() && c.pods("app=mi-deploy").await.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_removes_dependents_before_the_owner() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    c.client.create(&replica_set("fg")).await.unwrap();
    wait_pods(&c, "fg", 3).await;
    c.client
        .delete::<ReplicaSet>("default", "fg", delete_opts(PropagationPolicy::Foreground))
        .await
        .unwrap();
    // The owner stays (marked, with the finalizer) as long as any pod exists.
    eventually(15, "owner gone after its pods", || async {
        let rs: Option<ReplicaSet> = c.client.get_opt("default", "fg").await.ok()?;
        let pods = c.pods("app=fg").await;
        match rs {
            Some(rs) => {
                assert!(rs.metadata.deletion_timestamp.is_some());
                None
            }
            None => {
                assert!(
                    pods.is_empty(),
                    "owner removed while {} pods remain",
                    pods.len()
                );
                Some(())
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_keeps_the_pods_without_owner_references() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    c.client.create(&replica_set("orph")).await.unwrap();
    let before = wait_pods(&c, "orph", 3).await;
    c.client
        .delete::<ReplicaSet>("default", "orph", delete_opts(PropagationPolicy::Orphan))
        .await
        .unwrap();
    eventually(15, "owner gone, pods orphaned", || async {
        let rs: Option<ReplicaSet> = c.client.get_opt("default", "orph").await.ok()?;
        let pods = c.pods("app=orph").await;
        let orphaned = pods.iter().all(|p| {
            p.metadata
                .owner_references
                .as_ref()
                .is_none_or(|o| o.is_empty())
        });
        (rs.is_none() && pods.len() == 3 && orphaned).then_some(())
    })
    .await;
    let mut names: Vec<_> = c
        .pods("app=orph")
        .await
        .into_iter()
        .map(|p| p.metadata.name)
        .collect();
    let mut want: Vec<_> = before.into_iter().map(|p| p.metadata.name).collect();
    names.sort();
    want.sort();
    assert_eq!(names, want, "the same pods survive");
}
