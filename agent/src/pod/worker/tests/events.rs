//! kubelet's events from the worker, checked against the fake API: the start of a container
//! (Pulled, Created, Started), a crash loop's BackOff, a deletion's Killing, and a pod waiting
//! for its ConfigMap or claim (one aggregated FailedMount, a fast retry, no crash back-off),
//! and each failed liveness attempt's Unhealthy before the probe's Killing.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::{pod, waiting_reason, within, Rig};
use crate::clock::Clock;
use crate::pod::worker::waiting::SOURCE_RETRY;
use crate::pod::worker::Terminate;
use crate::runtime::fake::Call;

/// (reason, message) of the events written so far, the repeats of one Event collapsed to its
/// latest write; in the order they were first written.
fn written(rig: &Rig) -> Vec<(String, String)> {
    let mut seen: Vec<Event> = Vec::new();
    for ev in rig.api.calls().events {
        match seen
            .iter_mut()
            .find(|e| e.metadata.name == ev.metadata.name)
        {
            Some(e) => *e = ev,
            None => seen.push(ev),
        }
    }
    seen.into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

/// The written Event of `reason`, once there is one.
async fn event(rig: &Rig, reason: &str) -> Event {
    within(rig.api.wait_for(|c| {
        c.events
            .iter()
            .rev()
            .find(|e| e.reason.as_deref() == Some(reason))
            .cloned()
    }))
    .await
}

/// Attempts so far: each looks the image up first.
fn image_lookups(rig: &Rig) -> usize {
    rig.runtime
        .history()
        .iter()
        .filter(|c| matches!(c.call, Call::Image(_)))
        .count()
}

fn with_volume(volume: serde_json::Value) -> Pod {
    let mut p = serde_json::to_value(pod("Always")).unwrap();
    p["spec"]["volumes"] = json!([volume]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    serde_json::from_value(p).unwrap()
}

#[tokio::test]
async fn a_started_container_records_pulled_created_and_started_as_kubelet_does() {
    let rig = Rig::new();
    let _w = rig.spawn(pod("Always"));
    rig.running(0).await;
    let started = event(&rig, "Started").await;
    assert_eq!(
        written(&rig),
        [
            (
                "Pulled".into(),
                "Container image \"busybox:1\" already present on machine".into()
            ),
            ("Created".into(), "Created container: app".into()),
            ("Started".into(), "Started container app".into()),
        ]
    );
    assert_eq!(started.type_.as_deref(), Some("Normal"));
    assert_eq!(
        started.involved_object.field_path.as_deref(),
        Some("spec.containers{app}")
    );
    let source = started.source.unwrap();
    assert_eq!(source.component.as_deref(), Some("kubelet"));
    assert_eq!(source.host.as_deref(), Some("node-1"));
}

#[tokio::test]
async fn a_crash_looping_container_records_back_off_naming_the_pod_as_kubelet() {
    let rig = Rig::new();
    let _w = rig.spawn(pod("Always"));
    rig.running(0).await;
    assert!(rig.runtime.exit("u1-app-0", 1));
    rig.running(1).await;
    assert!(rig.runtime.exit("u1-app-1", 1));
    let ev = event(&rig, "BackOff").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(
        ev.message.as_deref(),
        Some("Back-off restarting failed container app in pod web_default(u1)")
    );
}

#[tokio::test]
async fn a_deleted_pod_records_killing_for_each_running_container() {
    let rig = Rig::new();
    let mut w = rig.spawn(pod("Always"));
    rig.running(0).await;
    let now = rig.clock.now();
    w.desired.send_modify(|d| {
        d.pod.metadata.deletion_timestamp = Some(Time(now));
        d.pod.metadata.deletion_grace_period_seconds = Some(30);
        d.terminate = Terminate::Graceful;
    });
    within(w.done.recv()).await;
    let ev = event(&rig, "Killing").await;
    assert_eq!(ev.message.as_deref(), Some("Stopping container app"));
    assert_eq!(ev.type_.as_deref(), Some("Normal"));
}

#[tokio::test]
async fn a_pod_waiting_for_its_configmap_starts_at_the_next_fast_retry_once_it_exists() {
    let rig = Rig::new();
    let _w = rig.spawn(with_volume(
        json!({"name": "data", "configMap": {"name": "cfg"}}),
    ));
    rig.status_where(|s| waiting_reason(s).as_deref() == Some("ContainerCreating"))
        .await;
    let ev = event(&rig, "FailedMount").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(
        ev.message.as_deref(),
        Some("MountVolume.SetUp failed for volume \"data\" : configmap \"cfg\" not found")
    );
    assert_eq!(
        ev.involved_object.field_path, None,
        "a mount failure is about the pod"
    );
    // Retries while it is missing: one Event, its count bumped at growing intervals only.
    for _ in 0..6 {
        let looked = image_lookups(&rig);
        rig.clock.advance(SOURCE_RETRY);
        within(async {
            while image_lookups(&rig) == looked {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }
    let mounts: Vec<_> = rig
        .api
        .calls()
        .events
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("FailedMount"))
        .collect();
    assert!(
        mounts.iter().all(|e| e.metadata.name == ev.metadata.name),
        "one FailedMount Event"
    );
    assert!(
        mounts.len() < 6,
        "not one write per retry: {}",
        mounts.len()
    );

    rig.api.add_configmap("cfg", &[("k", "v")]);
    rig.clock.advance(SOURCE_RETRY);
    let c = rig.running(0).await;
    assert_eq!(c.restart_count, 0);
}

#[tokio::test]
async fn a_pod_waiting_for_its_claim_to_bind_is_retried_soon_not_after_the_crash_back_off() {
    let rig = Rig::new();
    let _w = rig.spawn(with_volume(
        json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}}),
    ));
    let ev = event(&rig, "FailedMount").await;
    assert!(
        ev.message
            .as_deref()
            .is_some_and(|m| m.contains("\"data-web-0\" is not bound")),
        "{ev:?}"
    );
    let dir = rig._dir.path().join("pv");
    std::fs::create_dir_all(&dir).unwrap();
    rig.api.bind_claim("data-web-0", dir);
    // Within one fast retry; the crash back-off would have waited 10 s of the clock.
    rig.clock.advance(SOURCE_RETRY + Duration::from_millis(10));
    rig.running(0).await;
}

#[tokio::test]
async fn every_failed_liveness_attempt_records_unhealthy_then_the_kill_records_killing() {
    let rig = Rig::new();
    let mut p = serde_json::to_value(pod("Always")).unwrap();
    // The fake runtime's exec fails anything but `true`; a 1 s period is the API's minimum.
    p["spec"]["containers"][0]["livenessProbe"] = json!({
        "exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2
    });
    let _w = rig.spawn(serde_json::from_value(p).unwrap());
    rig.running(0).await;
    let kill = event(&rig, "Killing").await;
    assert_eq!(
        kill.message.as_deref(),
        Some("Container app failed liveness probe, will be restarted")
    );
    let unhealthy = rig
        .api
        .calls()
        .events
        .into_iter()
        .rev()
        .find(|e| e.reason.as_deref() == Some("Unhealthy"))
        .expect("Unhealthy events");
    assert_eq!(
        unhealthy.message.as_deref(),
        Some("Liveness probe failed: command [\"false\"] exited with 1")
    );
    assert_eq!(unhealthy.type_.as_deref(), Some("Warning"));
    assert_eq!(
        unhealthy.count,
        Some(2),
        "one per failed attempt, aggregated by the recorder"
    );
}
