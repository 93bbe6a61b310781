//! Controller benchmark, side by side in one run, in-process over real gRPC:
//! - scale a ReplicaSet 0 → 1,000: time until all pods exist, and until a fake binder has
//!   bound them all (simulated hollow nodes);
//! - replacement after a pod delete: delete → replacement created → replacement Ready;
//! - node death: last lease renewal → all of the node's pods Ready on other nodes, with the
//!   default flags (grace 4 s, eviction 1 s).
//!
//! Run: `cargo bench -p corral-controllers --bench controllers`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::k8s::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use corral_api::k8s::api::coordination::v1::{Lease, LeaseSpec};
use corral_api::k8s::api::core::v1::{
    Container, Node, NodeCondition, NodeStatus, Pod, PodCondition, PodSpec, PodTemplateSpec,
};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, MicroTime, ObjectMeta, Time,
};
use corral_api::runtime::{reflector, watcher, Change, Store, WatcherConfig};
use corral_api::{kinds, Client, DeleteOptions};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Semaphore};

const NODES: usize = 20;
const SCALE: i32 = 1000;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: (!ns.is_empty()).then(|| ns.to_string()),
        ..Default::default()
    }
}

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    let labels: BTreeMap<String, String> = [("app".to_string(), name.to_string())].into();
    ReplicaSet {
        metadata: meta("default", name),
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("app:v1".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

async fn renew(client: &Client, node: &str) {
    let now = MicroTime(jiff::Timestamp::now());
    if let Ok(Some(mut l)) = client.get_opt::<Lease>("kube-node-lease", node).await {
        l.spec.get_or_insert_with(Default::default).renew_time = Some(now);
        let _ = client.update(&l).await;
    } else {
        let l = Lease {
            metadata: meta("kube-node-lease", node),
            spec: Some(LeaseSpec {
                holder_identity: Some(node.into()),
                renew_time: Some(now),
                ..Default::default()
            }),
        };
        let _ = client.create(&l).await;
    }
}

/// Hollow nodes: a watch-driven fake binder and kubelet. Dead nodes do nothing.
struct Hollow {
    dead: Mutex<Vec<String>>,
    bound_at: Mutex<BTreeMap<String, Instant>>,
    ready_at: Mutex<BTreeMap<String, Instant>>,
    created_at: Mutex<BTreeMap<String, Instant>>,
    /// When each node's lease was last renewed.
    renewed_at: Mutex<BTreeMap<String, Instant>>,
    binding: AtomicBool,
}

async fn hollow_nodes(client: Client, hollow: Arc<Hollow>) {
    let store = Store::<Pod>::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Arc<Pod>>();
    {
        let h = hollow.clone();
        store.on_change(move |c| {
            if let Change::Added(p) = c {
                h.created_at
                    .lock()
                    .entry(p.metadata.name.clone().unwrap())
                    .or_insert_with(Instant::now);
            }
            if !matches!(c, Change::Deleted(_)) {
                let _ = tx.send(c.object().clone());
            }
        });
    }
    tokio::spawn(reflector::reflect(
        store.clone(),
        watcher(client.clone(), WatcherConfig::all()),
    ));
    let sem = Arc::new(Semaphore::new(64));
    let mut rr = 0usize;
    while let Some(pod) = rx.recv().await {
        let name = pod.metadata.name.clone().unwrap();
        let ns = pod.metadata.namespace.clone().unwrap();
        let uid = pod.metadata.uid.clone().unwrap();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        if hollow.dead.lock().iter().any(|d| Some(d) == node.as_ref()) {
            continue;
        }
        let client = client.clone();
        let hollow = hollow.clone();
        let permit = sem.clone().acquire_owned().await.unwrap();
        match node {
            None if pod.metadata.deletion_timestamp.is_none()
                && hollow.binding.load(Ordering::SeqCst) =>
            {
                let dead = hollow.dead.lock().clone();
                let target = loop {
                    rr += 1;
                    let n = format!("hollow-{}", rr % NODES);
                    if !dead.contains(&n) {
                        break n;
                    }
                };
                tokio::spawn(async move {
                    if client.bind(&ns, &name, &uid, &target).await.is_ok() {
                        hollow.bound_at.lock().insert(name, Instant::now());
                    }
                    drop(permit);
                });
            }
            Some(_) if pod.metadata.deletion_timestamp.is_some() => {
                tokio::spawn(async move {
                    let _ = client
                        .delete::<Pod>(&ns, &name, DeleteOptions::grace(0))
                        .await;
                    drop(permit);
                });
            }
            Some(_) => {
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if ready {
                    continue;
                }
                let mut p = (*pod).clone();
                tokio::spawn(async move {
                    let st = p.status.get_or_insert_with(Default::default);
                    st.phase = Some("Running".into());
                    st.conditions
                        .get_or_insert_with(Vec::new)
                        .push(PodCondition {
                            type_: "Ready".into(),
                            status: "True".into(),
                            last_transition_time: Some(Time(jiff::Timestamp::now())),
                            ..Default::default()
                        });
                    p.metadata.resource_version = None;
                    if client.update_status(&p).await.is_ok() {
                        hollow.ready_at.lock().insert(name, Instant::now());
                    }
                    drop(permit);
                });
            }
            None => {}
        }
    }
}

async fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let running = corral_controlplane::start(corral_controlplane::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        controllers: false,
        defaults: corral_controlplane::validate::Defaults {
            toleration_seconds: corral_controllers::Config::default()
                .pod_eviction_timeout
                .as_secs() as i64,
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let client = running.client().await.unwrap();
    let config = corral_controllers::Config::default();
    println!(
        "flags: node_monitor_grace {:?}, pod_eviction_timeout {:?}; {NODES} hollow nodes renewing leases every 1 s",
        config.node_monitor_grace, config.pod_eviction_timeout
    );
    let _controllers = corral_controllers::spawn(client.clone(), config);

    for i in 0..NODES {
        let name = format!("hollow-{i}");
        let created = client
            .create(&Node {
                metadata: meta("", &name),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut n = created.clone();
        n.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        client.update_status(&n).await.unwrap();
        renew(&client, &name).await;
    }
    let hollow = Arc::new(Hollow {
        dead: Mutex::new(Vec::new()),
        bound_at: Mutex::new(BTreeMap::new()),
        ready_at: Mutex::new(BTreeMap::new()),
        created_at: Mutex::new(BTreeMap::new()),
        renewed_at: Mutex::new(BTreeMap::new()),
        binding: AtomicBool::new(true),
    });
    tokio::spawn(hollow_nodes(client.clone(), hollow.clone()));
    {
        let client = client.clone();
        let hollow = hollow.clone();
        tokio::spawn(async move {
            loop {
                let dead = hollow.dead.lock().clone();
                for i in 0..NODES {
                    let name = format!("hollow-{i}");
                    if !dead.contains(&name) {
                        renew(&client, &name).await;
                        hollow.renewed_at.lock().insert(name, Instant::now());
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    if std::env::var("BENCH_RAW").is_ok() {
        // Baseline: the API server alone, 1,000 pod creates with 64 in flight.
        let t0 = Instant::now();
        let inflight: usize = std::env::var("BENCH_RAW").unwrap().parse().unwrap_or(64);
        let sem = Arc::new(Semaphore::new(inflight));
        let mut tasks = Vec::new();
        for i in 0..SCALE {
            let client = client.clone();
            let permit = sem.clone().acquire_owned().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut rs = replica_set("raw", 1);
                let t = rs.spec.take().unwrap().template.unwrap();
                let p = Pod {
                    metadata: ObjectMeta {
                        name: Some(format!("raw-{i}")),
                        namespace: Some("default".into()),
                        labels: t.metadata.unwrap().labels,
                        ..Default::default()
                    },
                    spec: t.spec,
                    status: None,
                };
                client.create(&p).await.unwrap();
                drop(permit);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        println!(
            "baseline: {SCALE} pod creates straight to the API: {:?}",
            t0.elapsed()
        );
        return;
    }

    // 1. Scale 0 → 1,000.
    client.create(&replica_set("bench", 0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    client
        .scale(
            kinds::by_plural("replicasets").unwrap(),
            "default",
            "bench",
            SCALE,
        )
        .await
        .unwrap();
    let n = SCALE as usize;
    wait_until("1000 pods created", 60, || {
        hollow.created_at.lock().len() >= n
    })
    .await;
    let created = hollow
        .created_at
        .lock()
        .values()
        .max()
        .unwrap()
        .duration_since(start);
    wait_until("1000 pods bound", 60, || hollow.bound_at.lock().len() >= n).await;
    let bound = hollow
        .bound_at
        .lock()
        .values()
        .max()
        .unwrap()
        .duration_since(start);
    wait_until("1000 pods ready", 60, || hollow.ready_at.lock().len() >= n).await;
    let ready = hollow
        .ready_at
        .lock()
        .values()
        .max()
        .unwrap()
        .duration_since(start);
    println!("scale ReplicaSet 0 -> {SCALE}: all created {created:?}, all bound {bound:?}, all Running/Ready {ready:?}");

    // 2. Replacement after a pod delete (10 samples).
    let mut to_created = Vec::new();
    let mut to_ready = Vec::new();
    for _ in 0..10 {
        let pods = client
            .list::<Pod>("default", &corral_api::ListParams::labels("app=bench"))
            .await
            .unwrap()
            .0;
        let victim = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name.clone())
            .find(|n| hollow.ready_at.lock().contains_key(n))
            .unwrap();
        let before: Vec<String> = hollow.created_at.lock().keys().cloned().collect();
        let t0 = Instant::now();
        client
            .delete::<Pod>("default", &victim, DeleteOptions::default())
            .await
            .unwrap();
        hollow.ready_at.lock().remove(&victim);
        wait_until("replacement", 10, || {
            hollow.created_at.lock().len() > before.len()
        })
        .await;
        let new = hollow
            .created_at
            .lock()
            .iter()
            .find(|(k, _)| !before.contains(k))
            .map(|(k, v)| (k.clone(), *v))
            .unwrap();
        to_created.push(new.1.duration_since(t0));
        wait_until("replacement ready", 10, || {
            hollow.ready_at.lock().contains_key(&new.0)
        })
        .await;
        to_ready.push(hollow.ready_at.lock()[&new.0].duration_since(t0));
    }
    to_created.sort();
    to_ready.sort();
    println!(
        "pod delete -> replacement created: median {:?} (max {:?}); -> replacement Running/Ready: median {:?} (max {:?})",
        to_created[5], to_created[9], to_ready[5], to_ready[9]
    );

    // 3. Node death: the pods of hollow-3 Ready elsewhere.
    let all: Vec<Pod> = client
        .list::<Pod>("default", &Default::default())
        .await
        .unwrap()
        .0;
    let on_victim = all
        .iter()
        .filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("hollow-3")
                && p.metadata.deletion_timestamp.is_none()
        })
        .count();
    let ready_before = hollow.ready_at.lock().len();
    let t0 = Instant::now();
    hollow.dead.lock().push("hollow-3".into());
    // Wait until the replacements (as many as the node had) are Ready on live nodes.
    wait_until("replacements after node death", 60, || {
        hollow.ready_at.lock().len() >= ready_before + on_victim
    })
    .await;
    let death = hollow
        .ready_at
        .lock()
        .values()
        .max()
        .unwrap()
        .duration_since(t0);
    println!("node death ({on_victim} pods on it) -> all replacements Running/Ready elsewhere: {death:?} (Kubernetes defaults: ~5 min 40 s)");
    drop(running);
}
