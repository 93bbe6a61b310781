//! Crashes at the agent's fail points (the `fail` crate, compiled in for test builds only): a
//! worker dies between a container's create and its start, or the agent between CNI ADD and
//! the pod's network record; the next worker (a restarted agent) must run the pod exactly
//! once and leak nothing. Fail points are process-wide: each test holds a `FailScenario`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use corral_agent::clock::{Clock, FakeClock, SystemClock};
use corral_agent::network::fake::FakeNetwork;
use corral_agent::network::{Cni, CniConfig, Network, PodNetRequest};
use corral_agent::pod::api::fake::{Calls, FakePodApi};
use corral_agent::pod::state::BackoffPolicy;
use corral_agent::pod::worker::{Desired, NodeContext, Terminate, Worker};
use corral_agent::runtime::fake::{Call, FakeRuntime};
use corral_agent::runtime::{ContainerInfo, ContainerRuntime, TaskState};
use fail::FailScenario;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::{mpsc, watch};

const DEADLINE: Duration = Duration::from_secs(10);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("got there before the deadline")
}

fn pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {"containers": [{"name": "app", "image": "busybox:1", "command": ["sleep", "1000"]}]}
    }))
    .unwrap()
}

/// One node's worth of fakes, shared by the worker that crashes and the one after it.
struct Node {
    ctx: Arc<NodeContext>,
    fake: Option<Arc<FakeRuntime>>,
    network: Arc<FakeNetwork>,
    api: Arc<FakePodApi>,
    _dir: tempfile::TempDir,
}

struct Spawned {
    desired: watch::Sender<Desired>,
    done: mpsc::UnboundedReceiver<String>,
}

impl Node {
    fn new() -> Self {
        let clock = Arc::new(FakeClock::new("2026-01-01T00:00:00Z".parse().unwrap()));
        let runtime = Arc::new(
            FakeRuntime::new()
                .with_clock(clock.clone())
                .with_image("busybox:1"),
        );
        let node = Self::with(runtime.clone(), clock);
        Node {
            fake: Some(runtime),
            ..node
        }
    }

    fn with(runtime: Arc<dyn ContainerRuntime>, clock: Arc<dyn Clock>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let network = Arc::new(FakeNetwork::default());
        let api = Arc::new(FakePodApi::default());
        let ctx = Arc::new(NodeContext {
            client: corral_api::Client::connect_lazy("http://127.0.0.1:9").unwrap(),
            api: api.clone(),
            recorder: corral_api::runtime::Recorder::with_sink(
                api.clone(),
                corral_agent::pod::events::reporter("node-1"),
            ),
            clock,
            runtime,
            network: network.clone(),
            node_name: "node-1".into(),
            node_ip: "192.0.2.1".into(),
            data_dir: dir.path().to_path_buf(),
            backoff: BackoffPolicy::default(),
            resolv_conf: dir.path().join("resolv.conf"),
            cluster_dns: Default::default(),
            nofile: 1024,
            drain: Arc::new(corral_agent::drain::Off),
        });
        Node {
            ctx,
            fake: None,
            network,
            api,
            _dir: dir,
        }
    }

    fn runtime(&self) -> &FakeRuntime {
        self.fake.as_ref().expect("a fake runtime")
    }

    /// A worker as the manager starts it: with the containers the runtime has of the pod.
    fn spawn(&self, found: Vec<ContainerInfo>) -> Spawned {
        self.spawn_pod(pod(), found)
    }

    fn spawn_pod(&self, pod: Pod, found: Vec<ContainerInfo>) -> Spawned {
        let (done_tx, done) = mpsc::unbounded_channel();
        let desired = Desired {
            pod,
            terminate: Terminate::No,
        };
        let (desired, _events) = Worker::spawn(self.ctx.clone(), desired, found, done_tx);
        Spawned { desired, done }
    }

    async fn status_where(&self, f: impl Fn(&PodStatus) -> bool) -> PodStatus {
        within(
            self.api
                .wait_for(|c: &Calls| c.statuses.iter().find(|s| f(s)).cloned()),
        )
        .await
    }
}

fn started(calls: &[Call]) -> usize {
    calls
        .iter()
        .filter(|c| matches!(c, Call::StartTask(_)))
        .count()
}

#[tokio::test]
async fn a_worker_that_crashes_between_create_and_start_runs_its_container_once_after_the_restart()
{
    let scenario = FailScenario::setup();
    fail::cfg("agent::container-created", "1*panic").unwrap();
    let node = Node::new();

    // The first worker dies at the fail point: its task ends without reporting.
    let mut first = node.spawn(Vec::new());
    assert_eq!(within(first.done.recv()).await, None, "the worker crashed");
    let left = node.runtime().containers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].state, TaskState::Created, "created, never started");
    let calls: Vec<Call> = node
        .runtime()
        .history()
        .into_iter()
        .map(|c| c.call)
        .collect();
    assert_eq!(started(&calls), 0, "{calls:?}");

    // The next agent hands the leftover to the pod's new worker, as the manager does.
    let _second = node.spawn(node.runtime().containers());
    let s = node
        .status_where(|s| {
            s.container_statuses.iter().flatten().any(|c| {
                c.state.as_ref().is_some_and(|st| st.running.is_some()) && c.restart_count == 0
            })
        })
        .await;
    assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.2"), "the first address");

    let containers = node.runtime().containers();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert!(matches!(containers[0].state, TaskState::Running { .. }));
    let calls: Vec<Call> = node
        .runtime()
        .history()
        .into_iter()
        .map(|c| c.call)
        .collect();
    assert_eq!(started(&calls), 1, "started exactly once: {calls:?}");
    let removed_before_create = calls
        .iter()
        .position(|c| *c == Call::Remove("u1-app-0".into()))
        .zip(
            calls
                .iter()
                .rposition(|c| *c == Call::Create("u1-app-0".into())),
        )
        .is_some_and(|(removed, created)| removed < created);
    assert!(removed_before_create, "leftover removed first: {calls:?}");
    assert_eq!(node.network.pods(), vec!["u1".to_string()]);
    let posted = node.api.calls().statuses;
    assert!(
        posted.iter().all(|s| s
            .container_statuses
            .iter()
            .flatten()
            .all(|c| c.restart_count == 0)),
        "no restart was ever shown"
    );
    scenario.teardown();
}

/// Addresses host-local holds in `ipam_dir` (one file per address).
fn reserved(ipam_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(ipam_dir.join("corral"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Unmounts what the test mounted under its directory, even when it fails.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(&self.0) {
            for e in rd.flatten() {
                let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

#[test]
fn a_crash_between_cni_add_and_its_record_leaks_no_address_and_the_next_setup_succeeds() {
    if !nix::unistd::Uid::effective().is_root() || !Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!("SKIPPED: needs root and the CNI plugins in /usr/lib/cni");
        return;
    }
    let scenario = FailScenario::setup();
    fail::cfg("agent::cni-added", "1*panic").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let netns_dir = dir.path().join("netns");
    let _unmount = Unmount(netns_dir.clone());
    let cfg = CniConfig {
        bin_dir: "/usr/lib/cni".into(),
        netns_dir: netns_dir.clone(),
        state_dir: dir.path().join("cni"),
        bridge: "crlfail0".into(),
        pod_cidr: "10.99.7.0/24".into(),
        mtu: None,
    };
    let ipam = cfg.state_dir.join("ipam");
    // The plugins run from this thread, inside a network namespace of its own: the bridge and
    // the pod's veth never touch the host's, and go with the thread.
    let run = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let req = PodNetRequest {
                uid: "u1".into(),
                namespace: "default".into(),
                name: "web".into(),
                host_ports: Vec::new(),
            };
            let crashing = Cni::new(cfg.clone());
            let r = tokio::spawn({
                let req = req.clone();
                async move { crashing.setup(&req).await }
            })
            .await;
            assert!(r.is_err_and(|e| e.is_panic()), "the setup crashed");
            assert_eq!(reserved(&ipam).len(), 1, "an address was handed out");

            // The restarted agent's relist sees the pod's network, so a pod deleted meanwhile
            // would still be released.
            let next = Cni::new(cfg.clone());
            assert_eq!(next.list().await.unwrap(), vec!["u1".to_string()]);

            // Its worker sets the pod up again: in one go, with one address.
            let net = next
                .setup(&req)
                .await
                .expect("the setup after the crash succeeds");
            assert_eq!(reserved(&ipam), BTreeSet::from([net.ip.clone()]));
            let again = next.setup(&req).await.unwrap();
            assert_eq!(again, net, "a second setup finds the first");

            next.teardown("u1").await.unwrap();
            assert_eq!(reserved(&ipam), BTreeSet::new(), "address released");
            assert!(!next.netns_path("u1").exists(), "namespace removed");
            assert_eq!(next.list().await.unwrap(), Vec::<String>::new());
        });
    });
    if let Err(panic) = run.join() {
        std::panic::resume_unwind(panic);
    }
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_containerd_a_crash_between_create_and_start_leaves_no_second_process_or_shim() {
    skip_unless_runnable!();
    let scenario = FailScenario::setup();
    fail::cfg("agent::container-created", "1*panic").unwrap();
    let ctd = common::ContainerdFixture::start();
    let runtime = Arc::new(ctd.runtime().await);
    let archive = common::image_archive("docker.io/corral-test/sleeper:v1");
    runtime.import_archive(&archive).await.unwrap();
    let node = Node::with(runtime.clone(), Arc::new(SystemClock));
    let uid = format!("fp-{}", std::process::id());
    // The node's network namespace: the fake network has none to offer.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": uid},
        "spec": {
            "hostNetwork": true,
            "containers": [{"name": "app", "image": "corral-test/sleeper:v1"}]
        }
    }))
    .unwrap();

    // The first worker dies with the container created and its task made (`runc create`:
    // a process waits in the container's namespaces for the start that never comes).
    let mut first = node.spawn_pod(pod.clone(), Vec::new());
    assert_eq!(within(first.done.recv()).await, None, "the worker crashed");
    let left = runtime.list().await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].state, TaskState::Created);

    let second = node.spawn_pod(pod, left);
    node.status_where(|s| {
        s.container_statuses.iter().flatten().any(|c| {
            c.state.as_ref().is_some_and(|st| st.running.is_some()) && c.restart_count == 0
        })
    })
    .await;
    let now = runtime.list().await.unwrap();
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(matches!(now[0].state, TaskState::Running { .. }));
    // The image's command ran once: its first line is in the attempt's log once.
    let log = node.ctx.log_path(&uid, "app", 0);
    let printed = || async {
        let text = tokio::fs::read_to_string(&log).await.unwrap_or_default();
        Some(text.matches("sleeping").count()).filter(|n| *n > 0)
    };
    let times = within(async {
        loop {
            if let Some(n) = printed().await {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(times, 1, "the container's command ran once");
    // One shim left: the crashed attempt's went with its task.
    let shims = || {
        let needle = format!("-address {}", ctd.socket.display());
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains("containerd-shim") && c.contains(&needle))
            .count()
    };
    within(async {
        while shims() != 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Cleaned up as a deleted pod is.
    second
        .desired
        .send_modify(|d| d.terminate = Terminate::Gone);
    let mut second = second;
    within(second.done.recv()).await;
    assert!(runtime.list().await.unwrap().is_empty());
    common::remove_cgroups(&format!("corral/pod{uid}"), &[]);
    scenario.teardown();
}
