use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, HTTPGetAction, Lifecycle, LifecycleHandler, Pod,
    SleepAction, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::pod::api::fake::FakePodApi;
use crate::runtime::fake::{Call, FakeRuntime};

fn container(pre_stop: Option<LifecycleHandler>) -> Container {
    Container {
        name: "app".into(),
        ports: Some(vec![ContainerPort {
            name: Some("web".into()),
            container_port: 8080,
            ..Default::default()
        }]),
        lifecycle: Some(Lifecycle {
            pre_stop,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn exec(cmd: &[&str]) -> Option<ExecAction> {
    Some(ExecAction {
        command: Some(cmd.iter().map(|s| s.to_string()).collect()),
    })
}

fn http(port: IntOrString) -> Option<HTTPGetAction> {
    Some(HTTPGetAction {
        port,
        ..Default::default()
    })
}

type Want = Result<Option<Handler>, &'static str>;

#[test]
fn hooks_have_exactly_one_supported_handler() {
    let sleep = |s| Some(SleepAction { seconds: s });
    let h = LifecycleHandler::default;
    let cases: Vec<(Option<LifecycleHandler>, Want)> = vec![
        (None, Ok(None)),
        (
            Some(LifecycleHandler {
                exec: exec(&["sh", "-c", "echo bye"]),
                ..h()
            }),
            Ok(Some(Handler::Action(Action::Exec {
                command: vec!["sh".into(), "-c".into(), "echo bye".into()],
            }))),
        ),
        (
            Some(LifecycleHandler {
                http_get: http(IntOrString::String("web".into())),
                ..h()
            }),
            Ok(Some(Handler::Action(Action::Http {
                host: None,
                port: 8080,
                path: "/".into(),
                scheme: "HTTP".into(),
                headers: vec![],
            }))),
        ),
        (
            Some(LifecycleHandler {
                sleep: sleep(5),
                ..h()
            }),
            Ok(Some(Handler::Sleep(Duration::from_secs(5)))),
        ),
        (
            Some(LifecycleHandler {
                sleep: sleep(0),
                ..h()
            }),
            Ok(Some(Handler::Sleep(Duration::ZERO))),
        ),
        (
            Some(h()),
            Err("container \"app\": lifecycle.preStop: must specify a handler type"),
        ),
        (
            Some(LifecycleHandler {
                exec: exec(&["true"]),
                sleep: sleep(1),
                ..h()
            }),
            Err("container \"app\": lifecycle.preStop: may not specify more than 1 handler type"),
        ),
        (
            Some(LifecycleHandler {
                exec: exec(&[]),
                ..h()
            }),
            Err("container \"app\": lifecycle.preStop.exec.command: must not be empty"),
        ),
        (
            Some(LifecycleHandler {
                http_get: http(IntOrString::String("nope".into())),
                ..h()
            }),
            Err("container \"app\": lifecycle.preStop.httpGet.port: no container port named \"nope\""),
        ),
        (
            Some(LifecycleHandler {
                sleep: sleep(-1),
                ..h()
            }),
            Err("container \"app\": lifecycle.preStop.sleep.seconds: must be non-negative"),
        ),
        (
            Some(LifecycleHandler {
                tcp_socket: Some(TCPSocketAction {
                    port: IntOrString::Int(80),
                    host: None,
                }),
                ..h()
            }),
            Err("container \"app\": lifecycle.preStop.tcpSocket: tcpSocket is not a supported lifecycle handler"),
        ),
    ];
    for (i, (handler, want)) in cases.into_iter().enumerate() {
        let c = container(handler);
        let got = handler_of(&c, Hook::PreStop).map_err(|e| e.to_string());
        assert_eq!(got, want.map_err(String::from), "case {i}");
        assert_eq!(handler_of(&c, Hook::PostStart), Ok(None), "case {i}");
    }
}

#[test]
fn sigterm_window_is_the_rest_of_the_grace_period_and_at_least_2s_after_a_hook() {
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    let cases = [
        // (grace, hook ran, hook took) -> window
        (s(30), false, s(0), s(30)),
        (s(30), true, s(2), s(28)),
        (s(30), true, ms(29_500), s(2)),
        (s(5), true, s(5), s(2)),
        (s(5), true, s(9), s(2)),
        (s(1), false, s(0), s(1)),
        (s(0), false, s(0), s(0)),
    ];
    for (i, (grace, ran, took, want)) in cases.into_iter().enumerate() {
        assert_eq!(term_window(grace, ran, took), want, "case {i}");
    }
}

/// The fake runtime with one running container `c1` whose process exits on SIGTERM only if
/// `exits_on_term`, and whose execs take `exec_takes`.
fn runtime(exits_on_term: bool, exec_takes: Duration) -> Arc<FakeRuntime> {
    let rt = FakeRuntime::new()
        .exits_on_term(exits_on_term)
        .exec_takes(exec_takes);
    rt.add_running("c1", HashMap::new());
    Arc::new(rt)
}

/// The hook execs and the signals the runtime saw, as `exec <command>` and `kill <signal>`.
trait Recorded {
    fn calls(&self) -> Vec<String>;
    fn at(&self, call: &str) -> Instant;
}

impl Recorded for FakeRuntime {
    fn calls(&self) -> Vec<String> {
        self.history()
            .into_iter()
            .filter(|c| matches!(c.call, Call::Exec { .. } | Call::Kill { .. }))
            .map(|c| c.call.to_string())
            .collect()
    }
    fn at(&self, call: &str) -> Instant {
        self.history()
            .into_iter()
            .find(|c| c.call.to_string() == call)
            .map(|c| c.at)
            .unwrap_or_else(|| panic!("no {call} in {:?}", self.calls()))
    }
}

fn target(rt: Arc<FakeRuntime>) -> Target {
    Target {
        container: "app".into(),
        id: "c1".into(),
        pod_ip: "127.0.0.1".into(),
        runtime: rt,
    }
}

fn events() -> PodEvents {
    let recorder = corral_api::runtime::Recorder::with_sink(
        Arc::new(FakePodApi::default()),
        crate::pod::events::reporter("node-1"),
    );
    PodEvents::new(&recorder, &Pod::default())
}

fn exec_handler(cmd: &str) -> Option<Result<Handler, ProbeError>> {
    Some(Ok(Handler::Action(Action::Exec {
        command: vec![cmd.into()],
    })))
}

const TERM: &str = "kill 15";
const KILL: &str = "kill 9";

#[tokio::test]
async fn pre_stop_runs_before_sigterm_and_a_container_that_exits_is_not_killed() {
    let rt = runtime(true, Duration::ZERO);
    stop(
        &target(rt.clone()),
        exec_handler("true"),
        Duration::from_secs(5),
        &events(),
        None,
    )
    .await;
    assert_eq!(rt.calls(), vec!["exec true", TERM]);

    // A failing hook does not keep the container from stopping.
    let rt = runtime(true, Duration::ZERO);
    stop(
        &target(rt.clone()),
        exec_handler("false"),
        Duration::from_secs(5),
        &events(),
        None,
    )
    .await;
    assert_eq!(rt.calls(), vec!["exec false", TERM]);

    // No hook at all with a zero grace period: straight to SIGKILL.
    let rt = runtime(false, Duration::ZERO);
    stop(
        &target(rt.clone()),
        exec_handler("true"),
        Duration::ZERO,
        &events(),
        None,
    )
    .await;
    assert_eq!(rt.calls(), vec![TERM, KILL]);
}

#[tokio::test]
async fn a_hook_longer_than_the_grace_period_is_cut_and_sigkill_follows_2s_after() {
    let rt = runtime(false, Duration::from_secs(60));
    let t0 = Instant::now();
    stop(
        &target(rt.clone()),
        exec_handler("sleep"),
        Duration::from_secs(1),
        &events(),
        None,
    )
    .await;
    assert_eq!(rt.calls(), vec!["exec sleep", TERM, KILL]);
    let term = rt.at(TERM).duration_since(t0);
    let kill = rt.at(KILL).duration_since(rt.at(TERM));
    assert!(
        term >= Duration::from_secs(1) && term < Duration::from_millis(1500),
        "SIGTERM at {term:?}"
    );
    assert!(
        kill >= MIN_TERM_WINDOW && kill < MIN_TERM_WINDOW + Duration::from_millis(500),
        "SIGKILL {kill:?} after SIGTERM"
    );
}

#[tokio::test]
async fn sleep_handler_delays_sigterm() {
    let rt = runtime(true, Duration::ZERO);
    let t0 = Instant::now();
    let sleep = Some(Ok(Handler::Sleep(Duration::from_millis(300))));
    stop(
        &target(rt.clone()),
        sleep,
        Duration::from_secs(5),
        &events(),
        None,
    )
    .await;
    assert_eq!(rt.calls(), vec![TERM]);
    assert!(rt.at(TERM).duration_since(t0) >= Duration::from_millis(300));
}

#[tokio::test]
async fn sigterm_waits_for_the_hold_which_runs_beside_the_pre_stop_hook() {
    use futures::FutureExt;
    let rt = runtime(true, Duration::ZERO);
    let (open, opened) = tokio::sync::oneshot::channel::<()>();
    let hold = async move {
        let _ = opened.await;
    }
    .boxed()
    .shared();
    let stopping = tokio::spawn({
        let target = target(rt.clone());
        async move {
            stop(
                &target,
                exec_handler("true"),
                Duration::from_secs(5),
                &events(),
                Some(hold),
            )
            .await
        }
    });
    // The hook ran at once; SIGTERM waits for the hold.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.calls().is_empty() {
        assert!(Instant::now() < deadline, "the preStop hook never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Pacing: time in which a stop not waiting for the hold sends SIGTERM.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rt.calls(), vec!["exec true"]);
    open.send(()).unwrap();
    stopping.await.unwrap();
    assert_eq!(rt.calls(), vec!["exec true", TERM]);
}
