//! Fault injection in the middle of a namespace purge: the controller "crashes" (panics at the
//! fail point and is dropped) with the namespace half emptied; a new controller on the same
//! store finishes the purge. Fail points are process-global, so this file holds only this test.

mod common;

use std::collections::BTreeMap;

use common::*;
use corral_api::k8s::api::core::v1::{ConfigMap, Namespace};
use corral_api::{DeleteOptions, ListParams};
use corral_controllers::namespace::FAIL_POINT_PURGE;
use corral_controllers::ops::PARALLEL_CALLS;
use futures::stream::{self, StreamExt};

const OBJECTS: usize = 300;

async fn config_maps(c: &Cluster, ns: &str) -> usize {
    c.client
        .list::<ConfigMap>("", &ListParams::fields(format!("metadata.namespace={ns}")))
        .await
        .unwrap()
        .0
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_interrupted_by_a_crash_is_finished_by_the_next_controller() {
    let scenario = fail::FailScenario::setup();
    let config = corral_controllers::Config {
        leader_election: false,
        ..Default::default()
    };
    let mut c = start(config.clone()).await;
    c.client
        .create(&Namespace {
            metadata: meta("", "big"),
            ..Default::default()
        })
        .await
        .unwrap();
    stream::iter(0..OBJECTS)
        .map(|i| {
            let client = c.client.clone();
            async move {
                let cm = ConfigMap {
                    metadata: meta("big", &format!("cm-{i}")),
                    data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
                    ..Default::default()
                };
                client.create(&cm).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;

    // The third chunk of deletions is the last: the controller panics right after it.
    fail::cfg(FAIL_POINT_PURGE, "2*off->panic").unwrap();
    c.client
        .delete::<Namespace>("", "big", DeleteOptions::default())
        .await
        .unwrap();
    let left_at_crash = OBJECTS - 3 * PARALLEL_CALLS;
    eventually(15, "the purge stopped at the fail point", || async {
        (config_maps(&c, "big").await == left_at_crash).then_some(())
    })
    .await;
    // The crash: this controller is gone; what it did not do is still held by the namespace.
    c.stop_controllers();
    fail::remove(FAIL_POINT_PURGE);
    assert_eq!(config_maps(&c, "big").await, left_at_crash);
    let ns: Namespace = c.client.get("", "big").await.unwrap();
    assert_eq!(
        ns.status.and_then(|s| s.phase),
        Some("Terminating".to_string())
    );

    c.start_controllers(config);
    eventually(20, "namespace big gone", || async {
        matches!(c.client.get_opt::<Namespace>("", "big").await, Ok(None)).then_some(())
    })
    .await;
    assert_eq!(config_maps(&c, "big").await, 0, "objects orphaned");
    scenario.teardown();
}
