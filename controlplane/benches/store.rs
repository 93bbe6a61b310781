//! Store benchmark: acknowledged writes per second, and watch fan-out latency to 1,000
//! watchers, on SQLite (group commit) and then, in the same run, on a 3-member etcd on
//! loopback (Debian's etcd-server; skipped without it), the same workload through the same
//! `Store` trait, ending with one line per store (writes/s, watch delivery p99 from write to
//! event seen). Run: `cargo bench -p corral-controlplane --bench store`.
//! Targets (issue 2): >= 10,000 writes/s; watch delivery p99 <= 10 ms (SQLite).

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_controlplane::store::etcd::{EtcdConfig, EtcdStore};
use corral_controlplane::store::sqlite::SqliteStore;
use corral_controlplane::store::Store;

#[path = "../tests/common/etcd.rs"]
#[allow(dead_code)]
mod etcd;
use futures::StreamExt;
use hdrhistogram::Histogram;

const WRITES: usize = 50_000;
const WRITERS: usize = 256;
const WATCHERS: usize = 1_000;
const FANOUT_EVENTS: usize = 500;

fn object(i: usize) -> Vec<u8> {
    // About the size of a small pod object in Kubernetes JSON.
    let pad = "x".repeat(900);
    format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p-{i}","namespace":"bench"}},"spec":{{"pad":"{pad}"}}}}"#)
        .into_bytes()
}

fn now_micros(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("bench.db")).expect("open store"));
    let mut figures = vec![run("SQLite (synchronous=FULL, group commit)", sqlite).await];
    match etcd::EtcdCluster::start(3) {
        None => println!("etcd: skipped (no /usr/bin/etcd)"),
        Some(cluster) => {
            let store: Arc<dyn Store> = Arc::new(
                EtcdStore::connect(&EtcdConfig {
                    endpoints: cluster.endpoints(),
                    ..Default::default()
                })
                .await
                .expect("connect to etcd"),
            );
            figures.push(run("etcd 3.4, 3 members on loopback", store).await);
        }
    }
    println!("== summary (same run)");
    for f in &figures {
        println!(
            "{:<40} {:>8.0} writes/s   watch delivery p99 {:>7.2} ms",
            f.name, f.writes_per_sec, f.watch_p99_ms
        );
    }
}

/// One store's figures.
struct Figures {
    name: String,
    writes_per_sec: f64,
    watch_p99_ms: f64,
}

async fn run(name: &str, store: Arc<dyn Store>) -> Figures {
    println!("== {name}");

    // 1. Acknowledged writes per second: many concurrent clients, each waiting for its ack.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < WRITES {
                store
                    .create(&format!("/registry/pods/bench/p-{i}"), object(i))
                    .await
                    .expect("write");
                i += WRITERS;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "store writes: {WRITES} acknowledged creates by {WRITERS} concurrent clients in {secs:.2} s = {:.0} writes/s",
        WRITES as f64 / secs
    );

    // 2. Watch fan-out: 1,000 watchers on one prefix, events written at a steady pace; each
    // event carries its write time, each watcher records delivery latency.
    let epoch = Instant::now();
    let rev = store.current_revision().await.expect("revision");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    for _ in 0..WATCHERS {
        let mut w = store.watch("/registry/leases/", rev).await.expect("watch");
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            while let Some(Ok(ev)) = w.next().await {
                let sent: u64 = std::str::from_utf8(&ev.kv.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let _ = tx.send(now_micros(epoch).saturating_sub(sent));
                seen += 1;
                if seen == FANOUT_EVENTS {
                    break;
                }
            }
        });
    }
    drop(tx);
    let writer = store.clone();
    tokio::spawn(async move {
        for i in 0..FANOUT_EVENTS {
            let value = now_micros(epoch).to_string().into_bytes();
            writer
                .create(&format!("/registry/leases/l-{i}"), value)
                .await
                .expect("write");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    while let Some(lat) = rx.recv().await {
        hist.record(lat.max(1)).expect("record");
    }
    println!(
        "watch fan-out: {} deliveries to {WATCHERS} watchers; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        hist.len(),
        hist.value_at_quantile(0.50) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0
    );
    Figures {
        name: name.to_string(),
        writes_per_sec: WRITES as f64 / secs,
        watch_p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
    }
}
