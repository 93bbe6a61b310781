//! Drill: the real `corral-controlplane` binary is killed with SIGKILL several times while
//! concurrent clients create and apply ConfigMaps; after every restart each acknowledged write
//! is there (a later, unacknowledged one may be too).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::{Client, ListParams};
use k8s_openapi::api::core::v1::ConfigMap;
use parking_lot::Mutex;
use serde_json::json;

const CLIENTS: usize = 8;
const OPS_PER_CLIENT: usize = 125;
const KEYS_PER_CLIENT: usize = 25;
/// Kill the control plane when this many writes were acknowledged.
const KILL_AT: [usize; 10] = [80, 170, 260, 350, 440, 530, 620, 710, 800, 890];

/// The control plane process, killed when dropped.
struct Plane {
    child: Child,
}

impl Plane {
    fn start(addr: &str, dir: &Path) -> Plane {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("controlplane.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_corral-controlplane"))
            .args(["--listen", addr, "--no-controllers", "--data-dir"])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting corral-controlplane");
        Plane { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn config_map(name: &str, version: usize) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default"},
           "data": {"version": version.to_string()}})
}

fn version(cm: &ConfigMap) -> usize {
    cm.data
        .as_ref()
        .and_then(|d| d.get("version"))
        .and_then(|v| v.parse().ok())
        .expect("a version in data")
}

/// What the clients were told: the newest acknowledged version of each ConfigMap.
#[derive(Default)]
struct Acked {
    versions: HashMap<String, usize>,
    writes: usize,
    /// Attempts that got no acknowledgement (the control plane was killed or restarting).
    failed_attempts: usize,
    /// Creates whose retry found the object stored: the first attempt's answer was lost.
    stored_unanswered: usize,
}

/// One client: creates its ConfigMaps, then applies new versions of them, each operation
/// retried until it is acknowledged (the control plane may be down).
async fn client(id: usize, client: Client, acked: Arc<Mutex<Acked>>) {
    for op in 0..OPS_PER_CLIENT {
        let name = format!("c{id}-{}", op % KEYS_PER_CLIENT);
        let object = config_map(&name, op);
        loop {
            let done = if op < KEYS_PER_CLIENT {
                let info = corral_api::kinds::by_plural("configmaps").expect("configmaps");
                match client.create_value(info, "default", &object, false).await {
                    Ok(_) => true,
                    // An earlier attempt was stored but its answer was lost in a kill.
                    Err(e) if e.is_already_exists() => {
                        acked.lock().stored_unanswered += 1;
                        true
                    }
                    Err(_) => false,
                }
            } else {
                client.apply_value("default", &object, false).await.is_ok()
            };
            if done {
                let mut a = acked.lock();
                a.versions.insert(name.clone(), op);
                a.writes += 1;
                break;
            }
            acked.lock().failed_attempts += 1;
            // The control plane is down or restarting: try again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Lists the ConfigMaps once the control plane answers, and checks that every write
/// acknowledged before the list is there. Returns how many were checked.
async fn check(client: &Client, acked: &Mutex<Acked>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = acked.lock().versions.clone();
    let stored = loop {
        match client
            .list::<ConfigMap>("default", &ListParams::default())
            .await
        {
            Ok((items, _)) => break items,
            Err(e) => {
                assert!(Instant::now() < deadline, "control plane not back: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let stored: HashMap<String, usize> = stored
        .iter()
        .map(|cm| (cm.metadata.name.clone().unwrap_or_default(), version(cm)))
        .collect();
    let lost: Vec<_> = want
        .iter()
        .filter(|(name, v)| stored.get(*name).is_none_or(|s| s < v))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    want.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_control_plane_during_a_thousand_writes_loses_no_acknowledged_write() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut plane = Plane::start(&addr, dir.path());
    let creds = common::admin_credentials(&dir.path().join("data")).await;
    let api = Client::connect_lazy_with(&format!("https://{addr}"), &creds).unwrap();
    check(&api, &Mutex::default()).await;
    let acked = Arc::new(Mutex::new(Acked::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let c = Client::connect_lazy_with(&format!("https://{addr}"), &creds).unwrap();
            tokio::spawn(client(id, c, acked.clone()))
        })
        .collect();
    let mut kills = 0;
    for at in KILL_AT {
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.lock().writes < at {
            assert!(Instant::now() < deadline, "writes stalled before {at}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        plane.kill();
        kills += 1;
        plane = Plane::start(&addr, dir.path());
        check(&api, &acked).await;
    }
    for c in clients {
        tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("clients finish")
            .unwrap();
    }
    plane.kill();
    plane = Plane::start(&addr, dir.path());
    let checked = check(&api, &acked).await;
    let (writes, failed, unanswered) = {
        let a = acked.lock();
        (a.writes, a.failed_attempts, a.stored_unanswered)
    };
    eprintln!(
        "drill: {writes} writes acknowledged by {CLIENTS} clients, {kills} SIGKILLs \
         ({failed} attempts unanswered and retried, {unanswered} of them found stored), \
         {checked} ConfigMaps checked after each restart, 0 acknowledged writes lost, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(writes, CLIENTS * OPS_PER_CLIENT);
    assert_eq!(checked, CLIENTS * KEYS_PER_CLIENT);
    drop(plane);
}
