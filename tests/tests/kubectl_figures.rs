//! Figure (ignored): `kubectl get pods` against `corral get pods` on one cluster holding 1,000
//! pods, in alternating runs of the real binaries (each run a new process, as a user types it;
//! kubectl's discovery cache warm, as after a user's first command).
//! Run: `cargo test -p corral-tests --release --test kubectl_figures -- --ignored --nocapture`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use corral_api::kinds;
use corral_tests::{corral_command, skip_unless_e2e, TestCluster};
use serde_json::json;

const PODS: usize = 1_000;
const RUNS: usize = 10;

fn kubectl() -> Option<PathBuf> {
    [
        "/usr/lib/google-cloud-sdk/bin/kubectl.1.32",
        "/usr/bin/kubectl",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Wall time of one run in ms, checking it printed a header and every pod.
fn timed(mut cmd: Command) -> f64 {
    let start = Instant::now();
    let out = cmd.output().expect("run");
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().count(), PODS + 1, "{text}");
    ms
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figure: kubectl get pods vs corral get pods with 1,000 pods"]
async fn figure_kubectl_get_pods_against_corral_get_pods() {
    skip_unless_e2e!();
    let Some(kubectl) = kubectl() else {
        eprintln!("SKIPPED: no kubectl");
        return;
    };
    let cluster = TestCluster::create("kfig", 1).await;
    let client = Arc::new(cluster.client().await);
    // No scheduler takes these pods: they stay Pending and cost the cluster nothing but rows.
    let mut tasks = Vec::new();
    for w in 0..16 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..PODS).step_by(16) {
                let pod = json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("web-{i:04}"), "labels": {"app": "web"}},
                    "spec": {"schedulerName": "nobody",
                             "containers": [{"name": "web", "image": "fedek3/workshop-uns:v0.2.0"}]}});
                client
                    .create_value(&kinds::PODS, "default", &pod, false)
                    .await
                    .expect("create pod");
            }
        }));
    }
    for t in tasks {
        t.await.expect("creator");
    }
    let admin = cluster
        .state
        .layout
        .dir
        .join("controlplane")
        .join("admin.kubeconfig");
    let home = tempfile::tempdir().expect("home");
    let kube = || {
        let mut c = Command::new(&kubectl);
        c.args(["get", "pods"])
            .env("KUBECONFIG", &admin)
            .env("HOME", home.path());
        c
    };
    let server = cluster.server();
    let ours = || corral_command(&server, &["get", "pods"]);
    // Warm both (kubectl fills its discovery cache on its first run).
    timed(kube());
    timed(ours());
    let (mut k, mut c) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        k.push(timed(kube()));
        c.push(timed(ours()));
    }
    let (km, cm) = (median(k.clone()), median(c.clone()));
    eprintln!(
        "get pods with {PODS} pods, {RUNS} alternating runs: kubectl median {km:.0} ms (min {:.0}), corral median {cm:.0} ms (min {:.0}); kubectl/corral {:.2}x",
        k.iter().cloned().fold(f64::MAX, f64::min),
        c.iter().cloned().fold(f64::MAX, f64::min),
        km / cm
    );
}
