//! The worker driven without root: the fake runtime, network, API and clock stand in for
//! containerd, CNI, the API server and time, so restarts, back-off, deletion and status can be
//! checked call by call.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::{Desired, Event, NodeContext, Terminate, Worker};
use crate::clock::{Clock, FakeClock};
use crate::drain::fake::FakeDrain;
use crate::network::fake::FakeNetwork;
use crate::pod::api::fake::{Calls, FakePodApi};
use crate::pod::state::BackoffPolicy;
use crate::runtime::fake::{Call, FakeRuntime};
use crate::runtime::{self as rt, TaskState};

mod events;

const DEADLINE: Duration = Duration::from_secs(10);

pub(super) struct Rig {
    ctx: Arc<NodeContext>,
    runtime: Arc<FakeRuntime>,
    network: Arc<FakeNetwork>,
    api: Arc<FakePodApi>,
    clock: Arc<FakeClock>,
    /// Released (every proxy has dropped every pod) unless a test holds it.
    drain: Arc<FakeDrain>,
    _dir: tempfile::TempDir,
}

pub(super) struct Running {
    desired: watch::Sender<Desired>,
    events: mpsc::Sender<Event>,
    done: mpsc::UnboundedReceiver<String>,
}

impl Rig {
    pub(super) fn new() -> Self {
        Self::build(true)
    }

    /// A rig whose terminating pods wait for `drain.release()` (or their bound).
    pub(super) fn holding() -> Self {
        Self::build(false)
    }

    fn build(released: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FakeClock::new("2026-01-01T00:00:00Z".parse().unwrap()));
        let runtime = Arc::new(
            FakeRuntime::new()
                .with_clock(clock.clone())
                .with_image("busybox:1"),
        );
        let network = Arc::new(FakeNetwork::default());
        let api = Arc::new(FakePodApi::default());
        let drain = Arc::new(FakeDrain::default());
        if released {
            drain.release();
        }
        let ctx = Arc::new(NodeContext {
            // Only the manager uses it; nothing listens there.
            client: corral_api::Client::connect_lazy("http://127.0.0.1:9").unwrap(),
            api: api.clone(),
            recorder: corral_api::runtime::Recorder::with_sink(
                api.clone(),
                crate::pod::events::reporter("node-1"),
            ),
            clock: clock.clone(),
            runtime: runtime.clone(),
            network: network.clone(),
            node_name: "node-1".into(),
            node_ip: "192.0.2.1".into(),
            data_dir: dir.path().to_path_buf(),
            backoff: BackoffPolicy::default(),
            resolv_conf: dir.path().join("resolv.conf"),
            cluster_dns: Default::default(),
            nofile: 1024,
            drain: drain.clone(),
        });
        Rig {
            ctx,
            runtime,
            network,
            api,
            clock,
            drain,
            _dir: dir,
        }
    }

    pub(super) fn spawn(&self, pod: Pod) -> Running {
        self.spawn_adopting(pod, Vec::new())
    }

    fn spawn_adopting(&self, pod: Pod, adopted: Vec<rt::ContainerInfo>) -> Running {
        let (done_tx, done) = mpsc::unbounded_channel();
        let desired = Desired {
            pod,
            terminate: Terminate::No,
        };
        let (desired, events) = Worker::spawn(self.ctx.clone(), desired, adopted, done_tx);
        Running {
            desired,
            events,
            done,
        }
    }

    /// The first status posted for which `f` holds.
    pub(super) async fn status_where(&self, f: impl Fn(&PodStatus) -> bool) -> PodStatus {
        within(
            self.api
                .wait_for(|c: &Calls| c.statuses.iter().find(|s| f(s)).cloned()),
        )
        .await
    }

    /// The container `app` once it runs with `restarts` restarts.
    pub(super) async fn running(&self, restarts: i32) -> ContainerStatus {
        let s = self
            .status_where(|s| {
                app(s).is_some_and(|c| {
                    c.restart_count == restarts && c.state.as_ref().unwrap().running.is_some()
                })
            })
            .await;
        app(&s).unwrap().clone()
    }
}

pub(super) async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("the worker got there before the deadline")
}

pub(super) fn pod(restart_policy: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {
            "restartPolicy": restart_policy,
            "containers": [{"name": "app", "image": "busybox:1", "command": ["sleep", "1000"]}]
        }
    }))
    .unwrap()
}

pub(super) fn app(s: &PodStatus) -> Option<&ContainerStatus> {
    s.container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "app")
}

pub(super) fn waiting_reason(s: &PodStatus) -> Option<String> {
    app(s)?.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

#[tokio::test]
async fn an_exited_container_restarts_at_once_then_after_the_back_off_measured_by_the_clock() {
    let rig = Rig::new();
    let _w = rig.spawn(pod("Always"));
    let first = rig.running(0).await;
    assert_eq!(first.container_id.as_deref(), Some("containerd://u1-app-0"));

    // The first crash restarts at once.
    assert!(rig.runtime.exit("u1-app-0", 1));
    rig.running(1).await;

    // The second waits 10 s of the clock in CrashLoopBackOff.
    assert!(rig.runtime.exit("u1-app-1", 1));
    let s = rig
        .status_where(|s| waiting_reason(s).as_deref() == Some("CrashLoopBackOff"))
        .await;
    let waiting = app(&s).unwrap().state.clone().unwrap().waiting.unwrap();
    assert_eq!(
        waiting.message.as_deref(),
        Some("back-off 10s restarting failed container")
    );
    assert!(rig.runtime.created("u1-app-2").is_none());

    rig.clock.advance(Duration::from_secs(10));
    let third = rig.running(2).await;
    assert_eq!(third.container_id.as_deref(), Some("containerd://u1-app-2"));
    let last = third.last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
}

#[tokio::test]
async fn a_deleted_pod_has_its_containers_stopped_and_the_final_grace_zero_delete_sent() {
    let rig = Rig::new();
    let mut w = rig.spawn(pod("Always"));
    rig.running(0).await;

    let now = rig.clock.now();
    w.desired.send_modify(|d| {
        d.pod.metadata.deletion_timestamp = Some(Time(now));
        d.pod.metadata.deletion_grace_period_seconds = Some(30);
        d.terminate = Terminate::Graceful;
    });
    let delete = within(rig.api.wait_for(|c| c.deletes.first().cloned())).await;
    assert_eq!(
        (delete.namespace.as_str(), delete.name.as_str()),
        ("default", "web")
    );
    assert_eq!(delete.opts.grace_period_seconds, Some(0));
    assert_eq!(delete.opts.uid.as_deref(), Some("u1"));
    assert_eq!(within(w.done.recv()).await.as_deref(), Some("u1"));

    let calls: Vec<Call> = rig.runtime.history().into_iter().map(|c| c.call).collect();
    let term = Call::Kill {
        id: "u1-app-0".into(),
        signal: 15,
    };
    let term_at = calls.iter().position(|c| *c == term).expect("SIGTERM sent");
    let removed_at = calls
        .iter()
        .position(|c| *c == Call::Remove("u1-app-0".into()))
        .expect("container removed");
    assert!(term_at < removed_at, "{calls:?}");
    assert!(rig.runtime.containers().is_empty());
    assert_eq!(rig.network.teardowns(), vec!["u1".to_string()]);
    assert_eq!(rig.api.calls().deletes.len(), 1);
}

#[tokio::test]
async fn a_deleted_pod_gets_sigterm_only_once_every_proxy_has_dropped_it() {
    let rig = Rig::holding();
    let w = rig.spawn(pod("Always"));
    rig.running(0).await;
    let now = rig.clock.now();
    w.desired.send_modify(|d| {
        d.pod.metadata.deletion_timestamp = Some(Time(now));
        d.pod.metadata.deletion_grace_period_seconds = Some(30);
        d.terminate = Terminate::Graceful;
    });
    let asked = within(async {
        loop {
            if let Some(a) = rig.drain.asked.lock().first().cloned() {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(asked, ("u1".to_string(), Duration::from_secs(30)));
    let term = Call::Kill {
        id: "u1-app-0".into(),
        signal: 15,
    };
    let sent = |rig: &Rig| rig.runtime.history().iter().any(|c| c.call == term);
    // Pacing, not a wait for a condition: time in which the old code had sent SIGTERM.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !sent(&rig),
        "SIGTERM sent while proxies still route to the pod"
    );
    rig.drain.release();
    within(rig.api.wait_for(|c| c.deletes.first().cloned())).await;
    assert!(sent(&rig));
}

#[tokio::test]
async fn status_is_reported_running_then_succeeded_when_the_container_exits_cleanly() {
    let rig = Rig::new();
    let _w = rig.spawn(pod("Never"));
    rig.running(0).await;
    assert!(rig.runtime.exit("u1-app-0", 0));
    rig.status_where(|s| s.phase.as_deref() == Some("Succeeded"))
        .await;

    let mut phases = rig.api.calls().phases();
    phases.dedup();
    assert_eq!(phases, vec!["Running", "Succeeded"]);
    let s = rig.api.calls().statuses.last().cloned().unwrap();
    let done = app(&s).unwrap().state.clone().unwrap().terminated.unwrap();
    assert_eq!(
        (done.exit_code, done.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.2"));
    assert!(rig.runtime.created("u1-app-1").is_none());
}

#[tokio::test]
async fn a_running_container_missing_from_the_relist_counts_as_killed_and_restarts() {
    let rig = Rig::new();
    let w = rig.spawn(pod("Always"));
    rig.running(0).await;

    let taken_at = rig.clock.now() + Duration::from_secs(1);
    w.events
        .send(Event::Relist {
            containers: Vec::new(),
            taken_at,
        })
        .await
        .unwrap();
    let again = rig.running(1).await;
    let last = again.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 137);
    assert_eq!(last.container_id.as_deref(), Some("containerd://u1-app-0"));
}

#[tokio::test]
async fn a_failed_sandbox_keeps_the_pod_creating_until_the_retry_the_clock_measures() {
    let rig = Rig::new();
    rig.network.fail_setup(Some("no addresses left"));
    let _w = rig.spawn(pod("Always"));
    let s = rig
        .status_where(|s| waiting_reason(s).as_deref() == Some("ContainerCreating"))
        .await;
    let message = app(&s)
        .unwrap()
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap()
        .message;
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("no addresses left")),
        "{message:?}"
    );
    // The container made alongside the failed setup is gone again.
    assert!(rig.runtime.containers().is_empty());

    rig.network.fail_setup(None);
    rig.clock.advance(Duration::from_secs(2));
    rig.running(0).await;
    assert_eq!(rig.network.pods(), vec!["u1".to_string()]);
}

#[tokio::test]
async fn a_container_found_running_after_an_agent_restart_is_adopted_not_recreated() {
    let rig = Rig::new();
    let started = rig.clock.now() - Duration::from_secs(60);
    let labels = HashMap::from([
        (rt::LABEL_POD_UID.to_string(), "u1".to_string()),
        (rt::LABEL_CONTAINER_NAME.to_string(), "app".to_string()),
        (rt::LABEL_ATTEMPT.to_string(), "3".to_string()),
        (rt::LABEL_STARTED_AT.to_string(), started.to_string()),
    ]);
    rig.runtime.add_running("u1-app-3", labels);
    let found = rig.runtime.containers();
    assert!(matches!(found[0].state, TaskState::Running { .. }));
    let _w = rig.spawn_adopting(pod("Always"), found);

    let c = rig.running(3).await;
    assert_eq!(c.container_id.as_deref(), Some("containerd://u1-app-3"));
    let shown = c.state.unwrap().running.unwrap().started_at.unwrap().0;
    assert_eq!(shown, started);
    let created = rig
        .runtime
        .history()
        .iter()
        .any(|c| matches!(c.call, Call::Create(_)));
    assert!(!created, "an adopted container is not created again");
}
