//! Settings and state as Kubernetes users keep them, on the multi-node rig: a ConfigMap and a
//! Secret reach a pod as variables and files (and a ConfigMap change reaches the files), a
//! pod waiting for a missing ConfigMap says so and starts once it exists, and a StatefulSet's
//! claim keeps its data when its pod is replaced.

use std::time::Duration;

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

/// The pod's log once it contains `needle` (the test containers print what they see).
async fn log_with(server: &str, pod: &str, needle: &str, cluster: &TestCluster) -> String {
    let found = tokio::time::timeout(
        WAIT,
        eventually(&format!("{pod}'s log to show {needle:?}"), WAIT, || async {
            let (out, _, success) = corral(server, &["logs", pod]);
            (success && out.contains(needle)).then_some(out)
        }),
    )
    .await;
    found.unwrap_or_else(|_| {
        let (out, err, _) = corral(server, &["logs", pod]);
        let (desc, _, _) = corral(server, &["describe", "pod", pod]);
        panic!(
            "{pod}'s log never showed {needle:?}:\n{out}{err}\n{desc}\n{}",
            cluster.logs()
        )
    })
}

async fn waiting_reason(client: &Client, pod: &str) -> Option<(String, String)> {
    let p: Pod = client.get_opt("default", pod).await.ok()??;
    let w = p
        .status?
        .container_statuses?
        .first()?
        .state
        .clone()?
        .waiting?;
    Some((w.reason?, w.message.unwrap_or_default()))
}

const APP: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: reader
spec:
  containers:
  - name: app
    image: fedek3/workshop-uns:v0.2.0
    command: ["sh", "-c", "echo mode=$MODE user=$DB_USER color=$CFG_color; echo hosts=$(head -1 /etc/hosts) $(grep reader /etc/hosts); while true; do echo file=$(cat /etc/app/color) pass=$(cat /etc/db/password); sleep 1; done"]
    env:
    - name: DB_USER
      valueFrom:
        secretKeyRef:
          name: db
          key: user
    envFrom:
    - configMapRef:
        name: settings
    - prefix: CFG_
      configMapRef:
        name: settings
    volumeMounts:
    - name: settings
      mountPath: /etc/app
    - name: db
      mountPath: /etc/db
      readOnly: true
  volumes:
  - name: settings
    configMap:
      name: settings
  - name: db
    secret:
      secretName: db
      items:
      - key: pass
        path: password
"#;

const STATEFUL: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: fedek3/workshop-uns:v0.2.0
        command: ["sh", "-c", "date >> /data/boots; echo boots=$(wc -l < /data/boots); sleep 3600"]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmaps_secrets_and_claims_reach_pods() {
    skip_unless_e2e!();
    let cluster = TestCluster::create("config", 2).await;
    let s = cluster.server();
    let client = cluster.client().await;
    let dir = tempfile::tempdir().unwrap();

    // The pod comes first: it waits, saying what is missing, as kubelet reports it.
    apply(&s, dir.path(), "app.yaml", APP);
    let (reason, message) = eventually("the reader to wait for its config", WAIT, || async {
        waiting_reason(&client, "reader")
            .await
            .filter(|(r, _)| r == "CreateContainerConfigError" || r == "ContainerCreating")
            .filter(|(_, m)| m.contains("not found"))
    })
    .await;
    assert!(
        message.contains("\"settings\" not found") || message.contains("\"db\" not found"),
        "{reason}: {message}"
    );

    ok(
        &s,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=MODE=prod",
            "--from-literal=color=blue",
        ],
    );
    ok(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=user=admin",
            "--from-literal=pass=s3cr3t",
        ],
    );
    log_with(&s, "reader", "mode=prod user=admin color=blue", &cluster).await;
    log_with(&s, "reader", "file=blue pass=s3cr3t", &cluster).await;
    // kubelet's managed hosts file, naming the pod.
    log_with(
        &s,
        "reader",
        "hosts=# Kubernetes-managed hosts file. 10.42.",
        &cluster,
    )
    .await;

    // A ConfigMap change reaches the mounted files of the running pod (not its variables).
    ok(
        &s,
        &[
            "patch",
            "configmap",
            "settings",
            "-p",
            r#"{"data":{"color":"green"}}"#,
        ],
    );
    log_with(&s, "reader", "file=green pass=s3cr3t", &cluster).await;

    // A StatefulSet's claim is provisioned on the pod's node and outlives the pod.
    apply(&s, dir.path(), "web.yaml", STATEFUL);
    log_with(&s, "web-0", "boots=1", &cluster).await;
    let pvcs = ok(&s, &["get", "pvc"]);
    assert!(
        pvcs.lines()
            .any(|l| l.starts_with("data-web-0") && l.contains("Bound")),
        "{pvcs}"
    );
    ok(&s, &["delete", "pod", "web-0"]);
    log_with(&s, "web-0", "boots=2", &cluster).await;
}
