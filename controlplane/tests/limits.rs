//! The API listener's limits over real TCP: a connection that never speaks is closed after
//! the handshake timeout, and connections beyond the cap wait for a free slot.

use std::time::Duration;

use corral_api::client::ListParams;
use corral_api::{kinds, Client};
use corral_controlplane::listener::ServeLimits;
use corral_controlplane::{start, Config, Running};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

async fn boot(limits: ServeLimits) -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().unwrap();
    let running = start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        controllers: false,
        limits,
        ..Default::default()
    })
    .await
    .unwrap();
    (dir, running)
}

async fn list(client: &Client) -> usize {
    let params = ListParams::default();
    let (items, _) = client
        .list_value(&kinds::NAMESPACES, "", &params)
        .await
        .unwrap();
    items.len()
}

#[tokio::test]
async fn connections_that_never_speak_are_closed_and_free_their_slots() {
    let (_dir, running) = boot(ServeLimits {
        max_connections: 2,
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    // Two silent connections take every slot.
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(running.addr).await.unwrap());
    }
    // Each is closed by the server, which then serves a real client.
    // (The server speaks first, its HTTP/2 SETTINGS; then it must hang up.)
    for conn in &mut silent {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
        let _ = read.expect("a silent connection was kept open");
        assert!(buf.len() < 100, "the server sent {} bytes", buf.len());
    }
    let client = running.client().await.unwrap();
    let served = tokio::time::timeout(Duration::from_secs(5), list(&client)).await;
    assert!(served.expect("a real client was not served") >= 1);
}

#[tokio::test]
async fn a_connection_beyond_the_cap_waits_for_a_free_slot() {
    let (_dir, running) = boot(ServeLimits {
        max_connections: 1,
        ..Default::default()
    })
    .await;
    let first = running.client().await.unwrap();
    list(&first).await;
    let url = running.url();
    let creds = running.admin_credentials();
    let second = tokio::spawn(async move {
        let client = Client::connect_lazy_with(&url, &creds).unwrap();
        list(&client).await
    });
    // A bounded wait to show the second is *not* served while the slot is taken: a
    // deadline loop cannot show that something does not happen.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "served beyond the connection cap");
    drop(first);
    let served = tokio::time::timeout(Duration::from_secs(10), second).await;
    assert!(served.expect("not served once the slot was free").unwrap() >= 1);
}
