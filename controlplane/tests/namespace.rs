//! Deleting a namespace of 3,000 ConfigMaps with the real binary and store, `kill -9` in the
//! middle of the purge, restart: the namespace was Terminating all along, and after the
//! restart the namespace controller finishes it (nothing orphaned).

mod common;

use common::connect_when_serving;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use corral_api::k8s::api::core::v1::{ConfigMap, Namespace};
use corral_api::{Client, DeleteOptions, ListParams};
use futures::stream::{self, StreamExt};

const OBJECTS: usize = 3000;

struct ControlPlane {
    child: Child,
}

impl ControlPlane {
    fn spawn(port: u16, dir: &std::path::Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_corral-controlplane"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child }
    }

    fn kill_9(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ConfigMaps stored in namespace `ns`, whether or not the namespace still exists.
async fn config_maps(client: &Client, ns: &str) -> usize {
    client
        .list::<ConfigMap>("", &ListParams::fields(format!("metadata.namespace={ns}")))
        .await
        .unwrap()
        .0
        .len()
}

async fn poll<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_purge_killed_midway_resumes_after_restart_and_orphans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cp = ControlPlane::spawn(port, dir.path());
    let client = connect_when_serving(port, dir.path()).await;
    client
        .create(&Namespace {
            metadata: corral_api::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("big".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
    stream::iter(0..OBJECTS)
        .map(|i| {
            let client = client.clone();
            async move {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(format!("cm-{i}"));
                cm.metadata.namespace = Some("big".into());
                cm.data = Some([("k".to_string(), "v".to_string())].into());
                client.create(&cm).await.unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;

    let finished = client
        .delete::<Namespace>("", "big", DeleteOptions::default())
        .await
        .unwrap();
    assert!(
        !finished,
        "the namespace is only marked: its content goes first"
    );
    let started = std::time::Instant::now();
    // Kill the control plane once the purge is under way, before it is done.
    let left = poll(30, "the purge under way", || async {
        let n = config_maps(&client, "big").await;
        (n < OBJECTS).then_some(n)
    })
    .await;
    cp.kill_9();
    assert!(
        left > 0,
        "the purge finished before the kill; nothing was tested"
    );

    let _cp = ControlPlane::spawn(port, dir.path());
    let client = connect_when_serving(port, dir.path()).await;
    let ns: Option<Namespace> = client.get_opt("", "big").await.unwrap();
    let ns = ns.expect("the namespace is kept until it is empty");
    assert_eq!(
        ns.status.and_then(|s| s.phase),
        Some("Terminating".to_string())
    );
    let at_restart = config_maps(&client, "big").await;
    assert!(at_restart > 0 && at_restart <= left, "{at_restart} left");
    // The new process's controllers wait for the dead one's leader Lease to expire (8 s).
    poll(60, "namespace big gone", || async {
        matches!(client.get_opt::<Namespace>("", "big").await, Ok(None)).then_some(())
    })
    .await;
    assert_eq!(config_maps(&client, "big").await, 0, "ConfigMaps orphaned");
    eprintln!(
        "{OBJECTS} ConfigMaps: killed with {left} left, {at_restart} after restart; done {:?} after the delete",
        started.elapsed()
    );
}
