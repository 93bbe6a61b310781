//! Pod events and waits as a Kubernetes user sees them, on the local rig: `describe pod` lists
//! the scheduler's and kubelet's events in order (Scheduled, Pulled, Created, Started); a pod
//! waiting for its ConfigMap starts within about a second of its creation (no crash back-off);
//! and, ignored as a figure, a 3-replica StatefulSet with claims goes 0 → 3 Ready.

use std::time::{Duration, Instant};

use corral_api::k8s::api::core::v1::Pod;
use corral_api::Client;
use corral_tests::{corral, eventually, skip_unless_e2e, TestCluster};

const WAIT: Duration = Duration::from_secs(90);

fn ok(server: &str, args: &[&str]) -> String {
    let (out, err, success) = corral(server, args);
    assert!(success, "corral {} failed:\n{out}\n{err}", args.join(" "));
    out
}

fn apply(server: &str, dir: &std::path::Path, file: &str, yaml: &str) {
    let path = dir.join(file);
    std::fs::write(&path, yaml).unwrap();
    ok(server, &["apply", "-f", path.to_str().unwrap()]);
}

/// (Type, Reason, From) of each row of the Events section of `describe`, in order.
fn event_rows(described: &str) -> Vec<(String, String, String)> {
    described
        .lines()
        .skip_while(|l| !l.starts_with("Events:"))
        .skip(3)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // Type, Reason, Age ("5s", or "3s (x2 over 9s)"), From, Message.
            let from = if cols.get(3).is_some_and(|c| c.starts_with('(')) {
                cols.get(6)
            } else {
                cols.get(3)
            }?;
            Some((cols[0].into(), cols[1].into(), from.to_string()))
        })
        .collect()
}

async fn running(client: &Client, name: &str) -> bool {
    let Ok(Some(p)) = client.get_opt::<Pod>("default", name).await else {
        return false;
    };
    p.status
        .and_then(|s| s.container_statuses)
        .is_some_and(|cs| {
            !cs.is_empty()
                && cs
                    .iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
}

async fn waiting_message(client: &Client, name: &str) -> Option<String> {
    let p: Pod = client.get_opt("default", name).await.ok()??;
    let w = p
        .status?
        .container_statuses?
        .first()?
        .state
        .clone()?
        .waiting?;
    w.message
}

const WEB: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: fedek3/workshop-uns:v0.2.0
    command: ["sleep", "3600"]
"#;

const READER: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: reader
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: fedek3/workshop-uns:v0.2.0
    command: ["sleep", "3600"]
    volumeMounts:
    - name: settings
      mountPath: /etc/app
  volumes:
  - name: settings
    configMap:
      name: late
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_pod_lists_kubelets_events_and_a_pod_starts_as_soon_as_its_configmap_exists() {
    skip_unless_e2e!();
    let cluster = TestCluster::create("events", 1).await;
    let s = cluster.server();
    let client = cluster.client().await;
    let dir = tempfile::tempdir().unwrap();

    apply(&s, dir.path(), "web.yaml", WEB);
    let want = [
        ("Normal", "Scheduled", "default-scheduler"),
        ("Normal", "Pulled", "kubelet"),
        ("Normal", "Created", "kubelet"),
        ("Normal", "Started", "kubelet"),
    ]
    .map(|(t, r, f)| (t.to_string(), r.to_string(), f.to_string()));
    let described = tokio::time::timeout(
        WAIT,
        eventually("describe to list the pod's four events", WAIT, || async {
            let (out, _, success) = corral(&s, &["describe", "pod", "web"]);
            (success && event_rows(&out).len() >= 4).then_some(out)
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("no events for web\n{}", cluster.logs()));
    assert_eq!(event_rows(&described), want, "{described}");
    assert!(
        described.contains("Successfully assigned default/web to "),
        "{described}"
    );
    assert!(
        described.contains("Created container: app") && described.contains("Started container app"),
        "{described}"
    );

    // The pod first, its ConfigMap later: it waits (FailedMount) and starts at the next
    // fast retry, not after the 10 s crash back-off.
    apply(&s, dir.path(), "reader.yaml", READER);
    eventually("the reader to wait for its ConfigMap", WAIT, || async {
        waiting_message(&client, "reader")
            .await
            .filter(|m| m.contains("\"late\" not found"))
    })
    .await;
    let created = Instant::now();
    ok(
        &s,
        &["create", "configmap", "late", "--from-literal=color=blue"],
    );
    eventually("the reader to run", WAIT, || async {
        running(&client, "reader").await.then_some(())
    })
    .await;
    let took = created.elapsed();
    eprintln!("reader running {} ms after its ConfigMap", took.as_millis());
    let (described, _, _) = corral(&s, &["describe", "pod", "reader"]);
    assert!(
        took < Duration::from_secs(3),
        "the reader took {took:?} to start after its ConfigMap\n{described}"
    );
    assert!(
        described.contains("FailedMount")
            && described.contains(
                "MountVolume.SetUp failed for volume \"settings\" : configmap \"late\" not found"
            ),
        "{described}"
    );
}

const STATEFUL: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 3
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: fedek3/workshop-uns:v0.2.0
        command: ["sleep", "3600"]
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Gi
"#;

/// The issue's figure: a 3-replica StatefulSet with a volumeClaimTemplate, 0 → 3 Ready
/// (ordered). Run with `--ignored --nocapture` to read it: about 1.8 s, where the crash
/// back-off after each "claim not bound yet" made it about 31 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a figure, not a check: prints the StatefulSet's time to 3 Ready"]
async fn figure_statefulset_with_claims_zero_to_three_ready() {
    skip_unless_e2e!();
    let cluster = TestCluster::create("events-sts", 2).await;
    let s = cluster.server();
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    apply(&s, dir.path(), "db.yaml", STATEFUL);
    eventually("3 ready replicas", WAIT, || async {
        // A failed get (the API server busy) only means "not yet".
        let (out, _, _) = corral(
            &s,
            &[
                "get",
                "statefulset",
                "db",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
        );
        (out.trim() == "3").then_some(())
    })
    .await;
    eprintln!(
        "FIGURE statefulset 0 -> 3 Ready: {} ms",
        t0.elapsed().as_millis()
    );
}
