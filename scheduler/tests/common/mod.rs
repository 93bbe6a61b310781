//! Shared set-up for the integration tests: an in-process control plane on 127.0.0.1:0, a
//! scheduler against it over real gRPC, and builders for nodes and pods.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use corral_api::k8s::api::core::v1::{Event, Node, Pod};
use corral_api::{Client, ListParams};
use corral_scheduler::{Config, Scheduler};
use serde_json::{json, Value};
use tokio::sync::watch;

pub struct Cluster {
    pub client: Client,
    pub url: String,
    _cp: corral_controlplane::Running,
    _dir: tempfile::TempDir,
}

pub async fn cluster() -> Cluster {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let cp = corral_controlplane::start(corral_controlplane::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        controllers: false,
        ..Default::default()
    })
    .await
    .expect("control plane starts");
    let url = cp.url();
    let client = cp.client().await.expect("client connects");
    Cluster {
        client,
        url,
        _cp: cp,
        _dir: dir,
    }
}

/// Starts a scheduler that leads from the start; aborted when the handle drops.
pub fn scheduler(client: &Client) -> Aborting {
    let s = Scheduler::new(client.clone(), Config::default());
    let (_tx, rx) = watch::channel(true);
    Aborting(tokio::spawn(async move {
        let _tx = _tx;
        s.run(rx).await
    }))
}

pub struct Aborting(pub tokio::task::JoinHandle<()>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

pub async fn node(client: &Client, name: &str, cpu: &str, extra: Value) -> Node {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    });
    merge(&mut v, extra);
    let n: Node = serde_json::from_value(v).unwrap();
    client.create(&n).await.expect("node created")
}

pub async fn pod(client: &Client, name: &str, cpu: &str, extra: Value) -> Pod {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu}}}]}
    });
    merge(&mut v, extra);
    let p: Pod = serde_json::from_value(v).unwrap();
    client.create(&p).await.expect("pod created")
}

/// Polls `check` until it yields a value, failing the test after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn node_of(client: &Client, name: &str) -> Option<String> {
    let p: Pod = client.get("default", name).await.ok()?;
    p.spec?.node_name
}

/// Waits for the pod to be bound and returns its node.
pub async fn bound(client: &Client, name: &str) -> String {
    eventually(20, &format!("pod {name} to be bound"), || {
        node_of(client, name)
    })
    .await
}

pub async fn failed_scheduling_message(client: &Client, pod: &str) -> Option<String> {
    let (events, _) = client
        .list::<Event>("default", &ListParams::default())
        .await
        .ok()?;
    events
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(pod)
                && e.reason.as_deref() == Some("FailedScheduling")
        })
        .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0))
        .and_then(|e| e.message)
}
