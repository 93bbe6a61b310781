//! The containerd runtime layer against a real containerd + runc.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use corral_agent::runtime::{ContainerRuntime, CreateContainer, TaskState};
use serde_json::json;

fn minimal_spec(id: &str, args: &[&str]) -> serde_json::Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {"user": {"uid": 0, "gid": 0}, "args": args, "env": ["PATH=/bin"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "hostname": "rt-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}
        ],
        "linux": {
            "cgroupsPath": format!("/corral-test/{id}"),
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "network"}],
            "resources": {"devices": [{"allow": false, "access": "rwm"}]}
        }
    })
}

#[tokio::test]
async fn imported_image_runs_and_its_output_lands_in_the_log_file() {
    skip_unless_runnable!();
    let ctd = common::ContainerdFixture::start();
    let rt = ctd.runtime().await;
    let names = rt
        .import_archive(&common::image_archive("docker.io/corral-test/sleeper:v1"))
        .await
        .unwrap();
    assert_eq!(names, ["docker.io/corral-test/sleeper:v1"]);
    // Importing again is idempotent.
    rt.import_archive(&common::image_archive("docker.io/corral-test/sleeper:v1"))
        .await
        .unwrap();
    let img = rt
        .image("corral-test/sleeper:v1")
        .await
        .unwrap()
        .expect("image present");
    assert!(img.id.starts_with("sha256:"));
    assert_eq!(img.config.cmd[0], "sh");
    assert!(rt.image("corral-test/nothing:v1").await.unwrap().is_none());

    let log = ctd.path().join("logs/c1.log");
    rt.create(&CreateContainer {
        id: "c1".into(),
        image: "corral-test/sleeper:v1".into(),
        spec: minimal_spec("c1", &["sh", "-c", "echo hello from $(hostname); exit 7"]),
        labels: HashMap::from([("corral.pod.uid".to_string(), "u1".to_string())]),
        log_path: log.clone(),
    })
    .await
    .unwrap();
    let pid = rt.start("c1").await.unwrap();
    assert!(pid > 0);
    let exit = tokio::time::timeout(Duration::from_secs(20), rt.wait("c1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, 7);
    assert!(!exit.oom_killed);
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(out.contains("hello from rt-test"), "log: {out:?}");
    let list = rt.list().await.unwrap();
    assert!(
        matches!(list[0].state, TaskState::Exited { exit_code: 7, .. }),
        "{list:?}"
    );
    assert_eq!(list[0].labels["corral.pod.uid"], "u1");

    rt.remove("c1").await.unwrap();
    assert!(rt.list().await.unwrap().is_empty());
    rt.remove("c1").await.unwrap();
    common::remove_cgroups("corral-test", &["c1".to_string()]);
}

#[tokio::test]
async fn running_task_is_killed_and_removed() {
    skip_unless_runnable!();
    let ctd = common::ContainerdFixture::start();
    let rt = ctd.runtime().await;
    rt.import_archive(&common::image_archive("docker.io/corral-test/sleeper:v1"))
        .await
        .unwrap();
    rt.create(&CreateContainer {
        id: "c2".into(),
        image: "docker.io/corral-test/sleeper:v1".into(),
        spec: minimal_spec("c2", &["sleep", "1000"]),
        labels: HashMap::new(),
        log_path: ctd.path().join("logs/c2.log"),
    })
    .await
    .unwrap();
    rt.start("c2").await.unwrap();
    assert!(matches!(
        rt.list().await.unwrap()[0].state,
        TaskState::Running { .. }
    ));
    rt.kill("c2", 9).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), rt.wait("c2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, 137);
    rt.remove("c2").await.unwrap();
    assert!(rt.list().await.unwrap().is_empty());
    common::remove_cgroups("corral-test", &["c2".to_string()]);
}
