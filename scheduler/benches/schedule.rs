//! End-to-end scheduling benchmark: a control plane and hollow nodes in child processes (this
//! same binary, re-executed with a role), the scheduler alone in this process so its RSS is
//! its own. Pods are created through the API by a third child; the clock stops when every
//! bind has been acknowledged (the server acknowledges after the store commit), and the
//! bound count is then checked with a list.
//!
//!   cargo bench -p corral-scheduler --bench schedule
//!   BENCH_NODES=5000 BENCH_PODS=10000 cargo bench -p corral-scheduler --bench schedule
//!   BENCH_DATASTORE=etcd://127.0.0.1:2379 cargo bench ...   (the cluster in an empty etcd)

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corral_api::k8s::api::core::v1::Pod;
use corral_api::{Client, ListParams};
use corral_scheduler::hollow::{Hollow, HollowConfig};
use corral_scheduler::{Config, Scheduler};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::watch;

const ROLE: &str = "CORRAL_BENCH_ROLE";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match std::env::var(ROLE).as_deref() {
        Ok("controlplane") => rt.block_on(controlplane()),
        Ok("hollow") => rt.block_on(hollow()),
        Ok("creator") => rt.block_on(creator()),
        _ => rt.block_on(parent()),
    }
}

/// A client for `server` with the admin credentials in `CORRAL_KUBECONFIG` (none: plaintext).
async fn bench_client(server: &str) -> anyhow::Result<Client> {
    let kubeconfig = std::env::var("CORRAL_KUBECONFIG").unwrap_or_default();
    bench_client_with(server, &kubeconfig).await
}

async fn bench_client_with(server: &str, kubeconfig: &str) -> anyhow::Result<Client> {
    let path = (!kubeconfig.is_empty()).then(|| std::path::PathBuf::from(kubeconfig));
    let (server, creds) = corral_api::kubeconfig::for_component(path.as_deref(), Some(server))?;
    Ok(Client::connect_with(&server, &creds).await?)
}

/// Runs until stdin closes (the parent exited).
async fn until_parent_exits() {
    let _ = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        while std::io::stdin()
            .read_line(&mut s)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    })
    .await;
}

async fn controlplane() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cp = corral_controlplane::start(corral_controlplane::Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().to_path_buf(),
        controllers: false,
        // BENCH_PLAINTEXT=1 measures the same run without TLS.
        insecure_plaintext: std::env::var("BENCH_PLAINTEXT").as_deref() == Ok("1"),
        // BENCH_DATASTORE=etcd://127.0.0.1:2379 measures it with the cluster in etcd.
        datastore: match std::env::var("BENCH_DATASTORE") {
            Ok(spec) => Some(corral_controlplane::store::etcd::EtcdConfig {
                endpoints: corral_controlplane::store::etcd::EtcdConfig::parse_endpoints(&spec)?,
                ..Default::default()
            }),
            Err(_) => None,
        },
        ..Default::default()
    })
    .await?;
    let kubeconfig = cp
        .admin_kubeconfig()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!("ADDR {} {} {kubeconfig}", cp.url(), cp.addr);
    std::io::stdout().flush()?;
    until_parent_exits().await;
    drop(cp);
    Ok(())
}

async fn hollow() -> anyhow::Result<()> {
    let server = std::env::var("CORRAL_SERVER")?;
    let nodes = env_usize("BENCH_NODES", 5000);
    let client = bench_client(&server).await?;
    let hollow = Hollow::new(
        client,
        HollowConfig {
            nodes,
            run_pods: env_usize("BENCH_RUN_PODS", 1) != 0,
            ..Default::default()
        },
    );
    let started = Instant::now();
    hollow.register().await?;
    println!("REGISTERED {:.3}", started.elapsed().as_secs_f64());
    std::io::stdout().flush()?;
    tokio::select! {
        r = hollow.run() => r?,
        _ = until_parent_exits() => {}
    }
    Ok(())
}

async fn creator() -> anyhow::Result<()> {
    let server = std::env::var("CORRAL_SERVER")?;
    let pods = env_usize("BENCH_PODS", 10_000);
    let concurrency = env_usize("BENCH_CREATE_CONCURRENCY", 256);
    let client = bench_client(&server).await?;
    let started = Instant::now();
    let failures = futures::stream::iter(0..pods)
        .map(|i| {
            let client = client.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("bench-{i}"), "namespace": "default",
                        "labels": {"app": "bench"}},
                    "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
                }))
                .expect("valid pod");
                client.create(&pod).await.is_err()
            }
        })
        .buffer_unordered(concurrency)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    println!(
        "CREATED {pods} {:.3} failures={failures}",
        started.elapsed().as_secs_f64()
    );
    std::io::stdout().flush()?;
    until_parent_exits().await;
    Ok(())
}

struct Kid {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Kid {
    fn spawn(role: &str, envs: &[(&str, String)]) -> anyhow::Result<Kid> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Kid { child, lines: rx })
    }

    fn expect(&self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).map_err(|_| {
                anyhow::anyhow!("child did not print {prefix:?} within {timeout:?}")
            })?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.trim().to_string());
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status(pid: &str, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is index 0, utime 11, stime 12 (clock ticks, 100/s).
    (ticks(11) + ticks(12)) / 100.0
}

/// The scheduling algorithm alone, on an in-memory cache shaped like the hollow cluster:
/// what the scheduler could place per second if binds cost nothing.
fn in_memory(nodes: usize, pods: usize, pct: u32) -> anyhow::Result<()> {
    use corral_scheduler::algorithm::Algorithm;
    use corral_scheduler::cache::Cache;
    use corral_scheduler::framework::Framework;
    use corral_scheduler::nodeinfo::NodeFacts;
    use corral_scheduler::podinfo::PodInfo;

    let mut cache = Cache::new();
    for i in 0..nodes {
        let name = format!("hollow-node-{i}");
        let node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]}
        }))?;
        cache.upsert_node(NodeFacts::from_node(&node)?, &name);
    }
    let mut alg = Algorithm::new(Framework::default(), pct);
    let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
    let started = Instant::now();
    for i in 0..pods {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("bench-{i}"), "namespace": "default", "uid": format!("uid-{i}")},
            "spec": {"containers": [{"name": "app", "image": "pause",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
        }))?;
        let info = PodInfo::from_pod(&pod)?;
        let t = Instant::now();
        let placed = alg
            .schedule(&info, &cache)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        cache.assume(info, &placed.node);
        h.record(t.elapsed().as_nanos() as u64)?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "in-memory algorithm: {pods} pods on {nodes} nodes in {secs:.2}s = {:.0} pods/s, per pod p50 {:.3} ms, p99 {:.3} ms",
        pods as f64 / secs,
        h.value_at_quantile(0.5) as f64 / 1e6,
        h.value_at_quantile(0.99) as f64 / 1e6
    );
    Ok(())
}

async fn parent() -> anyhow::Result<()> {
    let nodes = env_usize("BENCH_NODES", 5000);
    let pods = env_usize("BENCH_PODS", 10_000);
    let pct = env_usize("BENCH_PERCENTAGE", 0) as u32;
    if std::env::var("BENCH_MODE").as_deref() == Ok("algorithm") {
        return in_memory(nodes, pods, pct);
    }
    // e2e: the clock runs from the first create. queued: pods are created while the scheduler
    // is not leading, then it is made leader and the clock measures placing and binding only.
    let queued = std::env::var("BENCH_MODE").as_deref() == Ok("queued");
    let run_pods = env_usize("BENCH_RUN_PODS", 1) != 0;
    eprintln!(
        "bench: {nodes} hollow nodes, {pods} pods, mode {}, hollow nodes report pods Running: {run_pods}",
        if queued { "queued" } else { "e2e" }
    );

    let cp = Kid::spawn("controlplane", &[])?;
    let line = cp.expect("ADDR ", Duration::from_secs(30))?;
    let mut fields = line.split_whitespace();
    let server = fields.next().unwrap_or_default().to_string();
    let _addr = fields.next();
    let kubeconfig = fields.next().unwrap_or_default().to_string();
    let envs = [
        ("CORRAL_KUBECONFIG", kubeconfig.clone()),
        ("CORRAL_SERVER", server.clone()),
        ("BENCH_NODES", nodes.to_string()),
        ("BENCH_PODS", pods.to_string()),
        ("BENCH_RUN_PODS", (run_pods as u8).to_string()),
    ];
    let hollow = Kid::spawn("hollow", &envs)?;
    let took = hollow.expect("REGISTERED ", Duration::from_secs(600))?;
    eprintln!("bench: {nodes} hollow nodes registered in {took}s");

    let client = bench_client_with(&server, &kubeconfig).await?;
    let scheduler = Scheduler::new(
        client.clone(),
        Config {
            identity: "bench".into(),
            percentage_of_nodes_to_score: pct,
            ..Default::default()
        },
    );
    let metrics = scheduler.metrics();
    let (leader_tx, leader_rx) = watch::channel(!queued);
    let sched = tokio::spawn(scheduler.run(leader_rx));
    let sync_start = Instant::now();
    while !(metrics.synced.load(Ordering::Relaxed)
        && metrics.nodes.load(Ordering::Relaxed) as usize >= nodes)
    {
        if sync_start.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("scheduler cache did not sync within 120s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "bench: scheduler cache synced with {} nodes in {:.2}s",
        metrics.nodes.load(Ordering::Relaxed),
        sync_start.elapsed().as_secs_f64()
    );
    let me = std::process::id().to_string();
    eprintln!(
        "bench: scheduler RSS with the cache synced: {}",
        proc_status(&me, "VmRSS:")
    );
    let mut cpu_before = cpu_seconds(&me);
    let mut cp_cpu_before = cpu_seconds(&cp.pid().to_string());
    let mut hollow_cpu_before = cpu_seconds(&hollow.pid().to_string());

    let mut started = Instant::now();
    let creator = Kid::spawn("creator", &envs)?;
    let mut created = None;
    if queued {
        created = Some(creator.expect("CREATED ", Duration::from_secs(600))?);
        while (metrics.pending.load(Ordering::Relaxed) as usize) < pods {
            if started.elapsed() > Duration::from_secs(600) {
                anyhow::bail!("the scheduler did not queue {pods} pods");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "bench: {pods} pods created and queued in {:.2}s; scheduling starts",
            started.elapsed().as_secs_f64()
        );
        started = Instant::now();
        cpu_before = cpu_seconds(&me);
        cp_cpu_before = cpu_seconds(&cp.pid().to_string());
        hollow_cpu_before = cpu_seconds(&hollow.pid().to_string());
        leader_tx.send(true)?;
    }
    let mut last_report = Instant::now();
    while (metrics.bound() as usize) < pods {
        if started.elapsed() > Duration::from_secs(900) {
            anyhow::bail!(
                "only {} of {pods} pods bound after 900s ({})",
                metrics.bound(),
                metrics.summary()
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "bench: {} bound after {:.1}s",
                metrics.bound(),
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let rss = proc_status(&me, "VmRSS:");
    let hwm = proc_status(&me, "VmHWM:");
    let sched_cpu = cpu_seconds(&me) - cpu_before;
    let cp_pid = cp.pid().to_string();
    let cp_cpu = cpu_seconds(&cp_pid) - cp_cpu_before;
    let cp_rss = proc_status(&cp_pid, "VmRSS:");
    let hollow_cpu = cpu_seconds(&hollow.pid().to_string()) - hollow_cpu_before;
    let creator_cpu = cpu_seconds(&creator.pid().to_string());
    let created = match created {
        Some(c) => c,
        None => creator.expect("CREATED ", Duration::from_secs(60))?,
    };
    sched.abort();

    // Persisted: every pod reads back bound from the API.
    let (listed, _) = client
        .list::<Pod>("default", &ListParams::labels("app=bench"))
        .await?;
    let bound_listed = listed
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        .count();

    let q = |h: &parking_lot::Mutex<hdrhistogram::Histogram<u64>>, p: f64| {
        h.lock().value_at_quantile(p) as f64 / 1000.0
    };
    let secs = elapsed.as_secs_f64();
    println!(
        "corral-scheduler benchmark: {nodes} hollow nodes, {pods} pods, mode {}, pods reported Running: {run_pods}",
        if queued { "queued" } else { "e2e" }
    );
    println!("  pods created (count, seconds, failures): {created}");
    println!(
        "  all {pods} bound in {secs:.2}s: {:.0} pods/s ({})",
        pods as f64 / secs,
        if queued {
            "pods already queued"
        } else {
            "from the first create"
        }
    );
    println!("  bound pods read back from the API: {bound_listed}/{pods}");
    println!(
        "  single-pod scheduling (filter+score): p50 {:.3} ms, p99 {:.3} ms",
        q(&metrics.algorithm, 0.5),
        q(&metrics.algorithm, 0.99)
    );
    println!(
        "  single-pod attempt (dequeue to bind acknowledged): p50 {:.2} ms, p99 {:.2} ms",
        q(&metrics.attempt, 0.5),
        q(&metrics.attempt, 0.99)
    );
    println!(
        "  queue + attempt (seen by the watch to bound): p50 {:.1} ms, p99 {:.1} ms",
        q(&metrics.e2e, 0.5),
        q(&metrics.e2e, 0.99)
    );
    println!("  scheduler process RSS {rss} (peak {hwm}), CPU {sched_cpu:.2}s during the run");
    println!("  control plane RSS {cp_rss}, CPU {cp_cpu:.2}s during the run");
    println!(
        "  hollow nodes CPU {hollow_cpu:.2}s during the run, pod creator CPU {creator_cpu:.2}s{}",
        if queued {
            " (creating, before the clock)"
        } else {
            ""
        }
    );
    println!("  {}", metrics.summary());
    drop(hollow);
    drop(cp);
    Ok(())
}
