use super::*;
use k8s_openapi::api::core::v1::{Container, PodSpec};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn exited(code: i32, start: i64, end: i64) -> Terminated {
    Terminated {
        container_id: "c".into(),
        exit_code: code,
        reason: Terminated::reason_for(code, false).into(),
        started_at: t(start),
        finished_at: t(end),
    }
}

fn pod(policy: &str, names: &[&str]) -> Pod {
    Pod {
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            containers: names
                .iter()
                .map(|n| Container {
                    name: n.to_string(),
                    image: Some("img:1".into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn decisions_follow_the_restart_policy() {
    use RestartPolicy::*;
    let running = ContainerRecord {
        current: Some(Current::Running { started_at: t(0) }),
        ..Default::default()
    };
    let ok = ContainerRecord {
        current: Some(Current::Exited(exited(0, 0, 5))),
        ..Default::default()
    };
    let failed = ContainerRecord {
        current: Some(Current::Exited(exited(1, 0, 5))),
        ..Default::default()
    };
    let fresh = ContainerRecord::default();
    let table = [
        (&running, Always, Decision::Keep),
        (&fresh, Never, Decision::Start),
        (&ok, Always, Decision::Start),
        (&ok, OnFailure, Decision::Keep),
        (&ok, Never, Decision::Keep),
        (&failed, OnFailure, Decision::Start),
        (&failed, Never, Decision::Keep),
    ];
    for (rec, policy, want) in table {
        assert_eq!(
            decide(rec, policy, t(10)),
            want,
            "{policy:?} {:?}",
            rec.current
        );
    }
}

#[test]
fn crashes_back_off_exponentially_and_show_crash_loop() {
    let b = BackoffPolicy::default();
    let mut rec = ContainerRecord::default();
    // First crash: restart at once, as the kubelet does.
    on_exit(&mut rec, exited(1, 0, 1), RestartPolicy::Always, &b);
    assert_eq!(decide(&rec, RestartPolicy::Always, t(1)), Decision::Start);
    assert_eq!(rec.waiting, None);
    // Second crash: 10 s of CrashLoopBackOff.
    rec.attempt = 1;
    on_exit(&mut rec, exited(1, 1, 2), RestartPolicy::Always, &b);
    assert_eq!(
        decide(&rec, RestartPolicy::Always, t(3)),
        Decision::WaitUntil(t(12))
    );
    let s = container_status("app", "img:1", &rec, RestartPolicy::Always, t(3));
    let w = s.state.unwrap().waiting.unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(s.last_state.unwrap().terminated.unwrap().exit_code, 1);
    assert_eq!(s.restart_count, 1);
    // Then 20 s, 40 s ... capped at 5 min.
    on_exit(&mut rec, exited(1, 12, 13), RestartPolicy::Always, &b);
    assert_eq!(rec.not_before, Some(t(33)));
    rec.backoff = Duration::from_secs(400);
    on_exit(&mut rec, exited(1, 40, 41), RestartPolicy::Always, &b);
    assert_eq!(rec.backoff, b.max);
    // Ten minutes of running resets the back-off.
    on_exit(&mut rec, exited(1, 100, 800), RestartPolicy::Always, &b);
    assert_eq!(rec.not_before, Some(t(800)));
}

#[test]
fn phase_follows_kubernetes() {
    use RestartPolicy::*;
    let running = ContainerRecord {
        current: Some(Current::Running { started_at: t(0) }),
        ..Default::default()
    };
    let ok = ContainerRecord {
        current: Some(Current::Exited(exited(0, 0, 5))),
        ..Default::default()
    };
    let failed = ContainerRecord {
        current: Some(Current::Exited(exited(2, 0, 5))),
        ..Default::default()
    };
    let fresh = ContainerRecord::default();
    assert_eq!(phase(&[&fresh], Always), "Pending");
    assert_eq!(phase(&[&running, &fresh], Always), "Pending");
    assert_eq!(phase(&[&running, &ok], Never), "Running");
    assert_eq!(phase(&[&ok, &ok], Never), "Succeeded");
    assert_eq!(phase(&[&ok, &failed], Never), "Failed");
    assert_eq!(phase(&[&failed], OnFailure), "Running");
    assert_eq!(phase(&[&ok], OnFailure), "Succeeded");
    assert_eq!(phase(&[&failed], Always), "Running");
}

#[test]
fn status_is_stable_when_nothing_changes() {
    let p = pod("Always", &["web"]);
    let mut recs = BTreeMap::new();
    recs.insert(
        "web".to_string(),
        ContainerRecord {
            id: Some("u-web-0".into()),
            current: Some(Current::Running { started_at: t(0) }),
            ..Default::default()
        },
    );
    let facts = PodFacts {
        pod_ip: Some("10.88.0.2".into()),
        host_ip: "127.0.0.1".into(),
        start_time: Some(t(0)),
    };
    let first = pod_status(&p, &recs, &facts, None, t(1));
    let second = pod_status(&p, &recs, &facts, Some(&first), t(50));
    assert_eq!(first, second);
    assert_eq!(first.phase.as_deref(), Some("Running"));
    let ready = first
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(first.pod_ip.as_deref(), Some("10.88.0.2"));
}

#[test]
fn oom_kill_and_completion_have_kubernetes_reasons() {
    assert_eq!(Terminated::reason_for(137, true), "OOMKilled");
    assert_eq!(Terminated::reason_for(0, false), "Completed");
    assert_eq!(Terminated::reason_for(1, false), "Error");
}

#[test]
fn failed_pulls_wait_before_retrying() {
    let b = BackoffPolicy::default();
    let mut rec = ContainerRecord::default();
    on_failure(&mut rec, "ErrImagePull", "not found".into(), t(0), &b);
    assert_eq!(
        decide(&rec, RestartPolicy::Always, t(1)),
        Decision::WaitUntil(t(10))
    );
    on_failure(&mut rec, "ImagePullBackOff", "not found".into(), t(10), &b);
    assert_eq!(rec.not_before, Some(t(30)));
    let s = container_status("app", "img:1", &rec, RestartPolicy::Always, t(11));
    assert_eq!(
        s.state.unwrap().waiting.unwrap().reason.as_deref(),
        Some("ImagePullBackOff")
    );
}

#[test]
fn a_container_in_its_post_start_hook_is_not_shown_running_until_it_finishes() {
    let mut rec = ContainerRecord {
        id: Some("c1".into()),
        current: Some(Current::Running { started_at: t(0) }),
        post_start_pending: true,
        ..Default::default()
    };
    let p = pod("Always", &["app"]);
    let s = container_status("app", "img:1", &rec, RestartPolicy::Always, t(1));
    let waiting = s.state.as_ref().and_then(|s| s.waiting.as_ref()).unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));
    assert_eq!((s.ready, s.started), (false, Some(false)));
    assert_eq!(phase(&[&rec], RestartPolicy::Always), "Pending");
    let records = BTreeMap::from([("app".to_string(), rec.clone())]);
    let st = pod_status(&p, &records, &PodFacts::default(), None, t(1));
    assert_eq!(st.phase.as_deref(), Some("Pending"));

    rec.post_start_pending = false;
    let s = container_status("app", "img:1", &rec, RestartPolicy::Always, t(1));
    assert!(s.state.unwrap().running.is_some());
    assert_eq!((s.ready, s.started), (true, Some(true)));
    assert_eq!(phase(&[&rec], RestartPolicy::Always), "Running");
}

fn api_status(
    restarts: i32,
    id: &str,
    state: ContainerState,
    last: Option<ContainerStateTerminated>,
) -> ContainerStatus {
    ContainerStatus {
        name: "app".into(),
        restart_count: restarts,
        container_id: Some(format!("containerd://{id}")).filter(|_| !id.is_empty()),
        state: Some(state),
        last_state: Some(ContainerState {
            terminated: last,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn api_exit(id: &str, code: i32, reason: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        container_id: Some(format!("containerd://{id}")),
        exit_code: code,
        reason: Some(reason.into()),
        started_at: Some(time(t(0))),
        finished_at: Some(time(t(5))),
        ..Default::default()
    }
}

#[test]
fn containers_lost_with_the_runtime_state_go_on_from_their_api_status() {
    use RestartPolicy::*;
    let b = BackoffPolicy::default();
    let now = t(100);
    let waiting = |reason: &str| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: None,
        }),
        ..Default::default()
    };
    let running = ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(time(t(10))),
        }),
        ..Default::default()
    };
    let terminated = ContainerState {
        terminated: Some(api_exit("u-app-0", 0, "Completed")),
        ..Default::default()
    };
    // (status, policy) → None (never started: attempt 0, no restart counted), or
    // (restartCount now, the lost attempt's exit and reason, lastState kept, decision).
    type Want = Option<(u32, i32, &'static str, bool, Decision)>;
    let cases: Vec<(&str, ContainerStatus, RestartPolicy, Want)> = vec![
        (
            "never started",
            api_status(0, "", waiting("ContainerCreating"), None),
            Always,
            None,
        ),
        (
            "image never pulled",
            api_status(0, "", waiting("ErrImagePull"), None),
            Always,
            None,
        ),
        (
            "running: lost as Unknown 255, restarted",
            api_status(
                2,
                "u-app-2",
                running.clone(),
                Some(api_exit("u-app-1", 1, "Error")),
            ),
            Always,
            Some((2, 255, "Unknown", true, Decision::Start)),
        ),
        (
            "running with restartPolicy Never: lost, not restarted",
            api_status(0, "u-app-0", running, None),
            Never,
            Some((0, 255, "Unknown", false, Decision::Keep)),
        ),
        (
            "completed with Never: stays completed",
            api_status(0, "u-app-0", terminated, None),
            Never,
            Some((0, 0, "Completed", false, Decision::Keep)),
        ),
        (
            "in back-off: the lastState exit is the newest attempt",
            api_status(
                3,
                "",
                waiting("CrashLoopBackOff"),
                Some(api_exit("u-app-3", 1, "Error")),
            ),
            Always,
            Some((3, 1, "Error", false, Decision::Start)),
        ),
    ];
    for (what, status, policy, want) in cases {
        let got = record_from_status(&status, policy, &b, now);
        let got = got.map(|r| {
            let Some(Current::Exited(t)) = &r.current else {
                panic!("{what}: not exited: {r:?}");
            };
            (
                r.attempt,
                t.exit_code,
                match t.reason.as_str() {
                    "Unknown" => "Unknown",
                    "Completed" => "Completed",
                    "Error" => "Error",
                    other => panic!("{what}: reason {other}"),
                },
                r.last.is_some(),
                decide(&r, policy, now),
            )
        });
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn a_lost_running_attempt_shows_as_last_state_with_its_container_id() {
    let b = BackoffPolicy::default();
    let running = ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(time(t(10))),
        }),
        ..Default::default()
    };
    let rec = record_from_status(
        &api_status(0, "u-app-0", running, None),
        RestartPolicy::Always,
        &b,
        t(100),
    )
    .unwrap();
    assert_eq!(rec.id.as_deref(), Some("u-app-0"));
    let s = container_status("app", "img:1", &rec, RestartPolicy::Always, t(100));
    assert_eq!(s.restart_count, 0);
    let last = s.last_state.unwrap().terminated.unwrap();
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (255, Some("Unknown"))
    );
    assert_eq!(last.container_id.as_deref(), Some("containerd://u-app-0"));
    assert_eq!(last.started_at, Some(time(t(10))));
    assert_eq!(last.finished_at, Some(time(t(100))));
}
