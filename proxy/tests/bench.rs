//! Data path benchmark (ignored by default; numbers in proxy/BENCH.md):
//!   cargo test -p corral-proxy --release --test bench -- --ignored --nocapture
//! The same rig as the end-to-end test; from the node netns, a keep-alive load generator
//! measures requests/s and latency directly to the pod IPs, through the ClusterIP (iptables
//! DNAT) and through the Ingress (corral-proxy's reverse proxy), interleaved in rounds, and
//! prints PASS/FAIL against the targets (ClusterIP >= 90% of direct, Ingress >= 50%).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use corral_proxy::loadgen::{self, Options, Report, Target};

const PODS: &[&str] = &["pod-a", "pod-b", "pod-c"];
const INGRESS_PORT: u16 = 80;
/// Throughput targets as a share of direct pod throughput, by index into the modes: the
/// ClusterIP path stays in the kernel and should cost little; the Ingress is a userspace hop.
const TARGETS: &[(usize, f64)] = &[(1, 0.90), (2, 0.50)];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / clock_ticks()
}

fn clock_ticks() -> f64 {
    sh(&["getconf", "CLK_TCK"])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
async fn data_path_throughput_and_latency() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the data path benchmark: {why}");
        return;
    }
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    let secs: u64 = env_or("BENCH_SECS", 3);
    let concurrency: usize = env_or("BENCH_CONNS", 16);
    let max_requests: u64 = env_or("BENCH_MAX_REQUESTS", 2_000_000);

    let mut rig = Rig::new(PODS);
    let d = deploy(&mut rig).await;
    rig.start_proxy(INGRESS_PORT);
    let t = |addr: SocketAddr, host: &str| Target {
        addr,
        host: host.into(),
        path: "/".into(),
    };
    let direct: Vec<Target> = rig
        .pods
        .iter()
        .map(|p| t(SocketAddr::from((p.ip, 80)), "pod"))
        .collect();
    let cluster_ip = vec![t(SocketAddr::from((d.cluster_ip, 80)), "mi-app-svc")];
    let ingress = vec![t(
        SocketAddr::from((rig.node_ip, INGRESS_PORT)),
        "mi-app.com",
    )];
    // Both proxied paths answer before measuring.
    for target in [&cluster_ip[0], &ingress[0]] {
        let target = target.clone();
        eventually(15, "the data path answering", || {
            let target = target.clone();
            let h = rig.node_rt.handle.clone();
            async move {
                let r = h
                    .spawn(async move { loadgen::get_once(&target, Duration::from_secs(1)).await })
                    .await
                    .ok()?;
                matches!(r, Ok((200, _))).then_some(())
            }
        })
        .await;
    }

    let modes: [(&str, &Vec<Target>); 3] = [
        ("direct to pod IPs", &direct),
        ("ClusterIP (iptables)", &cluster_ip),
        ("Ingress (corral-proxy)", &ingress),
    ];
    let mut results: Vec<Vec<Report>> = vec![vec![]; modes.len()];
    // CPU µs per successful request: the proxy process, and this process (load generator,
    // pods, control plane), per mode.
    let mut cpu: Vec<Vec<(f64, f64)>> = vec![vec![]; modes.len()];
    let proxy_pid = rig.proxy.as_ref().expect("proxy started").id();
    let me = std::process::id();
    for round in 0..=rounds {
        for (i, (name, targets)) in modes.iter().enumerate() {
            let targets = (*targets).clone();
            let opts = Options {
                concurrency,
                max_requests,
                max_duration: Duration::from_secs(if round == 0 { 1 } else { secs }),
            };
            let (p0, m0) = (cpu_secs(proxy_pid), cpu_secs(me));
            let r = rig
                .node_rt
                .run(async move { loadgen::run(&targets, opts).await })
                .await;
            let per_req = |d: f64| 1e6 * d / r.requests.max(1) as f64;
            let (p, m) = (
                per_req(cpu_secs(proxy_pid) - p0),
                per_req(cpu_secs(me) - m0),
            );
            // Round 0 warms up connections, caches and the pool.
            if round > 0 {
                println!(
                    "round {round} {name:<24} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {}  CPU/req: proxy {p:.1} µs, rest {m:.1} µs",
                    r.rps(),
                    r.p50_ms(),
                    r.p99_ms(),
                    r.errors
                );
                results[i].push(r);
                cpu[i].push((p, m));
            }
        }
    }
    let direct_rps = median(results[0].iter().map(|r| r.rps()).collect());
    let mut ratios = vec![];
    println!();
    println!(
        "| path | req/s (median of {rounds}) | p50 ms | p99 ms | vs direct | errors | CPU µs/req proxy | CPU µs/req rest |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, (name, _)) in modes.iter().enumerate() {
        let rps = median(results[i].iter().map(|r| r.rps()).collect());
        let p50 = median(results[i].iter().map(|r| r.p50_ms()).collect());
        let p99 = median(results[i].iter().map(|r| r.p99_ms()).collect());
        let errors: u64 = results[i].iter().map(|r| r.errors).sum();
        let proxy_cpu = median(cpu[i].iter().map(|c| c.0).collect());
        let rest_cpu = median(cpu[i].iter().map(|c| c.1).collect());
        println!(
            "| {name} | {rps:.0} | {p50:.3} | {p99:.3} | {:.0}% | {errors} | {proxy_cpu:.1} | {rest_cpu:.1} |",
            100.0 * rps / direct_rps
        );
        assert!(
            results[i].iter().all(|r| r.requests > 0),
            "{name}: no successful request"
        );
        ratios.push(rps / direct_rps);
    }
    // The targets are reported, not asserted: on a shared machine a noisy run says little.
    println!();
    for (i, target) in TARGETS {
        let ratio = ratios[*i];
        println!(
            "{:<24} {:>4.0}% of direct (median), target >= {:.0}%: {}",
            modes[*i].0,
            100.0 * ratio,
            100.0 * target,
            if ratio >= *target { "PASS" } else { "FAIL" }
        );
    }
    println!(
        "\n{concurrency} keep-alive connections, {secs}s per run, {rounds} rounds after a warm-up, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    assert!(rig.stop_proxy());
}
