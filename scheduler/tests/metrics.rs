//! The scheduler's `/metrics`: served over HTTP, valid text, and its counters and histograms
//! move with the work (pods bound, a pod no node fits).

mod common;

use std::sync::Arc;

use common::*;
use corral_api::runtime::metrics::{samples, serve, Registry};
use corral_scheduler::{Config, Scheduler};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_attempts_and_latencies_are_exposed_and_move_with_the_work() {
    let c = cluster().await;
    node(&c.client, "n1", "1", json!({})).await;
    let scheduler = Scheduler::new(c.client.clone(), Config::default());
    let mut registry = Registry::default();
    scheduler.metrics().register(&mut registry);
    let (addr, _server) = serve("127.0.0.1:0".parse().unwrap(), Arc::new(registry))
        .await
        .unwrap();
    let (_tx, rx) = watch::channel(true);
    let _run = Aborting(tokio::spawn(async move { scheduler.run(rx).await }));

    let before = samples(&scrape(addr).await).unwrap();
    assert_eq!(
        before.get("scheduler_pod_scheduling_sli_duration_seconds_count"),
        Some(&0.0)
    );
    for i in 0..3 {
        pod(&c.client, &format!("fits-{i}"), "100m", json!({})).await;
    }
    pod(&c.client, "too-big", "4", json!({})).await;
    for i in 0..3 {
        bound(&c.client, &format!("fits-{i}")).await;
    }
    let after = eventually(10, "the unschedulable attempt to be counted", || async {
        let s = samples(&scrape(addr).await).unwrap();
        s.contains_key("scheduler_schedule_attempts_total{result=\"unschedulable\"}")
            .then_some(s)
    })
    .await;
    assert_eq!(
        after["scheduler_schedule_attempts_total{result=\"scheduled\"}"],
        3.0
    );
    assert_eq!(
        after["scheduler_pod_scheduling_sli_duration_seconds_count"],
        3.0
    );
    assert_eq!(
        after["scheduler_scheduling_attempt_duration_seconds_count"],
        3.0
    );
    assert!(after["scheduler_scheduling_algorithm_duration_seconds_count"] >= 4.0);
    assert!(after["scheduler_pending_pods"] >= 1.0, "the big pod waits");
}
