//! The control plane booted in-process on a free port, without controllers; and a client for
//! a control plane binary once it serves.
// Each test binary uses what it needs of these.
#![allow(dead_code)]

use corral_api::Client;
use corral_controlplane::{start, Config, Running};

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
    let client = Client::connect(&running.url()).await.unwrap();
    (dir, running, client)
}

/// A client for the control plane on `127.0.0.1:port` once it answers `Version` (within 20 s).
pub async fn connect_when_serving(port: u16) -> Client {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok(c) = Client::connect(&format!("http://127.0.0.1:{port}")).await {
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
