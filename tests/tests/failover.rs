//! Three control planes (the real binary) on one real 3-member etcd. The scheduler and hollow
//! nodes are given only the server that leads the controllers and learn the others from
//! `default/kubernetes`. After `kill -9` of that server: the nodes stay Ready (their Leases
//! are renewed through the others), a Deployment created right after rolls out, the
//! controllers' Lease moves within its lease time, a client given every server writes again
//! after one failed call at most, and its watch resumes with no gap and no duplicate. The
//! fail-over time is printed as a figure.

#[path = "../../controlplane/tests/common/etcd.rs"]
#[allow(dead_code)]
mod etcd;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::k8s::api::apps::v1::Deployment;
use corral_api::k8s::api::coordination::v1::Lease;
use corral_api::k8s::api::core::v1::{ConfigMap, Endpoints, Node};
use corral_api::runtime::{Event, WatcherConfig};
use corral_api::{kinds, Client, Credentials, ListParams};
use corral_tests::kubectl::KillOnDrop;
use corral_tests::procs::{free_port, spawn_logged};
use corral_tests::{eventually, target_dir};
use serde_json::json;

/// The Lease whose holder runs the controllers.
const CONTROLLERS_LEASE: &str = "corral-controller-manager";

struct Server {
    name: String,
    url: String,
    dir: tempfile::TempDir,
    process: KillOnDrop,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
    fn creds(&self) -> Credentials {
        corral_api::kubeconfig::load(&self.dir.path().join("admin.kubeconfig"))
            .expect("admin kubeconfig")
            .1
    }
}

async fn start_server(name: &str, etcd: &[String], token: Option<&str>) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut cmd = Command::new(target_dir().join("corral-controlplane"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--datastore-endpoint", &etcd.join(",")])
        // The controllers' identity starts with the host name: it tells the servers apart.
        .env("HOSTNAME", name);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let process = spawn_logged(&mut cmd, &dir.path().join("log"));
    let server = Server {
        name: name.into(),
        url: format!("https://127.0.0.1:{port}"),
        dir,
        process,
    };
    eventually(
        &format!("{name} to serve ({})", server.log()),
        Duration::from_secs(60),
        || async {
            let creds = corral_api::kubeconfig::load(&server.dir.path().join("admin.kubeconfig"))
                .ok()?
                .1;
            let c = Client::connect_with(&server.url, &creds).await.ok()?;
            c.version().await.ok()
        },
    )
    .await;
    server
}

async fn controllers_leader(c: &Client) -> Option<String> {
    let lease = c
        .get_opt::<Lease>("kube-system", CONTROLLERS_LEASE)
        .await
        .ok()??;
    let holder = lease.spec?.holder_identity?;
    Some(holder.split('_').next()?.to_string())
}

/// When each node's Ready condition last changed, by node.
async fn ready_since(c: &Client) -> Vec<(String, Option<String>, String)> {
    let (nodes, _) = c.list::<Node>("", &ListParams::default()).await.unwrap();
    nodes
        .into_iter()
        .map(|n| {
            let ready = n
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Ready");
            (
                n.metadata.name.unwrap_or_default(),
                ready
                    .as_ref()
                    .and_then(|r| r.last_transition_time.as_ref())
                    .map(|t| t.0.to_string()),
                ready.map(|r| r.status).unwrap_or_default(),
            )
        })
        .collect()
}

fn etcd_available() -> Option<etcd::EtcdCluster> {
    etcd::EtcdCluster::start(3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_the_nodes_use_moves_them_and_the_controllers_to_the_others() {
    let Some(etcd) = etcd_available() else {
        return;
    };
    let endpoints = etcd.endpoints();
    let a = start_server("server-a", &endpoints, None).await;
    let token = std::fs::read_to_string(a.dir.path().join("server-token")).expect("token");
    let b = start_server("server-b", &endpoints, Some(token.trim())).await;
    let c = start_server("server-c", &endpoints, Some(token.trim())).await;
    let mut servers = [a, b, c];
    let all = servers
        .iter()
        .map(|s| s.url.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let client = Client::connect_lazy_with(&all, &servers[0].creds()).expect("client");

    // Every server lists itself in default/kubernetes.
    eventually(
        "three servers in default/kubernetes",
        Duration::from_secs(30),
        || async {
            let ep = client
                .get_opt::<Endpoints>("default", "kubernetes")
                .await
                .ok()??;
            (corral_api::runtime::servers::addresses(&ep).len() == 3).then_some(())
        },
    )
    .await;

    // The nodes and the scheduler use the server that leads the controllers, so killing it
    // costs both their connection and the controllers' leader.
    let leader_name = eventually("a controllers' leader", Duration::from_secs(30), || {
        controllers_leader(&client)
    })
    .await;
    let leader_at = servers
        .iter()
        .position(|s| s.name == leader_name)
        .expect("the leader is one of the servers");
    let leader = &servers[leader_at];
    let work = tempfile::tempdir().unwrap();
    let hollow_log = work.path().join("hollow.log");
    let _hollow = spawn_logged(
        Command::new(target_dir().join("corral-hollow"))
            .arg("--kubeconfig")
            .arg(leader.dir.path().join("admin.kubeconfig"))
            .args(["--nodes", "3", "--lease-renew-ms", "1000"]),
        &hollow_log,
    );
    let scheduler_log = work.path().join("scheduler.log");
    let _scheduler = spawn_logged(
        Command::new(target_dir().join("corral-scheduler"))
            .arg("--kubeconfig")
            .arg(leader.dir.path().join("tls/scheduler.kubeconfig")),
        &scheduler_log,
    );
    eventually("3 Ready nodes", Duration::from_secs(60), || async {
        let nodes = ready_since(&client).await;
        (nodes.len() == 3 && nodes.iter().all(|n| n.2 == "True")).then_some(())
    })
    .await;
    // Both learned the other two servers.
    let others: Vec<String> = servers
        .iter()
        .filter(|s| s.name != leader.name)
        .map(|s| s.url.trim_start_matches("https://").to_string())
        .collect();
    for log in [&hollow_log, &scheduler_log] {
        eventually(
            &format!("{} to learn the servers", log.display()),
            Duration::from_secs(30),
            || async {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                text.lines()
                    .any(|l| {
                        l.contains("control planes learned") && others.iter().all(|o| l.contains(o))
                    })
                    .then_some(())
            },
        )
        .await;
    }
    let before = ready_since(&client).await;

    // A writer and a watcher through a client that knows every server and uses the leader's,
    // before and after the kill.
    let lead_first: Vec<&str> = std::iter::once(leader.url.as_str())
        .chain(
            servers
                .iter()
                .filter(|s| s.name != leader.name)
                .map(|s| s.url.as_str()),
        )
        .collect();
    let lead_client =
        Client::connect_lazy_with(&lead_first.join(","), &servers[0].creds()).expect("client");
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let watch = {
        let seen = seen.clone();
        let events = corral_api::runtime::watcher::<ConfigMap>(
            lead_client.clone(),
            WatcherConfig {
                namespace: "default".into(),
                ..WatcherConfig::labels("tick")
            },
        );
        tokio::spawn(async move {
            futures::pin_mut!(events);
            while let Some(event) = futures::StreamExt::next(&mut events).await {
                seen.lock().unwrap().record(event);
            }
        })
    };
    let writes = Arc::new(WriteLog::default());
    let writer = {
        let (client, writes) = (lead_client.clone(), writes.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let name = format!("tick-{i}");
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": "default", "labels": {"tick": "1"}}});
                let ok = client
                    .create_value(&kinds::CONFIGMAPS, "default", &cm, false)
                    .await
                    .is_ok();
                writes.push(Instant::now(), ok.then_some(name));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // kill -9 of the server the nodes, the scheduler and the writer use.
    let killed_at = Instant::now();
    let leader_name = leader.name.clone();
    let dead = &mut servers[leader_at].process.0;
    dead.kill().expect("kill -9"); // Child::kill sends SIGKILL
    let _ = dead.wait();

    // A Deployment created right after rolls out on the nodes.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "after-kill", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "after-kill"}},
            "template": {"metadata": {"labels": {"app": "after-kill"}},
                "spec": {"containers": [{"name": "c", "image": "example/after-kill:1"}]}}}});
    eventually(
        "the Deployment to be created",
        Duration::from_secs(10),
        || async {
            client
                .create_value(&kinds::DEPLOYMENTS, "default", &deployment, false)
                .await
                .ok()
        },
    )
    .await;
    let new_leader = eventually(
        "the controllers' Lease to move",
        Duration::from_secs(20),
        || async {
            controllers_leader(&client)
                .await
                .filter(|l| *l != leader_name)
        },
    )
    .await;
    let moved_after = killed_at.elapsed();
    eventually(
        "the Deployment to roll out",
        Duration::from_secs(60),
        || async {
            let d = client
                .get_opt::<Deployment>("default", "after-kill")
                .await
                .ok()??;
            (d.status?.available_replicas? == 3).then_some(())
        },
    )
    .await;

    // The nodes stayed Ready throughout: their Ready condition never changed.
    let after = ready_since(&client).await;
    assert_eq!(before, after, "a node's Ready condition changed");
    writer.abort();
    // The watch resumed on another server from its last revision: every acknowledged write
    // arrived exactly once, with no re-list.
    let acknowledged = writes.acknowledged();
    eventually(
        "the watcher to see every acknowledged write",
        Duration::from_secs(20),
        || async {
            let seen = seen.lock().unwrap();
            acknowledged
                .iter()
                .all(|n| seen.names.contains(n))
                .then_some(())
        },
    )
    .await;
    watch.abort();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.lists, 1, "the watch re-listed instead of resuming");
        let mut names = seen.names.clone();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            seen.names.len(),
            "an event was delivered twice"
        );
    }
    let (failed, recovered) = writes.after(killed_at);
    let recovered = recovered.expect("a write was acknowledged after the kill");
    assert!(failed <= 1, "{failed} writes failed after the kill");
    println!(
        "FIGURE fail-over: first acknowledged write {:?} after kill -9 of {} ({failed} failed call); controllers' Lease moved to {new_leader} after {moved_after:?}",
        recovered, leader_name
    );
}

/// When each write of the writer task ended, and the name it wrote when acknowledged.
#[derive(Default)]
struct WriteLog(std::sync::Mutex<Vec<(Instant, Option<String>)>>);

impl WriteLog {
    fn push(&self, at: Instant, acknowledged: Option<String>) {
        self.0.lock().unwrap().push((at, acknowledged));
    }
    /// Failed calls that ended after `t`, and when the first acknowledged one ended.
    fn after(&self, t: Instant) -> (usize, Option<Duration>) {
        let log = self.0.lock().unwrap();
        let later: Vec<_> = log.iter().filter(|(at, _)| *at > t).collect();
        let first_ok = later
            .iter()
            .find(|(_, ok)| ok.is_some())
            .map(|(at, _)| *at - t);
        let failed = later.iter().take_while(|(_, ok)| ok.is_none()).count();
        (failed, first_ok)
    }
    fn acknowledged(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, n)| n.clone())
            .collect()
    }
}

/// What the watcher delivered: lists made (the first, and any re-list) and created names.
#[derive(Default)]
struct Seen {
    lists: usize,
    names: Vec<String>,
}

impl Seen {
    fn record(&mut self, event: Event<ConfigMap>) {
        let name = |cm: &ConfigMap| cm.metadata.name.clone().unwrap_or_default();
        match event {
            Event::Restarted(items, _) => {
                self.lists += 1;
                self.names.extend(items.iter().map(name));
            }
            Event::Applied(cm) => self.names.push(name(&cm)),
            Event::Deleted(_) | Event::Bookmark(_) => {}
        }
    }
}
