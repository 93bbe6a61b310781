//! StatefulSet behaviour over the real API server.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use corral_api::k8s::api::apps::v1::{StatefulSet, StatefulSetSpec};
use corral_api::k8s::api::core::v1::{
    Container, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod, PodSpec,
    PodTemplateSpec, VolumeResourceRequirements,
};
use corral_api::k8s::apimachinery::pkg::api::resource::Quantity;
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector;
use corral_api::{DeleteOptions, ListParams, WatchEvent};
use futures::StreamExt;
use parking_lot::Mutex;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn stateful_set(replicas: i32) -> StatefulSet {
    let mut tm = meta("", "");
    tm.name = None;
    tm.labels = Some(labels(&[("app", "db")]));
    let mut claim_meta = meta("", "data");
    claim_meta.namespace = None;
    StatefulSet {
        metadata: meta("default", "db"),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "db")])),
                ..Default::default()
            },
            service_name: Some("db".into()),
            template: PodTemplateSpec {
                metadata: Some(tm),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "db".into(),
                        image: Some("db:v1".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: claim_meta,
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                status: None,
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_creates_pods_in_order_with_their_claims_and_keeps_identities() {
    let c = start(Default::default()).await;
    c.add_node("node-1", &[]).await;
    // Record the order in which pods appear, and check no ordinal starts before the one
    // below it is ready.
    let order = Arc::new(Mutex::new(Vec::<String>::new()));
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let params = ListParams::labels("app=db");
    let mut stream = Box::pin(c.client.watch::<Pod>("default", &params, 0).await.unwrap());
    let (o, v) = (order.clone(), violations.clone());
    let watcher = tokio::spawn(async move {
        let mut ready: BTreeMap<String, bool> = BTreeMap::new();
        while let Some(Ok(ev)) = stream.next().await {
            if let WatchEvent::Added(p) | WatchEvent::Modified(p) = &ev {
                let name = p.metadata.name.clone().unwrap();
                let is_ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if matches!(ev, WatchEvent::Added(_)) {
                    let ord: usize = name.trim_start_matches("db-").parse().unwrap();
                    if ord > 0
                        && !ready
                            .get(&format!("db-{}", ord - 1))
                            .copied()
                            .unwrap_or(false)
                    {
                        v.lock()
                            .push(format!("{name} created before db-{} was ready", ord - 1));
                    }
                    o.lock().push(name.clone());
                }
                ready.insert(name, is_ready);
            }
        }
    });
    c.client.create(&stateful_set(3)).await.unwrap();
    eventually(15, "db-0..2 ready", || async {
        let ss: StatefulSet = c.client.get("default", "db").await.ok()?;
        (ss.status?.ready_replicas == Some(3)).then_some(())
    })
    .await;
    assert_eq!(*order.lock(), vec!["db-0", "db-1", "db-2"]);
    assert!(violations.lock().is_empty(), "{:?}", violations.lock());
    let claims = c
        .client
        .list::<PersistentVolumeClaim>("default", &ListParams::default())
        .await
        .unwrap()
        .0;
    let mut names: Vec<_> = claims
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, vec!["data-db-0", "data-db-1", "data-db-2"]);
    // The local-path provisioner binds each claim to a hostPath volume on the pod's node.
    let volumes = eventually(10, "claims bound", || async {
        let claims = c
            .client
            .list::<PersistentVolumeClaim>("default", &ListParams::default())
            .await
            .ok()?
            .0;
        let bound = claims
            .iter()
            .all(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"));
        let pvs = c
            .client
            .list::<PersistentVolume>("", &ListParams::default())
            .await
            .ok()?
            .0;
        (bound && pvs.len() == 3).then_some(pvs)
    })
    .await;
    for pv in &volumes {
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(
            spec.host_path.as_ref().unwrap().type_.as_deref(),
            Some("DirectoryOrCreate")
        );
        let term = &spec
            .node_affinity
            .as_ref()
            .unwrap()
            .required
            .as_ref()
            .unwrap()
            .node_selector_terms[0];
        assert_eq!(
            term.match_expressions.as_ref().unwrap()[0]
                .values
                .as_ref()
                .unwrap(),
            &vec!["node-1".to_string()]
        );
    }
    let p1: Pod = c.client.get("default", "db-1").await.unwrap();
    let claim = p1
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "data")
        .unwrap();
    assert_eq!(
        claim.persistent_volume_claim.as_ref().unwrap().claim_name,
        "data-db-1"
    );

    // A deleted member comes back under the same name, with a new uid.
    let old_uid = p1.metadata.uid.clone();
    c.client
        .delete::<Pod>("default", "db-1", DeleteOptions::default())
        .await
        .unwrap();
    eventually(15, "db-1 back", || async {
        let p: Pod = c.client.get("default", "db-1").await.ok()?;
        (p.metadata.uid != old_uid && p.metadata.deletion_timestamp.is_none()).then_some(())
    })
    .await;
    // Scale down removes the highest ordinals; claims stay.
    c.client
        .scale(
            corral_api::kinds::by_plural("statefulsets").unwrap(),
            "default",
            "db",
            1,
        )
        .await
        .unwrap();
    eventually(15, "only db-0 left", || async {
        let pods = c.pods("app=db").await;
        (pods.len() == 1 && pods[0].metadata.name.as_deref() == Some("db-0")).then_some(())
    })
    .await;
    watcher.abort();
    let claims = c
        .client
        .list::<PersistentVolumeClaim>("default", &ListParams::default())
        .await
        .unwrap()
        .0;
    assert_eq!(claims.len(), 3, "claims are kept on scale down");
}
