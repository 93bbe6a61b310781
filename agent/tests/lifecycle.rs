//! End to end: container lifecycle hooks run by the real agent against real containers. A
//! preStop sleep delays the SIGTERM, a preStop exec runs inside the container before its
//! SIGTERM handler, a hook longer than the grace period is cut (SIGKILL 2 s after the grace),
//! a forced delete cuts a hook short (or skips it), and a failing postStart restarts the container.
//!
//! The few fixed sleeps here prove that something has NOT happened yet (the container still
//! runs while its hook does); everything that must happen is waited for with a deadline.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, DEADLINE};
use corral_agent::runtime::{ContainerRuntime, TaskState};
use corral_api::client::DeleteOptions;
use corral_api::k8s::api::core::v1::{
    Container, ContainerStatus, Event, ExecAction, HostPathVolumeSource, Lifecycle,
    LifecycleHandler, Pod, PodSpec, SleepAction, Volume, VolumeMount,
};

const SLEEPER: &str = "corral-test/sleeper:v1";

fn sleep_hook(seconds: i64) -> LifecycleHandler {
    LifecycleHandler {
        sleep: Some(SleepAction { seconds }),
        ..Default::default()
    }
}

fn exec_hook(command: &[&str]) -> LifecycleHandler {
    LifecycleHandler {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|s| s.to_string()).collect()),
        }),
        ..Default::default()
    }
}

fn app(name: &str, command: Option<&str>, lifecycle: Lifecycle) -> Container {
    Container {
        name: name.into(),
        image: Some(SLEEPER.into()),
        command: command.map(|c| vec!["sh".into(), "-c".into(), c.into()]),
        lifecycle: Some(lifecycle),
        ..Default::default()
    }
}

fn pre_stop(h: LifecycleHandler) -> Lifecycle {
    Lifecycle {
        pre_stop: Some(h),
        ..Default::default()
    }
}

fn post_start(h: LifecycleHandler) -> Lifecycle {
    Lifecycle {
        post_start: Some(h),
        ..Default::default()
    }
}

async fn create(c: &Cluster, name: &str, grace: i64, mut spec: PodSpec) {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    spec.termination_grace_period_seconds = Some(grace);
    p.spec = Some(spec);
    let p = c.client.create(&p).await.unwrap();
    let uid = p.metadata.uid.clone().unwrap();
    c.client.bind("default", name, &uid, &c.name).await.unwrap();
}

fn statuses(p: &Pod) -> Vec<ContainerStatus> {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default()
}

fn is_running(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.running.is_some())
}

/// Waits until every container of the pod runs; returns their runtime ids.
async fn wait_running(c: &Cluster, name: &str) -> Vec<String> {
    let p = c
        .wait_pod(name, "all containers running", |p| {
            let s = statuses(p);
            !s.is_empty() && s.iter().all(is_running)
        })
        .await;
    statuses(&p)
        .iter()
        .filter_map(|s| s.container_id.clone())
        .map(|id| id.trim_start_matches("containerd://").to_string())
        .collect()
}

async fn task_running(c: &Cluster, id: &str) -> bool {
    let list = c.runtime().await.list().await.unwrap();
    list.iter()
        .any(|i| i.id == id && matches!(i.state, TaskState::Running { .. }))
}

async fn delete(c: &Cluster, name: &str, grace: Option<i64>) {
    let opts = DeleteOptions {
        grace_period_seconds: grace,
        ..Default::default()
    };
    c.client.delete::<Pod>("default", name, opts).await.unwrap();
}

/// Waits for the pod to leave the API; returns when it was seen gone.
async fn wait_gone(c: &Cluster, name: &str) -> Instant {
    let start = Instant::now();
    while c
        .client
        .get_opt::<Pod>("default", name)
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            start.elapsed() < DEADLINE,
            "pod {name} never went away\n{}",
            c.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_stop_sleep_delays_the_sigterm() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    let spec = PodSpec {
        containers: vec![app("app", None, pre_stop(sleep_hook(2)))],
        ..Default::default()
    };
    create(&c, "sleepy", 10, spec).await;
    let ids = wait_running(&c, "sleepy").await;

    delete(&c, "sleepy", None).await;
    let deleted = Instant::now();
    // The sleeper exits within 1 s of a SIGTERM: still running 1.5 s after the delete means
    // the SIGTERM has not been sent yet. (A fixed sleep: it proves something has NOT happened.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        task_running(&c, &ids[0]).await,
        "container stopped during its preStop sleep\n{}",
        c.agent_log()
    );
    let gone = wait_gone(&c, "sleepy").await.duration_since(deleted);
    eprintln!("preStop sleep 2 s: pod gone {gone:?} after the delete");
    assert!(
        gone >= Duration::from_secs(2) && gone < Duration::from_secs(8),
        "pod gone after {gone:?}"
    );
    assert!(c.agent_log().contains("preStop hook done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_stop_exec_runs_inside_the_container_before_its_sigterm() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    let host = tempfile::Builder::new()
        .prefix("hook")
        .tempdir_in("/tmp")
        .unwrap();
    let mut container = app(
        "app",
        Some("trap 'echo term >> /data/log; exit 0' TERM; echo started >> /data/log; while true; do sleep 1; done"),
        pre_stop(exec_hook(&["sh", "-c", "echo prestop >> /data/log"])),
    );
    container.volume_mounts = Some(vec![VolumeMount {
        name: "data".into(),
        mount_path: "/data".into(),
        ..Default::default()
    }]);
    let spec = PodSpec {
        containers: vec![container],
        volumes: Some(vec![Volume {
            name: "data".into(),
            host_path: Some(HostPathVolumeSource {
                path: host.path().display().to_string(),
                type_: Some("Directory".into()),
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    create(&c, "marker", 10, spec).await;
    wait_running(&c, "marker").await;
    let log = host.path().join("log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("started")
    {
        assert!(
            start.elapsed() < DEADLINE,
            "container never wrote to the volume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    delete(&c, "marker", None).await;
    wait_gone(&c, "marker").await;
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        vec!["started", "prestop", "term"],
        "the preStop command runs in the container, before its SIGTERM\n{}",
        c.agent_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_stop_longer_than_the_grace_period_is_cut_and_the_container_killed_2s_later() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    // Ignores SIGTERM: only the SIGKILL stops it.
    let spec = PodSpec {
        containers: vec![app(
            "app",
            Some("trap '' TERM; while true; do sleep 1; done"),
            pre_stop(exec_hook(&["sleep", "60"])),
        )],
        ..Default::default()
    };
    create(&c, "stubborn", 2, spec).await;
    let ids = wait_running(&c, "stubborn").await;

    delete(&c, "stubborn", None).await;
    let deleted = Instant::now();
    // Past the 2 s grace but inside kubelet's extra 2 s: SIGTERM sent, SIGKILL not yet.
    // (A fixed sleep: it proves something has NOT happened.)
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(
        task_running(&c, &ids[0]).await,
        "killed before grace + 2 s\n{}",
        c.agent_log()
    );
    let gone = wait_gone(&c, "stubborn").await.duration_since(deleted);
    eprintln!("preStop 60 s, grace 2 s: pod gone {gone:?} after the delete");
    assert!(
        gone >= Duration::from_secs(4) && gone < Duration::from_secs(9),
        "pod gone after {gone:?} (grace 2 s + 2 s, hook 60 s)\n{}",
        c.agent_log()
    );
    assert!(c
        .agent_log()
        .contains("preStop hook did not finish within the grace period"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_delete_cuts_a_pre_stop_hook_short() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    let spec = PodSpec {
        containers: vec![
            app("a", None, pre_stop(sleep_hook(25))),
            app("b", None, pre_stop(sleep_hook(25))),
        ],
        ..Default::default()
    };
    create(&c, "forced", 30, spec).await;
    let ids = wait_running(&c, "forced").await;
    assert_eq!(ids.len(), 2);

    delete(&c, "forced", None).await;
    // Both hooks run side by side: neither container has had its SIGTERM a second later.
    // (A fixed sleep: it proves something has NOT happened.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in &ids {
        assert!(task_running(&c, id).await, "{id} stopped during its hook");
    }
    delete(&c, "forced", Some(0)).await;
    let forced = Instant::now();
    let rt = c.runtime().await;
    while !rt.list().await.unwrap().is_empty() {
        assert!(
            forced.elapsed() < Duration::from_secs(10),
            "containers still there {:?} after a forced delete\n{}",
            forced.elapsed(),
            c.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "forced delete: containers gone {:?} after it",
        forced.elapsed()
    );
    assert!(c.agent_log().contains("forced deletion"));

    // Deleted by force straight away: the hooks do not run at all.
    let spec = PodSpec {
        containers: vec![app("a", None, pre_stop(sleep_hook(25)))],
        ..Default::default()
    };
    create(&c, "forced-now", 30, spec).await;
    wait_running(&c, "forced-now").await;
    delete(&c, "forced-now", Some(0)).await;
    let forced = Instant::now();
    while !rt.list().await.unwrap().is_empty() {
        assert!(
            forced.elapsed() < Duration::from_secs(10),
            "containers still there {:?} after a forced delete\n{}",
            forced.elapsed(),
            c.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "forced delete alone: containers gone {:?} after it",
        forced.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_start_gates_running_and_a_failing_one_restarts_the_container() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    let ok = PodSpec {
        containers: vec![app("app", None, post_start(sleep_hook(2)))],
        ..Default::default()
    };
    // The sleep must fit in the grace period (API validation).
    create(&c, "slow-start", 3, ok).await;
    let failing = PodSpec {
        containers: vec![app(
            "app",
            None,
            post_start(exec_hook(&["sh", "-c", "exit 7"])),
        )],
        ..Default::default()
    };
    create(&c, "bad-start", 1, failing).await;

    // Shown Running only once its 2 s postStart sleep is over.
    let p = c
        .wait_pod("slow-start", "running", |p| {
            statuses(p).iter().any(is_running)
        })
        .await;
    let s = &statuses(&p)[0];
    let started = s.state.as_ref().unwrap().running.as_ref().unwrap();
    let since = jiff::Timestamp::now().duration_since(started.started_at.as_ref().unwrap().0);
    assert!(
        since >= jiff::SignedDuration::from_secs(2),
        "shown Running {since:?} after the start, before its postStart hook ended"
    );
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    eprintln!("postStart sleep 2 s: shown Running {since:?} after the start");

    // The failing hook kills each attempt; it is never shown Running.
    let p = c
        .wait_pod("bad-start", "restartCount >= 2", |p| {
            let s = statuses(p);
            assert!(!s.iter().any(is_running), "shown Running: {s:?}");
            s.first().is_some_and(|s| s.restart_count >= 2)
        })
        .await;
    assert!(!statuses(&p)[0].ready);
    let start = Instant::now();
    loop {
        let events = c
            .client
            .list::<Event>("default", &Default::default())
            .await
            .unwrap()
            .0;
        let hit = events.iter().find(|e| {
            e.involved_object.name.as_deref() == Some("bad-start")
                && e.reason.as_deref() == Some("FailedPostStartHook")
        });
        if let Some(e) = hit {
            assert_eq!(e.type_.as_deref(), Some("Warning"));
            assert_eq!(
                e.involved_object.field_path.as_deref(),
                Some("spec.containers{app}")
            );
            break;
        }
        assert!(start.elapsed() < DEADLINE, "no FailedPostStartHook event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c
        .agent_log()
        .contains("postStart hook failed, killing the container"));
}
