//! `corral top` and `kubectl top` (metrics.k8s.io) on the local rig: a pod burning CPU under a
//! 500m limit and a pod holding 48 MiB of tmpfs show figures that agree with their cgroup files,
//! read by the test meanwhile (cpuacct.usage over the same window; memory.usage_in_bytes less
//! total_inactive_file; cgroup v2's files on a v2 host); `kubectl top nodes` and `corral top
//! nodes` list every node.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_api::k8s::api::core::v1::Pod;
use corral_tests::kubectl::{self, Kubectl};
use corral_tests::{corral, eventually, rows, skip_unless_e2e, TestCluster};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const HOLD_MIB: u64 = 48;

const PODS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: burn
  labels: {app: burn}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: spin
    image: fedek3/workshop-uns:v0.2.0
    command: ["sh", "-c", "while :; do :; done"]
    resources:
      limits: {cpu: 500m}
---
apiVersion: v1
kind: Pod
metadata:
  name: hold
  labels: {app: hold}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: fill
    image: fedek3/workshop-uns:v0.2.0
    command: ["sh", "-c", "head -c 48m /dev/zero > /dev/shm/fill && sleep 3600"]
"#;

/// Whether the host runs the unified (v2) hierarchy only.
fn cgroup_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A pod's cgroup directory (the agent's `cgroupsPath` is `/corral/pod<uid>/<container>`; the
/// pod's directory sums its containers): under the v1 `controller`, or the v2 one.
fn cgroup(controller: &str, uid: &str) -> PathBuf {
    if cgroup_v2() {
        PathBuf::from(format!("/sys/fs/cgroup/corral/pod{uid}"))
    } else {
        PathBuf::from(format!("/sys/fs/cgroup/{controller}/corral/pod{uid}"))
    }
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn read_u64(path: PathBuf) -> u64 {
    let text = read(path.clone());
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{path:?}: {text:?}"))
}

/// `key value` of a stat file.
fn stat(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
}

/// The pod's cumulative CPU time in nanoseconds.
fn cpu_ns(uid: &str) -> u64 {
    if cgroup_v2() {
        stat(&read(cgroup("cpu", uid).join("cpu.stat")), "usage_usec") * 1000
    } else {
        read_u64(cgroup("cpuacct", uid).join("cpuacct.usage"))
    }
}

/// Kubelet's working set from the pod's memory cgroup.
fn working_set(uid: &str) -> u64 {
    let dir = cgroup("memory", uid);
    let stat_text = read(dir.join("memory.stat"));
    let (usage, inactive) = if cgroup_v2() {
        (
            read_u64(dir.join("memory.current")),
            stat(&stat_text, "inactive_file"),
        )
    } else {
        (
            read_u64(dir.join("memory.usage_in_bytes")),
            stat(&stat_text, "total_inactive_file"),
        )
    };
    usage.saturating_sub(inactive)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// (unix seconds, cpuacct.usage) readings of one pod, taken every 100 ms by a thread.
#[derive(Clone, Default)]
struct Series(Arc<Mutex<Vec<(f64, u64)>>>);

impl Series {
    fn record(&self, uid: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        let points = self.0.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let ns = cpu_ns(&uid);
                points.lock().unwrap().push((now_secs(), ns));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    }

    fn start(&self) -> f64 {
        self.0.lock().unwrap().first().map_or(f64::MAX, |p| p.0)
    }

    /// The CPU counter at `t`, interpolated between the readings around it.
    fn at(&self, t: f64) -> Option<f64> {
        let points = self.0.lock().unwrap();
        let after = points.iter().position(|p| p.0 >= t)?;
        let (t1, v1) = points[after];
        if after == 0 {
            return (t1 - t < 0.2).then_some(v1 as f64);
        }
        let (t0, v0) = points[after - 1];
        Some(v0 as f64 + (v1 - v0) as f64 * (t - t0) / (t1 - t0))
    }

    /// Nanocores used over `[from, to]`.
    fn rate(&self, from: f64, to: f64) -> Option<f64> {
        Some((self.at(to)? - self.at(from)?) / (to - from))
    }
}

fn parse_window(w: &str) -> f64 {
    w.strip_suffix("ms")
        .map(|ms| ms.parse::<f64>().unwrap() / 1000.0)
        .or_else(|| w.strip_suffix('s').and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("window {w:?}"))
}

fn quantity_nanos(q: &str) -> f64 {
    let (n, scale) = match q.char_indices().last() {
        Some((i, 'n')) => (&q[..i], 1.0),
        Some((i, 'u')) => (&q[..i], 1e3),
        Some((i, 'm')) => (&q[..i], 1e6),
        _ => (q, 1e9),
    };
    n.parse::<f64>().unwrap() * scale
}

fn quantity_bytes(q: &str) -> f64 {
    for (suffix, mul) in [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)] {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().unwrap() * mul as f64;
        }
    }
    q.parse().unwrap()
}

/// The CPU cell of a printed row in nanocores, the memory cell in bytes.
fn cells(row: &[String], cpu: usize, mem: usize) -> (f64, f64) {
    let c = row[cpu]
        .strip_suffix('m')
        .expect("millicores")
        .parse::<f64>()
        .unwrap()
        * 1e6;
    let m = row[mem]
        .strip_suffix("Mi")
        .expect("Mi")
        .parse::<f64>()
        .unwrap()
        * (1u64 << 20) as f64;
    (c, m)
}

fn close(what: &str, got: f64, want: f64, relative: f64, absolute: f64) {
    assert!(
        (got - want).abs() <= want * relative + absolute,
        "{what}: got {got:.0}, the cgroup files say {want:.0} (tolerance {relative} x + {absolute})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_figures_agree_with_the_pods_cgroup_files() {
    skip_unless_e2e!();
    let cluster = TestCluster::create("top", 1).await;
    let s = cluster.server();
    let client = cluster.client().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pods.yaml");
    std::fs::write(&path, PODS).unwrap();
    let (out, err, ok) = corral(&s, &["apply", "-f", path.to_str().unwrap()]);
    assert!(ok, "apply: {out}{err}");
    let mut uids = Vec::new();
    for name in ["burn", "hold"] {
        let pod = eventually(&format!("{name} to run"), WAIT, || async {
            let p = client
                .get_opt::<Pod>("default", name)
                .await
                .ok()
                .flatten()?;
            corral_tests::running(&p).then_some(p)
        })
        .await;
        uids.push(pod.metadata.uid.unwrap());
    }
    let (burn_uid, hold_uid) = (uids[0].clone(), uids[1].clone());
    let series = Series::default();
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = series.record(burn_uid.clone(), stop.clone());
    let admin = cluster
        .state
        .layout
        .dir
        .join("controlplane")
        .join("admin.kubeconfig");
    let k = kubectl::v1_32()
        .or_else(kubectl::on_path)
        .map(|bin| Kubectl::new(&bin, &admin));

    // The raw figures, over a window the recorder saw from its start (the agent samples every
    // 5 s; the timestamp is to the second, so its middle is taken).
    let pod_metrics = || async {
        let req = corral_proto::MetricsRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            ..Default::default()
        };
        let items = client.raw().metrics(req).await.ok()?.into_inner().items;
        let items: Vec<Value> = items
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect();
        Some(items)
    };
    let (burn, hold) = eventually(
        "metrics of both pods over a recorded window",
        WAIT,
        || async {
            let items = pod_metrics().await?;
            let find = |n: &str| items.iter().find(|i| i["metadata"]["name"] == n).cloned();
            let (burn, hold) = (find("burn")?, find("hold")?);
            let end = unix(burn["timestamp"].as_str()?)? + 0.5;
            let start = end - parse_window(burn["window"].as_str()?);
            (start > series.start() && series.at(end).is_some()).then_some((burn, hold))
        },
    )
    .await;
    let end = unix(burn["timestamp"].as_str().unwrap()).unwrap() + 0.5;
    let window = parse_window(burn["window"].as_str().unwrap());
    let want = series.rate(end - window, end).unwrap();
    eprintln!("burn: {burn}\nhold: {hold}\nburn's cgroup over the window: {want:.0} nanocores");
    let got = quantity_nanos(burn["containers"][0]["usage"]["cpu"].as_str().unwrap());
    assert!(want > 1e8, "the burner used only {want} nanocores");
    close("burn's CPU (nanocores)", got, want, 0.15, 25e6);
    let got = quantity_bytes(hold["containers"][0]["usage"]["memory"].as_str().unwrap());
    let want = working_set(&hold_uid) as f64;
    assert!(
        want >= (HOLD_MIB << 20) as f64,
        "hold's cgroup holds only {want} bytes"
    );
    close(
        "hold's working set (bytes)",
        got,
        want,
        0.0,
        4.0 * (1 << 20) as f64,
    );

    // The printed tables, against the cgroup files over the last 10 s at most (looser: the
    // agent's window is not the one measured here).
    let check_pods = |tool: &str, table: &str| {
        eprintln!("{tool}:\n{table}");
        let rows = rows(table);
        let row = |n: &str| {
            rows.iter()
                .find(|r| r[0] == n)
                .unwrap_or_else(|| panic!("{tool}: no {n} in\n{table}"))
                .clone()
        };
        let (cpu, _) = cells(&row("burn"), 1, 2);
        let t = now_secs();
        close(
            &format!("{tool}: burn's CPU"),
            cpu,
            series
                .rate((t - 10.0).max(series.start() + 0.1), t - 0.2)
                .unwrap(),
            0.3,
            50e6,
        );
        let (_, mem) = cells(&row("hold"), 1, 2);
        close(
            &format!("{tool}: hold's memory"),
            mem,
            working_set(&hold_uid) as f64,
            0.0,
            5.0 * (1 << 20) as f64,
        );
    };
    let (out, err, ok) = corral(&s, &["top", "pods"]);
    assert!(ok, "corral top pods: {out}{err}");
    check_pods("corral top pods", &out);
    let (out, _, ok) = corral(&s, &["top", "pods", "-A", "--containers", "-l", "app=burn"]);
    assert!(ok);
    let r = rows(&out);
    assert_eq!(r.len(), 1, "{out}");
    assert_eq!(r[0][..3], ["default", "burn", "spin"], "{out}");
    if let Some(k) = &k {
        check_pods("kubectl top pods", &k.ok(&["top", "pods"]));
        let out = k.ok(&["top", "pods", "-A", "--containers"]);
        assert!(
            out.lines().next().unwrap().starts_with("NAMESPACE"),
            "{out}"
        );
        assert!(
            rows(&out)
                .iter()
                .any(|r| r[..3] == ["default", "hold", "fill"]),
            "{out}"
        );
    }

    // Every node, with figures.
    let (out, _, ok) = corral(&s, &["get", "nodes", "-o", "name"]);
    assert!(ok);
    let nodes: Vec<String> = out
        .lines()
        .map(|l| l.trim_start_matches("node/").to_string())
        .collect();
    assert!(!nodes.is_empty());
    let mut tables = vec![("corral top nodes", {
        let (out, err, ok) = corral(&s, &["top", "nodes"]);
        assert!(ok, "{out}{err}");
        out
    })];
    if let Some(k) = &k {
        tables.push(("kubectl top nodes", k.ok(&["top", "nodes"])));
    }
    let header = |t: &str| {
        t.lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    if let [(_, ours), (_, theirs)] = &tables[..] {
        assert_eq!(
            header(ours),
            header(theirs),
            "corral's columns are kubectl's"
        );
    }
    if let Some(k) = &k {
        let raw: Value =
            serde_json::from_str(&k.ok(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"]))
                .unwrap();
        assert_eq!(raw["kind"], "NodeMetricsList", "{raw}");
        assert_eq!(raw["items"].as_array().unwrap().len(), nodes.len(), "{raw}");
    }
    for (tool, table) in tables {
        eprintln!("{tool}:\n{table}");
        assert!(table.starts_with("NAME"), "{tool}:\n{table}");
        for n in &nodes {
            let row = rows(&table)
                .into_iter()
                .find(|r| &r[0] == n)
                .unwrap_or_else(|| panic!("{tool}: no {n}\n{table}"));
            assert!(
                row[1].ends_with('m') && row[2].ends_with('%') && row[3].ends_with("Mi"),
                "{tool}: {row:?}"
            );
        }
    }

    // A pod without metrics, as kubectl words it.
    let (_, err, ok) = corral(&s, &["top", "pods", "nope"]);
    assert!(!ok && err.contains("NotFound"), "{err}");
    stop.store(true, Ordering::Relaxed);
    recorder.join().unwrap();
}

/// An RFC 3339 time as Unix seconds.
fn unix(s: &str) -> Option<f64> {
    let t: jiff::Timestamp = s.parse().ok()?;
    Some(t.as_millisecond() as f64 / 1000.0)
}
