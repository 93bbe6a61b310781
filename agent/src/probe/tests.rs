use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, HTTPGetAction, HTTPHeader, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::action::status_code;
use super::*;
use crate::pod::state::{container_status, ContainerRecord, Current, RestartPolicy};
use crate::runtime::fake::FakeRuntime;

fn container(probe: Probe) -> Container {
    Container {
        name: "app".into(),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }]),
        readiness_probe: Some(probe),
        ..Default::default()
    }
}

fn spec(success: u32, failure: u32, kind: Kind) -> ProbeSpec {
    ProbeSpec {
        kind,
        action: Action::Exec {
            command: vec!["true".into()],
        },
        initial_delay: Duration::ZERO,
        period: Duration::from_secs(10),
        timeout: Duration::from_secs(1),
        success_threshold: success,
        failure_threshold: failure,
        termination_grace: None,
    }
}

#[test]
fn probe_state_flips_only_at_the_thresholds() {
    // (kind, success threshold, failure threshold, results, expected changes per result)
    type Case = (Kind, u32, u32, Vec<bool>, Vec<Option<bool>>);
    let cases: Vec<Case> = vec![
        (Kind::Readiness, 1, 3, vec![true], vec![Some(true)]),
        (
            Kind::Readiness,
            2,
            3,
            vec![true, false, true, true],
            vec![None, None, None, Some(true)],
        ),
        (
            Kind::Readiness,
            1,
            3,
            vec![true, false, false, true, false, false, false],
            vec![Some(true), None, None, None, None, None, Some(false)],
        ),
        (Kind::Readiness, 1, 1, vec![false], vec![None]),
        (
            Kind::Liveness,
            1,
            3,
            vec![false, false, false],
            vec![None, None, Some(false)],
        ),
        (
            Kind::Liveness,
            1,
            1,
            vec![true, false],
            vec![None, Some(false)],
        ),
        (
            Kind::Startup,
            1,
            2,
            vec![false, true],
            vec![None, Some(true)],
        ),
    ];
    for (i, (kind, s, f, results, want)) in cases.into_iter().enumerate() {
        let mut st = ProbeState::new(&spec(s, f, kind));
        let got: Vec<Option<bool>> = results.into_iter().map(|ok| st.observe(ok)).collect();
        assert_eq!(got, want, "case {i}");
    }
}

#[test]
fn startup_probe_gives_up_after_failure_threshold() {
    let mut st = ProbeState::new(&spec(1, 3, Kind::Startup));
    assert!(!st.result());
    st.observe(false);
    st.observe(false);
    assert!(!st.failing());
    st.observe(false);
    assert!(st.failing());
}

#[test]
fn probe_defaults_follow_kubernetes() {
    let c = container(Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let p =
        ProbeSpec::from_probe(&c, Kind::Readiness, c.readiness_probe.as_ref().unwrap()).unwrap();
    assert_eq!(p.period, Duration::from_secs(10));
    assert_eq!(p.timeout, Duration::from_secs(1));
    assert_eq!(p.initial_delay, Duration::ZERO);
    assert_eq!((p.success_threshold, p.failure_threshold), (1, 3));
    assert_eq!(
        p.action,
        Action::Http {
            host: None,
            port: 8080,
            path: "/".into(),
            scheme: "HTTP".into(),
            headers: vec![],
        }
    );
}

#[test]
fn probe_specs_are_parsed_or_rejected_with_the_field() {
    let http = |port: IntOrString| Probe {
        http_get: Some(HTTPGetAction {
            port,
            path: Some("healthz".into()),
            http_headers: Some(vec![HTTPHeader {
                name: "X-Probe".into(),
                value: "1".into(),
            }]),
            ..Default::default()
        }),
        period_seconds: Some(2),
        timeout_seconds: Some(5),
        success_threshold: Some(2),
        failure_threshold: Some(1),
        initial_delay_seconds: Some(4),
        ..Default::default()
    };
    let cases: Vec<(Kind, Probe, Result<Action, &str>)> = vec![
        (
            Kind::Readiness,
            http(IntOrString::Int(80)),
            Ok(Action::Http {
                host: None,
                port: 80,
                path: "/healthz".into(),
                scheme: "HTTP".into(),
                headers: vec![("X-Probe".into(), "1".into())],
            }),
        ),
        (
            Kind::Readiness,
            http(IntOrString::String("metrics".into())),
            Err("readinessProbe.httpGet.port"),
        ),
        (
            Kind::Readiness,
            http(IntOrString::Int(70000)),
            Err("readinessProbe.httpGet.port"),
        ),
        (
            Kind::Liveness,
            http(IntOrString::Int(80)),
            Err("livenessProbe.successThreshold"),
        ),
        (
            Kind::Liveness,
            Probe {
                tcp_socket: Some(TCPSocketAction {
                    port: IntOrString::String("http".into()),
                    host: None,
                }),
                ..Default::default()
            },
            Ok(Action::Tcp {
                host: None,
                port: 8080,
            }),
        ),
        (
            Kind::Startup,
            Probe {
                exec: Some(ExecAction {
                    command: Some(vec!["cat".into(), "/tmp/ok".into()]),
                }),
                ..Default::default()
            },
            Ok(Action::Exec {
                command: vec!["cat".into(), "/tmp/ok".into()],
            }),
        ),
        (
            Kind::Liveness,
            Probe {
                exec: Some(ExecAction {
                    command: Some(vec![]),
                }),
                ..Default::default()
            },
            Err("livenessProbe.exec.command"),
        ),
        (Kind::Liveness, Probe::default(), Err("livenessProbe.")),
    ];
    for (i, (kind, probe, want)) in cases.into_iter().enumerate() {
        let c = container(probe.clone());
        let got = ProbeSpec::from_probe(&c, kind, &probe);
        match (got, want) {
            (Ok(p), Ok(a)) => assert_eq!(p.action, a, "case {i}"),
            (Err(e), Err(field)) => {
                assert_eq!(e.field, field, "case {i}");
                assert!(e.to_string().starts_with("container \"app\": "), "{e}");
            }
            (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn status_lines_are_parsed() {
    assert_eq!(status_code("HTTP/1.1 200 OK\r\n"), Some(200));
    assert_eq!(status_code("HTTP/1.0 404 Not Found\r\n\r\n"), Some(404));
    assert_eq!(status_code("SSH-2.0-OpenSSH\r\n"), None);
    assert_eq!(status_code(""), None);
}

#[test]
fn readiness_and_startup_results_drive_container_ready() {
    let now = Timestamp::now();
    let running = |ready: Option<bool>, started: Option<bool>| ContainerRecord {
        current: Some(Current::Running { started_at: now }),
        probe_ready: ready,
        probe_started: started,
        ..Default::default()
    };
    // (record, ready, started)
    let cases = vec![
        (running(None, None), true, true),
        (running(Some(false), None), false, true),
        (running(Some(true), None), true, true),
        (running(Some(true), Some(false)), false, false),
        (running(None, Some(true)), true, true),
        (ContainerRecord::default(), false, false),
    ];
    for (i, (rec, ready, started)) in cases.into_iter().enumerate() {
        let s = container_status("app", "img", &rec, RestartPolicy::Always, now);
        assert_eq!((s.ready, s.started), (ready, Some(started)), "case {i}");
    }
}

/// A one-shot HTTP server on loopback answering with `status`.
async fn serve(status: &'static str) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await;
        }
    });
    port
}

#[tokio::test]
async fn actions_succeed_on_2xx_3xx_open_ports_and_exit_zero() {
    let rt: Arc<dyn crate::runtime::ContainerRuntime> = Arc::new(FakeRuntime::new());
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let http = |port: u16| Action::Http {
        host: None,
        port,
        path: "/healthz".into(),
        scheme: "HTTP".into(),
        headers: vec![("X-A".into(), "b".into())],
    };
    let cases = vec![
        (http(serve("200 OK").await), true),
        (http(serve("302 Found").await), true),
        (http(serve("404 Not Found").await), false),
        (http(serve("500 Internal Server Error").await), false),
        (http(closed), false),
        (
            Action::Tcp {
                host: None,
                port: serve("200 OK").await,
            },
            true,
        ),
        (
            Action::Tcp {
                host: None,
                port: closed,
            },
            false,
        ),
        (
            Action::Exec {
                command: vec!["true".into()],
            },
            true,
        ),
        (
            Action::Exec {
                command: vec!["false".into()],
            },
            false,
        ),
    ];
    for (i, (action, ok)) in cases.into_iter().enumerate() {
        let r = run_action(&action, "127.0.0.1", "c1", &rt, Duration::from_secs(2)).await;
        assert_eq!(r.is_ok(), ok, "case {i}: {r:?}");
    }
}

/// kubelet's lifecycle httpGet only fails without an answer; a probe needs 2xx/3xx.
#[tokio::test]
async fn hook_http_handlers_pass_on_any_answer() {
    let rt: Arc<dyn crate::runtime::ContainerRuntime> = Arc::new(FakeRuntime::new());
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let http = |port: u16| Action::Http {
        host: None,
        port,
        path: "/stop".into(),
        scheme: "HTTP".into(),
        headers: vec![],
    };
    let t = Duration::from_secs(2);
    let failing = http(serve("500 Internal Server Error").await);
    assert!(run_action(&failing, "127.0.0.1", "c1", &rt, t)
        .await
        .is_err());
    assert_eq!(
        run_hook_action(&failing, "127.0.0.1", "c1", &rt, t).await,
        Ok(())
    );
    assert!(run_hook_action(&http(closed), "127.0.0.1", "c1", &rt, t)
        .await
        .is_err());
    let exec = Action::Exec {
        command: vec!["false".into()],
    };
    assert!(run_hook_action(&exec, "127.0.0.1", "c1", &rt, t)
        .await
        .is_err());
}

#[tokio::test]
async fn prober_reports_readiness_changes_and_liveness_failure() {
    let rt: Arc<dyn crate::runtime::ContainerRuntime> = Arc::new(FakeRuntime::new());
    let mut probes = std::collections::BTreeMap::new();
    let mut ready = spec(1, 1, Kind::Readiness);
    ready.period = Duration::from_millis(20);
    probes.insert("readinessProbe", ready);
    let mut live = spec(1, 2, Kind::Liveness);
    live.period = Duration::from_millis(20);
    live.action = Action::Exec {
        command: vec!["false".into()],
    };
    probes.insert("livenessProbe", live);
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let target = Target {
        container: "app".into(),
        id: "c1".into(),
        pod_ip: "127.0.0.1".into(),
        runtime: rt,
    };
    let h = spawn(probes, target, tx, |u| u);
    let mut got = Vec::new();
    // Each failed liveness attempt is reported too: read until the give-up.
    while !got
        .iter()
        .any(|u| matches!(u, ProbeUpdate::Unhealthy { .. }))
    {
        let u = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        got.push(u.expect("prober update in time").expect("prober alive"));
    }
    h.abort();
    assert!(got.contains(&ProbeUpdate::Ready(true)), "{got:?}");
    assert!(
        got.iter().any(|u| matches!(
            u,
            ProbeUpdate::Unhealthy {
                kind: Kind::Liveness,
                ..
            }
        )),
        "{got:?}"
    );
}

#[tokio::test]
async fn each_failed_readiness_attempt_is_reported_for_kubelets_unhealthy_event() {
    let rt: Arc<dyn crate::runtime::ContainerRuntime> = Arc::new(FakeRuntime::new());
    let mut probes = std::collections::BTreeMap::new();
    let mut ready = spec(1, 3, Kind::Readiness);
    ready.period = Duration::from_millis(20);
    ready.action = Action::Exec {
        command: vec!["false".into()],
    };
    probes.insert("readinessProbe", ready);
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let target = Target {
        container: "app".into(),
        id: "c1".into(),
        pod_ip: "127.0.0.1".into(),
        runtime: rt,
    };
    let h = spawn(probes, target, tx, |u| u);
    let mut failed = 0;
    while failed < 3 {
        let u = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        match u.expect("prober update in time").expect("prober alive") {
            ProbeUpdate::Failed {
                kind: Kind::Readiness,
                ..
            } => failed += 1,
            ProbeUpdate::Ready(false) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    h.abort();
}

/// kubelet's prober records `Liveness probe failed: ...` / `Startup probe failed: ...` on
/// every failed attempt, not only at the one that kills the container.
#[tokio::test]
async fn each_failed_liveness_and_startup_attempt_is_reported_before_the_give_up() {
    for kind in [Kind::Liveness, Kind::Startup] {
        let rt: Arc<dyn crate::runtime::ContainerRuntime> = Arc::new(FakeRuntime::new());
        let mut probe = spec(1, 3, kind);
        probe.period = Duration::from_millis(20);
        probe.action = Action::Exec {
            command: vec!["false".into()],
        };
        let probes = std::collections::BTreeMap::from([(kind.field(), probe)]);
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let target = Target {
            container: "app".into(),
            id: "c1".into(),
            pod_ip: "127.0.0.1".into(),
            runtime: rt,
        };
        let h = spawn(probes, target, tx, |u| u);
        let mut got = Vec::new();
        loop {
            let u = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            let u = u.expect("prober update in time").expect("prober alive");
            let last = matches!(u, ProbeUpdate::Unhealthy { .. });
            got.push(u);
            if last {
                break;
            }
        }
        h.abort();
        let failed = ProbeUpdate::Failed {
            kind,
            output: "command [\"false\"] exited with 1".into(),
        };
        assert_eq!(
            got,
            [
                failed.clone(),
                failed.clone(),
                failed,
                ProbeUpdate::Unhealthy {
                    kind,
                    message: "command [\"false\"] exited with 1".into(),
                    grace: None,
                },
            ],
            "{kind:?}"
        );
    }
}
