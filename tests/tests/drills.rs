//! Drills on a local cluster of real binaries (issue 12): containerd restarted 10 times on a
//! node with pods, the node's agent killed (SIGKILL) 10 times, and the control plane restarted
//! on an empty data dir. Each time: no pod evicted, no container restarted, duplicated or
//! removed (same container IDs and restart counts), the node Ready all along. Each drill
//! prints its figures (`--nocapture`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::k8s::api::coordination::v1::Lease;
use corral_api::k8s::api::core::v1::{Node, Pod};
use corral_api::{Client, ListParams};
use corral_cluster::NodeLayout;
use corral_tests::{eventually, skip_unless_e2e, TestCluster};
use nix::sys::signal::Signal;

const ROUNDS: usize = 10;
const PODS: usize = 3;
const WAIT: Duration = Duration::from_secs(60);
/// Longer than the agent's relist period (10 s): whatever a relist would do, it has done.
const SETTLE: Duration = Duration::from_secs(12);
/// How long containerd stays down in each restart ("a restart of a few seconds"), and up
/// between two of them (its clients' retries come every second).
const DOWN: Duration = Duration::from_secs(2);
const UP: Duration = Duration::from_secs(1);

/// Per pod name: its uid, and per container its ID and restart count.
type Seen = BTreeMap<String, (String, BTreeMap<String, (String, i32)>)>;

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "web", "image": "fedek3/workshop-uns:v0.2.0"}]
        }
    }))
    .unwrap()
}

/// The drill's pods as the API shows them, once every one runs with a container ID.
async fn seen(client: &Client) -> Option<Seen> {
    let (pods, _) = client
        .list::<Pod>("default", &ListParams::default())
        .await
        .ok()?;
    let mut out = Seen::new();
    for p in pods.iter().filter(|p| {
        p.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("drill-"))
    }) {
        let status = p.status.as_ref()?;
        if status.phase.as_deref() != Some("Running") || p.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let mut containers = BTreeMap::new();
        for c in status.container_statuses.iter().flatten() {
            c.state.as_ref()?.running.as_ref()?;
            containers.insert(c.name.clone(), (c.container_id.clone()?, c.restart_count));
        }
        out.insert(
            p.metadata.name.clone()?,
            (p.metadata.uid.clone()?, containers),
        );
    }
    (out.len() == PODS).then_some(out)
}

/// The node's containers in containerd: (pod uid, container name) → running task count.
async fn in_containerd(node: &NodeLayout) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for c in corral_cluster::node_containers(node).await.unwrap() {
        let key = (
            c.labels.get("corral.pod.uid").cloned().unwrap_or_default(),
            c.labels
                .get("corral.container.name")
                .cloned()
                .unwrap_or_default(),
        );
        let running = matches!(c.state, corral_containerd::TaskState::Running { .. });
        *out.entry(key).or_default() += usize::from(running);
    }
    out
}

fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Counts the times the node is seen not Ready, polling every 100 ms until dropped.
struct ReadyWatch {
    not_ready: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyWatch {
    fn start(server: String, node: String) -> Self {
        let not_ready = Arc::new(AtomicUsize::new(0));
        let count = not_ready.clone();
        let task = tokio::spawn(async move {
            let creds = corral_tests::credentials_for(&server);
            let client = Client::connect_lazy_with(&server, &creds).unwrap();
            loop {
                if let Ok(Some(n)) = client.get_opt::<Node>("", &node).await {
                    if !ready(&n) {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { not_ready, task }
    }

    fn not_ready(&self) -> usize {
        self.not_ready.load(Ordering::SeqCst)
    }
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A cluster with one agent node running the drill's pods.
struct Drill {
    cluster: TestCluster,
    node: NodeLayout,
    client: Client,
    before: Seen,
}

impl Drill {
    async fn start(name: &str) -> Self {
        let cluster = TestCluster::create(name, 1).await;
        let node = cluster
            .state
            .layout
            .nodes
            .iter()
            .find(|n| n.name.ends_with("-agent-0"))
            .cloned()
            .unwrap();
        let client = cluster.client().await;
        for i in 0..PODS {
            client
                .create(&pod(&format!("drill-{i}"), &node.name))
                .await
                .unwrap();
        }
        let before = eventually("the drill's pods running", WAIT, || seen(&client)).await;
        Drill {
            cluster,
            node,
            client,
            before,
        }
    }

    fn process(&self, part: &str) -> String {
        format!("{}/{part}", self.node.name)
    }

    /// The agent's log on stderr when DRILL_DUMP is set, to read what it went through.
    fn dump_agent_log(&self) {
        if std::env::var_os("DRILL_DUMP").is_some() {
            let log = self.cluster.state.layout.dir.join("logs");
            let log = log.join(format!("{}-agent.log", self.node.name));
            eprintln!("{}", std::fs::read_to_string(log).unwrap_or_default());
        }
    }

    fn pid(&self, process: &str) -> u32 {
        let state =
            corral_cluster::State::load(&self.cluster.opts.base, &self.cluster.name).unwrap();
        state
            .processes
            .iter()
            .find(|p| p.name == process)
            .map(|p| p.pid)
            .unwrap_or_else(|| panic!("no process {process}"))
    }

    fn kill(&self, process: &str, signal: Signal) {
        corral_cluster::kill_process(&self.cluster.opts, &self.cluster.name, process, signal)
            .unwrap_or_else(|e| panic!("killing {process}: {e}"));
    }

    async fn start_process(&self, process: &str) {
        corral_cluster::start_process(&self.cluster.opts, &self.cluster.name, process, WAIT)
            .await
            .unwrap_or_else(|e| panic!("starting {process}: {e}\n{}", self.cluster.logs()));
    }

    /// For `SETTLE`, the node's containers all run in containerd while the node stays out of
    /// the cluster `client` talks to (another cluster than the node's).
    async fn assert_kept_outside(&self, client: &Client) {
        let deadline = Instant::now() + SETTLE;
        while Instant::now() < deadline {
            let tasks = in_containerd(&self.node).await;
            assert_eq!(tasks.len(), PODS, "containers kept: {tasks:?}");
            assert!(tasks.values().all(|n| *n == 1), "tasks running: {tasks:?}");
            let (nodes, _) = client
                .list::<Node>("", &ListParams::default())
                .await
                .unwrap();
            assert!(
                !nodes
                    .iter()
                    .any(|n| n.metadata.name.as_ref() == Some(&self.node.name)),
                "the node joined the other cluster"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every pod still runs the very containers it ran before, none restarted, one task per
    /// container in containerd; this holds for `SETTLE` (past a relist of the agent).
    async fn assert_untouched(&self) {
        let deadline = Instant::now() + SETTLE;
        let mut checks = 0;
        while Instant::now() < deadline || checks == 0 {
            let now = eventually("the drill's pods running", WAIT, || seen(&self.client)).await;
            assert_eq!(now, self.before, "pods changed\n{}", self.cluster.logs());
            let tasks = in_containerd(&self.node).await;
            let want: BTreeMap<_, _> = self
                .before
                .values()
                .flat_map(|(uid, cs)| cs.keys().map(move |c| ((uid.clone(), c.clone()), 1)))
                .collect();
            assert_eq!(tasks, want, "containerd's containers (running tasks)");
            checks += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_containerd_ten_times_evicts_and_restarts_nothing() {
    skip_unless_e2e!();
    let d = Drill::start("drillctd").await;
    let watch = ReadyWatch::start(d.cluster.server(), d.node.name.clone());
    let containerd = d.process("containerd");
    let t0 = Instant::now();
    for round in 0..ROUNDS {
        // A clean stop (systemctl restart) and a crash, in turn; the shims live on.
        let signal = if round % 2 == 0 {
            Signal::SIGTERM
        } else {
            Signal::SIGKILL
        };
        let pid = d.pid(&containerd);
        d.kill(&containerd, signal);
        // The drill's own timing, not a wait for a condition: the outage lasts this long.
        tokio::time::sleep(DOWN).await;
        d.start_process(&containerd).await;
        assert_ne!(d.pid(&containerd), pid, "containerd restarted");
        tokio::time::sleep(UP).await;
    }
    let restarts = t0.elapsed();
    d.assert_untouched().await;
    // The agent still drives containerd: a new pod starts, and a deleted one stops.
    d.client
        .create(&pod("after-drill", &d.node.name))
        .await
        .unwrap();
    let running = || async {
        let p: Pod = d.client.get("default", "after-drill").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    };
    eventually("a new pod running", WAIT, running).await;
    d.client
        .delete::<Pod>("default", "after-drill", Default::default())
        .await
        .unwrap();
    let gone = || async {
        let p: Option<Pod> = d.client.get_opt("default", "after-drill").await.ok()?;
        p.is_none().then_some(())
    };
    eventually("the new pod deleted", WAIT, gone).await;
    assert_eq!(watch.not_ready(), 0, "the node was seen not Ready");
    d.dump_agent_log();
    eprintln!(
        "drill containerd: {ROUNDS} restarts ({:.0}s down each) in {:.1}s, {PODS} pods: 0 \
         evictions, 0 container restarts, 0 NotReady observations",
        DOWN.as_secs_f64(),
        restarts.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_agent_ten_times_duplicates_and_restarts_nothing() {
    skip_unless_e2e!();
    let d = Drill::start("drillagent").await;
    let watch = ReadyWatch::start(d.cluster.server(), d.node.name.clone());
    let agent = d.process("agent");
    let mut back = Vec::new();
    let lease_renewed_since = |t: jiff::Timestamp| {
        let client = d.client.clone();
        let node = d.node.name.clone();
        move || {
            let (client, node) = (client.clone(), node.clone());
            async move {
                let l: Lease = client.get("kube-node-lease", &node).await.ok()?;
                (l.spec?.renew_time?.0 > t).then_some(())
            }
        }
    };
    for round in 0..ROUNDS {
        let killed = jiff::Timestamp::now();
        let t = Instant::now();
        d.kill(&agent, Signal::SIGKILL);
        d.start_process(&agent).await;
        if round % 2 == 0 {
            // Back once it renews the node's Lease again (past start-up and registration;
            // its pods are adopted right after).
            eventually(
                "the agent renewing its lease",
                WAIT,
                lease_renewed_since(killed),
            )
            .await;
            back.push(t.elapsed());
        } else {
            // The drill's timing: the next kill lands somewhere in this one's start-up.
            tokio::time::sleep(Duration::from_millis(60 * round as u64)).await;
        }
    }
    let last = jiff::Timestamp::now();
    eventually(
        "the agent renewing its lease",
        WAIT,
        lease_renewed_since(last),
    )
    .await;
    d.assert_untouched().await;
    d.dump_agent_log();
    assert_eq!(watch.not_ready(), 0, "the node was seen not Ready");
    let max = back.iter().max().unwrap();
    let mean = back.iter().sum::<Duration>() / back.len() as u32;
    eprintln!(
        "drill agent: {ROUNDS} SIGKILLs (half of them during start-up), back (lease renewed) in \
         {:.2}s on average, {:.2}s at most; {PODS} pods: 0 duplicates, 0 evictions, 0 container \
         restarts",
        mean.as_secs_f64(),
        max.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_restarted_on_an_empty_data_dir_stops_no_container() {
    skip_unless_e2e!();
    let d = Drill::start("drillcp").await;
    let data: PathBuf = d.cluster.state.layout.dir.join("controlplane");
    let kept = data.with_extension("kept");

    // The control plane comes back on an empty data dir: a new, empty cluster.
    d.kill("controlplane", Signal::SIGKILL);
    std::fs::rename(&data, &kept).unwrap();
    d.start_process("controlplane").await;
    let log = |file: &str| {
        std::fs::read_to_string(d.cluster.state.layout.dir.join("logs").join(file))
            .unwrap_or_default()
    };
    let agent_log = format!("{}-agent.log", d.node.name);
    assert!(
        log("controlplane.log").contains("initialised a NEW cluster"),
        "the control plane says it made a new cluster"
    );
    // The new cluster has a new CA: the node's certificate and trust are the old cluster's,
    // so it cannot even connect. Seen through the new cluster's admin: for longer than a
    // relist, the running agent touches nothing and registers nothing.
    let (server, creds) = corral_api::kubeconfig::load(&data.join("admin.kubeconfig")).unwrap();
    let other = Client::connect_with(&server, &creds).await.unwrap();
    d.assert_kept_outside(&other).await;
    // An agent started meanwhile (a node reboot, an upgrade) lists the new cluster's pods
    // (none): it must not remove the containers of the pods it does not know either.
    let agent = d.process("agent");
    d.kill(&agent, Signal::SIGKILL);
    d.start_process(&agent).await;
    d.assert_kept_outside(&other).await;

    let agent_log = log(&agent_log);
    let refusals = agent_log.matches("serves cluster").count()
        + agent_log.matches("not signed by the cluster CA").count();
    assert!(
        refusals >= 2,
        "the running and the restarted agent said why they refuse"
    );

    // The right data dir again: the node takes up where it was.
    d.kill("controlplane", Signal::SIGTERM);
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&kept, &data).unwrap();
    d.start_process("controlplane").await;
    d.assert_untouched().await;
    d.dump_agent_log();
    eprintln!(
        "drill control plane on an empty data dir: refused by the running agent and by a \
         restarted one, {PODS} pods kept (same container IDs, 0 restarts)"
    );
}
