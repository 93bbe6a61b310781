//! REST API figures beside their gRPC counterparts, in one run on one control plane (TLS, the
//! admin's client certificate): listing 1,000 pods (gRPC list, REST JSON list, and the REST
//! Table `kubectl get pods` asks for), and watch fan-out to 1,000 watchers over REST (HTTP/2
//! streams, JSON lines) and over gRPC, the same events to both.
//! Run: `cargo bench -p corral-controlplane --bench rest`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corral_api::{kinds, Client, ListParams};
use corral_controlplane::{start, Config};
use futures::StreamExt;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const PODS: usize = 1_000;
const LISTS: usize = 30;
const WATCHERS: usize = 1_000;
/// Watchers per connection (REST) or per client (gRPC): 10 connections each way.
const PER_CONNECTION: usize = 100;
const EVENTS: usize = 20;

/// kubectl's Accept for human output (a Table, else JSON).
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

async fn http2(
    addr: std::net::SocketAddr,
    creds: &corral_api::Credentials,
) -> SendRequest<Empty<Bytes>> {
    let mut config = (*corral_api::tls::client_config(creds, "bench").expect("tls")).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("tls handshake");
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(64 << 20)
        .handshake(TokioIo::new(tls))
        .await
        .expect("http2 handshake");
    tokio::spawn(conn);
    sender
}

fn get(path: &str, accept: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("https://localhost{path}"))
        .header(http::header::ACCEPT, accept)
        .body(Empty::new())
        .expect("request")
}

/// Median and p99 of `runs` timings, in ms, and the last body's size.
async fn time_lists<F, Fut>(runs: usize, mut list: F) -> (f64, f64, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        size = list().await;
        h.record(t.elapsed().as_micros().max(1) as u64)
            .expect("record");
    }
    (
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        size,
    )
}

fn now_micros(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

/// The write time a watched ConfigMap carries.
fn sent_at(obj: &Value) -> Option<u64> {
    obj.pointer("/data/t")?.as_str()?.parse().ok()
}

fn report(what: &str, h: &Histogram<u64>) {
    println!(
        "{what}: {} deliveries to {WATCHERS} watchers; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        h.len(),
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
}

/// Writes `EVENTS` ConfigMaps, each carrying its write time, and collects every watcher's
/// delivery latencies until all have arrived (or a minute passes).
async fn fan_out(
    client: &Client,
    ns: &str,
    epoch: Instant,
    mut rx: mpsc::UnboundedReceiver<u64>,
) -> Histogram<u64> {
    for i in 0..EVENTS {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("e-{i}"), "namespace": ns},
            "data": {"t": now_micros(epoch).to_string()}});
        client
            .create_value(&kinds::CONFIGMAPS, ns, &cm, false)
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (h.len() as usize) < WATCHERS * EVENTS {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(lat)) => h.record(lat.max(1)).expect("record"),
            _ => break,
        }
    }
    h
}

async fn rest_watchers(
    addr: std::net::SocketAddr,
    creds: &corral_api::Credentials,
    ns: &str,
    rv: &str,
    epoch: Instant,
) -> mpsc::UnboundedReceiver<u64> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<()>();
    for _ in 0..WATCHERS / PER_CONNECTION {
        let sender = http2(addr, creds).await;
        for _ in 0..PER_CONNECTION {
            let mut sender = sender.clone();
            let (tx, ready_tx) = (tx.clone(), ready_tx.clone());
            let path =
                format!("/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={rv}");
            tokio::spawn(async move {
                sender.ready().await.expect("connection");
                let resp = sender
                    .send_request(get(&path, "application/json"))
                    .await
                    .expect("watch");
                assert_eq!(resp.status(), 200);
                let _ = ready_tx.send(());
                let mut body = resp.into_body();
                let mut buf: Vec<u8> = Vec::new();
                while let Some(Ok(frame)) = body.frame().await {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    buf.extend_from_slice(&data);
                    while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=nl).collect();
                        let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                            continue;
                        };
                        if let Some(sent) = sent_at(&ev["object"]) {
                            let _ = tx.send(now_micros(epoch).saturating_sub(sent));
                        }
                    }
                }
            });
        }
    }
    for _ in 0..WATCHERS {
        ready.recv().await.expect("watcher started");
    }
    rx
}

async fn grpc_watchers(
    clients: &[Client],
    ns: &str,
    rv: i64,
    epoch: Instant,
) -> mpsc::UnboundedReceiver<u64> {
    let (tx, rx) = mpsc::unbounded_channel();
    for c in clients {
        for _ in 0..PER_CONNECTION {
            let mut w = Box::pin(
                c.watch_value(&kinds::CONFIGMAPS, ns, &ListParams::default(), rv)
                    .await
                    .expect("watch"),
            );
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(Ok(ev)) = w.next().await {
                    if let corral_api::WatchEvent::Added(obj) = ev {
                        if let Some(sent) = sent_at(&obj) {
                            let _ = tx.send(now_micros(epoch).saturating_sub(sent));
                        }
                    }
                }
            });
        }
    }
    rx
}

async fn namespace(client: &Client, ns: &str) {
    client
        .create_value(
            &kinds::NAMESPACES,
            "",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            false,
        )
        .await
        .expect("namespace");
}

async fn latest_rv(client: &Client, ns: &str) -> i64 {
    let (_, rv) = client
        .list_value(&kinds::CONFIGMAPS, ns, &ListParams::default())
        .await
        .expect("list");
    rv
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().join("cp"),
        controllers: false,
        ..Config::default()
    };
    let running = start(config).await.expect("control plane");
    let creds = running.admin_credentials();
    let client = running.client().await.expect("client");

    // 1. Listing 1,000 pods.
    namespace(&client, "bench").await;
    let client = Arc::new(client);
    let mut tasks = Vec::new();
    for w in 0..16 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < PODS {
                let pod = json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("web-{i}"), "namespace": "bench",
                                 "labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "fedek3/workshop-uns:v0.2.0",
                                             "ports": [{"containerPort": 80}]}]}});
                client
                    .create_value(&kinds::PODS, "bench", &pod, false)
                    .await
                    .expect("create pod");
                i += 16;
            }
        }));
    }
    for t in tasks {
        t.await.expect("creator");
    }
    let rest = http2(running.addr, &creds).await;
    let rest_list = |accept: &'static str| {
        let rest = rest.clone();
        move || {
            let mut rest = rest.clone();
            async move {
                let resp = rest
                    .send_request(get("/api/v1/namespaces/bench/pods", accept))
                    .await
                    .expect("list");
                assert_eq!(resp.status(), 200);
                resp.into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes()
                    .len()
            }
        }
    };
    for round in 1..=2 {
        let grpc = time_lists(LISTS, || {
            let client = client.clone();
            async move {
                let (items, _) = client
                    .list_value(&kinds::PODS, "bench", &ListParams::default())
                    .await
                    .expect("list");
                items.len()
            }
        })
        .await;
        let json = time_lists(LISTS, rest_list("application/json")).await;
        let table = time_lists(LISTS, rest_list(TABLE)).await;
        println!(
            "list {PODS} pods, round {round} ({LISTS} lists each): gRPC p50 {:.1} ms p99 {:.1} ms; REST JSON p50 {:.1} ms p99 {:.1} ms ({} KiB); REST Table (kubectl get pods) p50 {:.1} ms p99 {:.1} ms ({} KiB)",
            grpc.0, grpc.1, json.0, json.1, json.2 / 1024, table.0, table.1, table.2 / 1024
        );
    }

    // 2. Watch fan-out, REST then gRPC then REST again, each with fresh watchers.
    let epoch = Instant::now();
    let clients: Vec<Client> =
        futures::future::join_all((0..WATCHERS / PER_CONNECTION).map(|_| running.client()))
            .await
            .into_iter()
            .map(|c| c.expect("client"))
            .collect();
    for (i, transport) in ["REST", "gRPC", "REST", "gRPC"].into_iter().enumerate() {
        let ns = format!("fan-{i}");
        namespace(&client, &ns).await;
        let rv = latest_rv(&client, &ns).await;
        let rx = if transport == "REST" {
            rest_watchers(running.addr, &creds, &ns, &rv.to_string(), epoch).await
        } else {
            grpc_watchers(&clients, &ns, rv, epoch).await
        };
        let h = fan_out(&client, &ns, epoch, rx).await;
        report(&format!("watch fan-out over {transport}"), &h);
    }
}
