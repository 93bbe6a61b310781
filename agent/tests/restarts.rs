//! Restart counts across a node reboot: containerd loses its tasks (or whole containers) while
//! the agent is down, and the restarted agent continues each container's restartCount from the
//! API status with the lost attempt as lastState, as kubelet does ("Unknown", exit code 255).

mod common;

use common::cluster::Cluster;
use corral_agent::runtime::ContainerRuntime;
use corral_api::k8s::api::core::v1::{ContainerStatus, Pod};

fn app(p: &Pod) -> Option<&ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn running(p: &Pod) -> bool {
    app(p)
        .and_then(|s| s.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

fn running_with_restarts(n: i32) -> impl Fn(&Pod) -> bool {
    move |p| running(p) && app(p).is_some_and(|s| s.restart_count == n)
}

fn container_id(p: &Pod) -> String {
    app(p).unwrap().container_id.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_lost_with_containerd_state_count_as_restarts() {
    skip_unless_runnable!();
    let mut c = Cluster::start().await;
    c.create_pod("kept", "corral-test/sleeper:v1", None).await;
    let first = c
        .wait_pod("kept", "running", running_with_restarts(0))
        .await;

    // Reboot: containerd comes back with the container record but without its task.
    c.reboot_containerd();
    // Bound while the node was down: the agent never started it, so no restart counts.
    c.create_pod("fresh", "corral-test/sleeper:v1", None).await;
    c.start_agent();
    let second = c
        .wait_pod(
            "kept",
            "running again as restart 1",
            running_with_restarts(1),
        )
        .await;
    let st = app(&second).unwrap();
    let lost = st
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .unwrap_or_else(|| panic!("no lastState.terminated: {st:?}\n{}", c.agent_log()));
    assert_eq!(lost.exit_code, 255, "{lost:?}");
    assert_eq!(lost.reason.as_deref(), Some("Unknown"));
    assert_eq!(lost.container_id, Some(container_id(&first)));
    assert_ne!(container_id(&second), container_id(&first));
    let fresh = c.wait_pod("fresh", "running", running).await;
    let st = app(&fresh).unwrap();
    assert_eq!(st.restart_count, 0, "{st:?}");
    assert!(
        st.last_state
            .as_ref()
            .is_none_or(|s| s.terminated.is_none()),
        "{st:?}"
    );

    // The containers themselves gone (not only their tasks): the count still goes on.
    c.stop_agent();
    let rt = c.runtime().await;
    let uid = second.metadata.uid.clone().unwrap();
    for info in rt.list().await.unwrap() {
        if info.labels.get("corral.pod.uid") == Some(&uid) {
            rt.remove(&info.id).await.unwrap();
        }
    }
    c.start_agent();
    let third = c
        .wait_pod(
            "kept",
            "running again as restart 2",
            running_with_restarts(2),
        )
        .await;
    let lost = app(&third)
        .unwrap()
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("lastState.terminated");
    assert_eq!(
        (lost.exit_code, lost.reason.as_deref()),
        (255, Some("Unknown"))
    );
    assert_eq!(lost.container_id, Some(container_id(&second)));
    // The pod the agent found running was adopted, not restarted.
    let fresh_after = c.wait_pod("fresh", "running", running).await;
    assert_eq!(app(&fresh_after).unwrap().restart_count, 0);
    assert_eq!(container_id(&fresh_after), container_id(&fresh));
}
