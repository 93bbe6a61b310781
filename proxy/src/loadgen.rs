//! A small HTTP/1.1 load generator for the data path benchmark: `concurrency` keep-alive
//! connections sending GETs back to back, bounded by a request count and a duration, with
//! latencies in an HDR histogram. Sockets are made by the calling thread's network namespace.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Host header.
    pub host: String,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub concurrency: usize,
    pub max_requests: u64,
    pub max_duration: Duration,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies of successful requests, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Report {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn p50_ms(&self) -> f64 {
        self.latency_us.value_at_quantile(0.50) as f64 / 1000.0
    }
    pub fn p99_ms(&self) -> f64 {
        self.latency_us.value_at_quantile(0.99) as f64 / 1000.0
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

fn request(t: &Target) -> http::Request<Empty<Bytes>> {
    http::Request::get(t.path.as_str())
        .header(http::header::HOST, t.host.as_str())
        .body(Empty::new())
        .expect("valid request")
}

/// One GET on a fresh connection: status and body. Used by tests to see which pod answered.
pub async fn get_once(
    target: &Target,
    timeout: Duration,
) -> Result<(u16, String), Box<dyn std::error::Error + Send + Sync>> {
    tokio::time::timeout(timeout, async {
        let mut sender = connect(target.addr).await?;
        let resp = sender.send_request(request(target)).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).trim().to_string()))
    })
    .await?
}

/// Runs the load; worker `i` sends to `targets[i % len]` (several targets spread the load the
/// way a balancer would).
pub async fn run(targets: &[Target], opts: Options) -> Report {
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + opts.max_duration;
    let workers: Vec<_> = (0..if targets.is_empty() {
        0
    } else {
        opts.concurrency.max(1)
    })
        .map(|i| {
            let (target, issued) = (targets[i % targets.len()].clone(), issued.clone());
            // (an empty `targets` spawns no worker: see the range below)
            let max = opts.max_requests;
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                    .expect("valid histogram bounds");
                let (mut ok, mut errors) = (0u64, 0u64);
                let mut sender: Option<Sender> = None;
                while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max {
                    let t0 = Instant::now();
                    let s = match sender.as_mut() {
                        Some(s) => s,
                        None => match connect(target.addr).await {
                            Ok(s) => sender.insert(s),
                            Err(_) => {
                                errors += 1;
                                continue;
                            }
                        },
                    };
                    let result = async {
                        let resp = s.send_request(request(&target)).await?;
                        let status = resp.status();
                        resp.into_body().collect().await?;
                        Ok::<_, hyper::Error>(status)
                    }
                    .await;
                    match result {
                        Ok(status) if status.is_success() => {
                            ok += 1;
                            let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                        }
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            sender = None;
                        }
                    }
                }
                (ok, errors, hist)
            })
        })
        .collect();
    let mut report = Report {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
    };
    for w in workers {
        if let Ok((ok, errors, hist)) = w.await {
            report.requests += ok;
            report.errors += errors;
            let _ = report.latency_us.add(&hist);
        }
    }
    report.elapsed = start.elapsed();
    report
}
