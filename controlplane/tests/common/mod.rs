//! The control plane booted in-process on a free port, without controllers.

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
