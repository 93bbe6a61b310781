//! End to end: probes run by the real agent against real containers. A readiness httpGet on
//! a path that answers 404 keeps the pod not Ready while one on `/healthz` makes it Ready; a
//! liveness exec probe running `false` inside the container gets it killed and restarted.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use corral_api::k8s::api::core::v1::{
    Container, ContainerPort, ExecAction, HTTPGetAction, Pod, PodSpec, Probe, TCPSocketAction,
};
use corral_api::k8s::apimachinery::pkg::util::intstr::IntOrString;

fn http_probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(80),
            ..Default::default()
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Default::default()
    }
}

async fn create(c: &Cluster, name: &str, readiness: Option<Probe>, liveness: Option<Probe>) {
    create_with(c, name, readiness, liveness, None).await
}

async fn create_with(
    c: &Cluster,
    name: &str,
    readiness: Option<Probe>,
    liveness: Option<Probe>,
    startup: Option<Probe>,
) {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    p.spec = Some(PodSpec {
        containers: vec![Container {
            name: "app".into(),
            image: Some("fedek3/workshop-uns:v0.2.0".into()),
            ports: Some(vec![ContainerPort {
                name: Some("web".into()),
                container_port: 80,
                ..Default::default()
            }]),
            readiness_probe: readiness,
            liveness_probe: liveness,
            startup_probe: startup,
            ..Default::default()
        }],
        termination_grace_period_seconds: Some(1),
        ..Default::default()
    });
    let p = c.client.create(&p).await.unwrap();
    let uid = p.metadata.uid.clone().unwrap();
    c.client.bind("default", name, &uid, &c.name).await.unwrap();
}

fn condition(p: &Pod, type_: &str) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

fn app(p: &Pod) -> Option<&corral_api::k8s::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn running_for(p: &Pod) -> Option<Duration> {
    let started = app(p)?
        .state
        .as_ref()?
        .running
        .as_ref()?
        .started_at
        .as_ref()?
        .0;
    let d = jiff::Timestamp::now().duration_since(started);
    Duration::try_from(d).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_liveness_probes_drive_ready_and_restarts() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    c.wait_node_ready().await;
    create(&c, "ready-ok", Some(http_probe("/healthz")), None).await;
    create(&c, "ready-404", Some(http_probe("/nope")), None).await;
    let live = Probe {
        exec: Some(ExecAction {
            command: Some(vec!["false".into()]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(2),
        ..Default::default()
    };
    create(&c, "live-false", None, Some(live)).await;

    // The probe on /healthz passes: Ready and ContainersReady become True.
    c.wait_pod("ready-ok", "Ready=True", |p| {
        condition(p, "Ready") == "True" && condition(p, "ContainersReady") == "True"
    })
    .await;

    // The probe on a 404 path fails: running for several probe periods, never ready.
    let p = c
        .wait_pod("ready-404", "running for 4s", |p| {
            assert_ne!(
                condition(p, "Ready"),
                "True",
                "404 probe made the pod ready"
            );
            running_for(p).is_some_and(|d| d >= Duration::from_secs(4))
        })
        .await;
    assert_eq!(condition(&p, "Ready"), "False");
    assert_eq!(condition(&p, "ContainersReady"), "False");
    let st = app(&p).unwrap();
    assert!(!st.ready);
    assert_eq!(st.started, Some(true));
    assert_eq!(st.restart_count, 0, "readiness must not restart");

    // `false` as a liveness exec probe: the container is killed and restarted, twice.
    let p = c
        .wait_pod("live-false", "restartCount >= 2", |p| {
            app(p).is_some_and(|s| s.restart_count >= 2)
        })
        .await;
    let last = app(&p)
        .unwrap()
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("lastState shows the killed attempt");
    // The workshop app exits on SIGTERM (code 0), inside the grace period.
    assert!(last.finished_at.is_some(), "{last:?}");
    assert_ne!(
        last.container_id,
        app(&p).unwrap().container_id,
        "lastState is the previous attempt"
    );
    let log = c.agent_log();
    assert!(log.contains("livenessProbe"), "agent log:\n{log}");
    // kubelet's events for the kill: Unhealthy (Warning) and Killing (Normal).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let events = loop {
        let (evs, _) = c
            .client
            .list::<corral_api::k8s::api::core::v1::Event>("default", &Default::default())
            .await
            .unwrap();
        let of_pod: Vec<_> = evs
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some("live-false"))
            .collect();
        let has = |reason: &str| of_pod.iter().any(|e| e.reason.as_deref() == Some(reason));
        if has("Unhealthy") && has("Killing") {
            break of_pod;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no Unhealthy and Killing events for live-false: {of_pod:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let killing = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("Killing"))
        .unwrap();
    assert_eq!(
        killing.message.as_deref(),
        Some("Container app failed liveness probe, will be restarted")
    );

    assert!(
        log.contains("container failed its probe, killing it"),
        "agent log:\n{log}"
    );
}

fn exec_probe(command: &[&str], failure_threshold: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|s| s.to_string()).collect()),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_probe_gates_readiness_and_a_failing_one_restarts_the_container() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    c.wait_node_ready().await;
    // Startup passes (exec in the container), then a tcpSocket probe on a named port.
    let tcp = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("web".into()),
            host: None,
        }),
        period_seconds: Some(1),
        ..Default::default()
    };
    create_with(
        &c,
        "starts",
        Some(tcp),
        None,
        Some(exec_probe(&["cat", "/www/healthz"], 3)),
    )
    .await;
    // Startup never passes: killed after failureThreshold, restarted, never started.
    create_with(
        &c,
        "never-starts",
        Some(http_probe("/healthz")),
        None,
        Some(exec_probe(&["cat", "/nope"], 2)),
    )
    .await;

    let p = c
        .wait_pod("starts", "Ready=True", |p| condition(p, "Ready") == "True")
        .await;
    assert_eq!(app(&p).unwrap().started, Some(true));

    let p = c
        .wait_pod("never-starts", "restartCount >= 1", |p| {
            assert_ne!(
                condition(p, "Ready"),
                "True",
                "gated by a failing startup probe"
            );
            app(p).is_some_and(|s| s.restart_count >= 1)
        })
        .await;
    assert_ne!(app(&p).unwrap().started, Some(true));
    let log = c.agent_log();
    assert!(log.contains("startupProbe"), "agent log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_commands_inside_the_container_and_returns_their_exit_code() {
    use corral_agent::runtime::ContainerRuntime;
    skip_unless_runnable!();
    let c = Cluster::start().await;
    c.wait_node_ready().await;
    create(&c, "execs", None, None).await;
    let p = c
        .wait_pod("execs", "running", |p| running_for(p).is_some())
        .await;
    let id = app(&p)
        .unwrap()
        .container_id
        .clone()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    let rt = c.runtime().await;
    let run = |cmd: &[&str]| {
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let rt = &rt;
        let id = id.clone();
        async move { rt.exec(&id, &cmd, Duration::from_secs(5)).await.unwrap() }
    };
    assert_eq!(run(&["true"]).await, 0);
    assert_eq!(run(&["false"]).await, 1);
    assert_eq!(run(&["sh", "-c", "exit 3"]).await, 3);
    assert_eq!(run(&["sh", "-c", "test -f /www/healthz"]).await, 0);
    assert_eq!(run(&["cat", "/www/healthz"]).await, 0);
}
