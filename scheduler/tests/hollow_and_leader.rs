//! Hollow nodes and leader election, over real gRPC against an in-process control plane.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use corral_api::k8s::api::coordination::v1::Lease;
use corral_api::k8s::api::core::v1::{Node, Pod};
use corral_api::runtime::{LeaderConfig, LeaderElector};
use corral_api::{DeleteOptions, ListParams};
use corral_scheduler::hollow::{Hollow, HollowConfig};
use corral_scheduler::{Config, Scheduler};
use serde_json::json;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_register_heartbeat_run_pods_and_confirm_deletions() {
    let c = cluster().await;
    let hollow = Hollow::new(
        c.client.clone(),
        HollowConfig {
            nodes: 3,
            lease_renew: Duration::from_millis(500),
            ..Default::default()
        },
    );
    let _h = Aborting(tokio::spawn(async move {
        hollow.run().await.expect("hollow nodes run");
    }));
    let nodes = eventually(20, "3 hollow nodes", || async {
        let (nodes, _) = c
            .client
            .list::<Node>("", &ListParams::default())
            .await
            .ok()?;
        (nodes.len() == 3).then_some(nodes)
    })
    .await;
    for n in &nodes {
        let st = n.status.as_ref().unwrap();
        assert!(st
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"));
        assert_eq!(st.allocatable.as_ref().unwrap()["cpu"].0, "8");
    }
    // Leases are renewed: renewTime moves forward.
    let t0 = eventually(20, "the lease of hollow-node-0", || async {
        let l: Lease = c
            .client
            .get("kube-node-lease", "hollow-node-0")
            .await
            .ok()?;
        Some(l.spec?.renew_time?.0)
    })
    .await;
    eventually(20, "a lease renewal", || async {
        let l: Lease = c
            .client
            .get("kube-node-lease", "hollow-node-0")
            .await
            .ok()?;
        (l.spec?.renew_time?.0 > t0).then_some(())
    })
    .await;

    let _s = scheduler(&c.client);
    for i in 0..6 {
        pod(&c.client, &format!("p-{i}"), "100m", json!({})).await;
    }
    for i in 0..6 {
        let name = format!("p-{i}");
        let ip = eventually(20, &format!("{name} Running"), || async {
            let p: Pod = c.client.get("default", &name).await.ok()?;
            let st = p.status?;
            (st.phase.as_deref() == Some("Running")).then_some(st.pod_ip?)
        })
        .await;
        assert!(ip.starts_with("10.64."), "{ip}");
    }
    // Graceful delete: the hollow node confirms it and the pod disappears.
    c.client
        .delete::<Pod>("default", "p-0", DeleteOptions::default())
        .await
        .unwrap();
    eventually(20, "p-0 removed", || async {
        c.client
            .get_opt::<Pod>("default", "p-0")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

fn elector(c: &Cluster, identity: &str) -> LeaderElector {
    LeaderElector::new(
        c.client.clone(),
        LeaderConfig {
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(1500),
            retry_period: Duration::from_millis(200),
            ..LeaderConfig::new(corral_scheduler::LEADER_LEASE, identity)
        },
    )
}

/// A scheduler with its elector; both stop when the handle drops (a crash).
fn candidate(c: &Cluster, identity: &str) -> (Aborting, Arc<corral_scheduler::metrics::Metrics>) {
    let s = Scheduler::new(
        c.client.clone(),
        Config {
            identity: identity.into(),
            ..Default::default()
        },
    );
    let metrics = s.metrics();
    let (tx, rx) = watch::channel(false);
    let mut e = elector(c, identity);
    let task = tokio::spawn(async move {
        tokio::select! {
            _ = s.run(rx) => {}
            _ = e.run(tx) => {}
        }
    });
    (Aborting(task), metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_schedules_and_a_standby_takes_over_when_it_dies() {
    let c = cluster().await;
    node(&c.client, "n1", "8", json!({})).await;
    let (a, a_metrics) = candidate(&c, "sched-a");
    eventually(10, "sched-a to hold the lease", || async {
        let l: Lease = c.client.get("kube-system", "corral-scheduler").await.ok()?;
        (l.spec?.holder_identity.as_deref() == Some("sched-a")).then_some(())
    })
    .await;
    let (_b, b_metrics) = candidate(&c, "sched-b");
    for i in 0..5 {
        pod(&c.client, &format!("first-{i}"), "10m", json!({})).await;
    }
    for i in 0..5 {
        bound(&c.client, &format!("first-{i}")).await;
    }
    assert_eq!(a_metrics.bound(), 5);
    assert_eq!(b_metrics.bound(), 0, "the standby must not bind");

    drop(a);
    let lease = eventually(20, "sched-b to take the lease over", || async {
        let l: Lease = c.client.get("kube-system", "corral-scheduler").await.ok()?;
        (l.spec.as_ref()?.holder_identity.as_deref() == Some("sched-b")).then_some(l)
    })
    .await;
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
    for i in 0..5 {
        pod(&c.client, &format!("second-{i}"), "10m", json!({})).await;
    }
    for i in 0..5 {
        bound(&c.client, &format!("second-{i}")).await;
    }
    assert_eq!(b_metrics.bound(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_candidates_racing_for_a_free_lease_elect_exactly_one() {
    let c = cluster().await;
    let mut a = elector(&c, "a");
    let mut b = elector(&c, "b");
    let (ra, rb) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra.is_ok() != rb.is_ok(), "exactly one wins: {ra:?} {rb:?}");
    // The loser keeps losing while the winner renews.
    let (winner, loser) = if ra.is_ok() {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    for _ in 0..3 {
        assert!(winner.try_acquire_or_renew().await.unwrap().is_ok());
        assert!(loser.try_acquire_or_renew().await.unwrap().is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_over_at_once() {
    let c = cluster().await;
    let mut a = elector(&c, "a");
    let mut b = elector(&c, "b");
    assert!(a.try_acquire_or_renew().await.unwrap().is_ok());
    assert!(b.try_acquire_or_renew().await.unwrap().is_err());
    a.release().await.unwrap();
    assert!(b.try_acquire_or_renew().await.unwrap().is_ok());
    let l: Lease = c
        .client
        .get("kube-system", "corral-scheduler")
        .await
        .unwrap();
    assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("b"));
}
