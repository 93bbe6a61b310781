//! Startup-latency benchmark: Corral (API create + bind → the agent reports the container
//! running, image present) against raw containerd (container create + task start of the same
//! image through the same gRPC API), in the same run; then the agent's RSS with 20 pods.
//!
//! cargo test -p corral-agent --release --test bench -- --ignored --nocapture

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, DEADLINE};
use corral_agent::runtime::{ContainerRuntime, CreateContainer, TaskState};
use corral_api::client::{ListParams, WatchEvent};
use corral_api::k8s::api::core::v1::Pod;
use futures::StreamExt;
use hdrhistogram::Histogram;

const SAMPLES: usize = 20;

fn raw_spec(i: usize) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2-dev",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["sleep", "3600"], "env": ["PATH=/bin"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "hostname": format!("raw-{i}"),
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}
        ],
        "linux": {
            "cgroupsPath": format!("/corral-bench/raw-{i}"),
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}],
            "resources": {"devices": [{"allow": false, "access": "rwm"}]}
        }
    })
}

fn running(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn startup_latency_against_raw_containerd() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    c.wait_node_ready().await;
    let rt = c.runtime().await;

    // Raw containerd: same image, same gRPC calls the agent makes (create, prepare, task
    // create + start), no API server and no CNI.
    let mut raw = Histogram::<u64>::new(3).unwrap();
    for i in 0..SAMPLES {
        let id = format!("raw-{i}");
        let t0 = Instant::now();
        rt.create(&CreateContainer {
            id: id.clone(),
            image: "corral-test/sleeper:v1".into(),
            spec: raw_spec(i),
            labels: HashMap::new(),
            log_path: c.dir.path().join(format!("raw/{i}.log")),
        })
        .await
        .unwrap();
        rt.start(&id).await.unwrap();
        raw.record(t0.elapsed().as_micros() as u64).unwrap();
    }
    for i in 0..SAMPLES {
        rt.remove(&format!("raw-{i}")).await.unwrap();
    }
    let raw_ids: Vec<String> = (0..SAMPLES).map(|i| format!("raw-{i}")).collect();
    common::remove_cgroups("corral-bench", &raw_ids);

    // Corral: API create + bind until the pod's status (posted by the agent) says running.
    let params = ListParams::fields(format!("spec.nodeName={}", c.name));
    let mut stream = c.client.watch::<Pod>("default", &params, 0).await.unwrap();
    let mut corral = Histogram::<u64>::new(3).unwrap();
    for i in 0..SAMPLES {
        let name = format!("bench-{i}");
        let t0 = Instant::now();
        c.create_pod(&name, "corral-test/sleeper:v1", None).await;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let ev = tokio::time::timeout_at(deadline, stream.next())
                .await
                .unwrap_or_else(|_| panic!("{name} never ran\n{}", c.agent_log()))
                .expect("watch open")
                .unwrap();
            if let WatchEvent::Modified(p) = ev {
                if p.metadata.name.as_deref() == Some(name.as_str()) && running(&p) {
                    break;
                }
            }
        }
        corral.record(t0.elapsed().as_micros() as u64).unwrap();
    }
    let live = rt
        .list()
        .await
        .unwrap()
        .iter()
        .filter(|c| matches!(c.state, TaskState::Running { .. }))
        .count();
    assert_eq!(live, SAMPLES);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib(c.agent.as_ref().unwrap().id());

    if std::env::var_os("CORRAL_BENCH_AGENT_LOG").is_some() {
        println!("{}", c.agent_log());
    }
    println!("pod startup latency, {SAMPLES} sequential pods, image present");
    println!(
        "  raw containerd (create+start): p50 {:.1} ms  p99 {:.1} ms",
        ms(&raw, 0.5),
        ms(&raw, 0.99)
    );
    println!(
        "  corral (API create → Running): p50 {:.1} ms  p99 {:.1} ms",
        ms(&corral, 0.5),
        ms(&corral, 0.99)
    );
    println!(
        "  ratio: p50 {:.2}x  p99 {:.2}x",
        ms(&corral, 0.5) / ms(&raw, 0.5),
        ms(&corral, 0.99) / ms(&raw, 0.99)
    );
    println!(
        "  agent RSS with {SAMPLES} pods running: {:.1} MiB",
        rss as f64 / 1024.0
    );
}
