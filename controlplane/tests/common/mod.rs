//! The control plane booted in-process on a free port, without controllers; and a client for
//! a control plane binary once it serves.
// Each test binary uses what it needs of these.
#![allow(dead_code)]

pub mod etcd;
pub mod http1;
pub mod tunnel;

use corral_api::Client;
use corral_controlplane::{start, Config, Running};

/// A control plane on `etcd` with `dir` for its own files, on a free loopback port, without
/// controllers; `token` is the server token of the servers before it.
pub fn on_etcd(etcd: &etcd::EtcdCluster, dir: &std::path::Path, token: Option<String>) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        controllers: false,
        datastore: Some(corral_controlplane::store::etcd::EtcdConfig {
            endpoints: etcd.endpoints(),
            ..Default::default()
        }),
        server_token: token,
        ..Default::default()
    }
}

/// Data dir (removed on drop), the running control plane and a client for it.
pub async fn boot() -> (tempfile::TempDir, Running, Client) {
    let dir = tempfile::tempdir().unwrap();
    let running = start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        controllers: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = running.client().await.unwrap();
    (dir, running, client)
}

/// The admin's credentials a control plane binary wrote to `data_dir`, once written (within
/// 20 s).
pub async fn admin_credentials(data_dir: &std::path::Path) -> corral_api::Credentials {
    let path = data_dir.join("admin.kubeconfig");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok((_, creds)) = corral_api::kubeconfig::load(&path) {
            return creds;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} was not written",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// An admin client for the control plane binary on `127.0.0.1:port` with data dir `data_dir`
/// once it answers `Version` (within 20 s).
pub async fn connect_when_serving(port: u16, data_dir: &std::path::Path) -> Client {
    let creds = admin_credentials(data_dir).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok(c) = Client::connect_with(&format!("https://127.0.0.1:{port}"), &creds).await {
            if c.version().await.is_ok() {
                return c;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "control plane did not come up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
