//! API benchmark: the same workload through the gRPC API with TLS (client certificate,
//! authentication and authorization on every request) and through the explicit plaintext
//! listener, in alternating rounds of one run so both see the same machine.
//! Run: `cargo bench -p corral-controlplane --bench api`.
//! Targets (issue 13): TLS costs at most 10% of writes/s, and p99 of a read within 1 ms;
//! a client keeps one connection (one TLS handshake however many requests it makes).

use std::sync::Arc;
use std::time::Instant;

use corral_api::{kinds, Client, ListParams};
use corral_controlplane::{start, Config};
use hdrhistogram::Histogram;
use serde_json::json;

const ROUNDS: usize = 3;
const WRITES: usize = 10_000;
const WRITERS: usize = 64;
const READS: usize = 5_000;

struct Figures {
    writes_per_sec: f64,
    get_p50_us: u64,
    get_p99_us: u64,
    handshakes: u64,
}

async fn round(tls: bool, round: usize) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().join("cp"),
        controllers: false,
        insecure_plaintext: !tls,
        ..Config::default()
    };
    let running = start(config).await.expect("control plane");
    let before = corral_api::tls::handshakes();
    let client: Client = running.client().await.expect("client");
    let ns = format!("bench-{round}");
    client
        .create_value(
            &kinds::NAMESPACES,
            "",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            false,
        )
        .await
        .expect("namespace");

    // 1. Acknowledged creates from many concurrent callers sharing the one client (as a
    // component does: one HTTP/2 connection, many streams).
    let client = Arc::new(client);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let client = client.clone();
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < WRITES {
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("cm-{i}"), "namespace": ns},
                    "data": {"k": "x".repeat(512)}});
                client
                    .create_value(&kinds::CONFIGMAPS, &ns, &cm, false)
                    .await
                    .expect("create");
                i += WRITERS;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let writes_per_sec = WRITES as f64 / started.elapsed().as_secs_f64();

    // 2. Latency of one read at a time.
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..READS {
        let t = Instant::now();
        client
            .get_value(&kinds::CONFIGMAPS, &ns, &format!("cm-{}", i % WRITES))
            .await
            .expect("get");
        h.record(t.elapsed().as_micros() as u64).expect("record");
    }
    let _ = client
        .list_value(&kinds::CONFIGMAPS, &ns, &ListParams::default())
        .await
        .expect("list");
    let handshakes = corral_api::tls::handshakes() - before;
    drop(client);
    running.shutdown().await;
    Figures {
        writes_per_sec,
        get_p50_us: h.value_at_quantile(0.5),
        get_p99_us: h.value_at_quantile(0.99),
        handshakes,
    }
}

#[tokio::main]
async fn main() {
    println!("API: {WRITES} creates by {WRITERS} concurrent callers on one client, then {READS} gets one at a time");
    for r in 0..ROUNDS {
        for tls in [true, false] {
            let f = round(tls, r).await;
            println!(
                "round {r} {:9}: {:>7.0} writes/s, get p50 {:>5} us, p99 {:>5} us, TLS handshakes {}",
                if tls { "TLS" } else { "plaintext" },
                f.writes_per_sec,
                f.get_p50_us,
                f.get_p99_us,
                f.handshakes
            );
        }
    }
}
