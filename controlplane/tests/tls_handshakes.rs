//! Connections stay persistent: one client makes one TLS handshake however many requests it
//! sends. In its own test binary because the handshake counter is process-wide.

mod common;

#[tokio::test]
async fn a_client_makes_one_handshake_for_many_requests() {
    let (_dir, _running, client) = common::boot().await;
    let before = corral_api::tls::handshakes();
    let second = _running.client().await.unwrap();
    for _ in 0..200 {
        second.version().await.unwrap();
    }
    let list = corral_api::ListParams::default();
    for _ in 0..50 {
        second
            .list_value(&corral_api::kinds::NAMESPACES, "", &list)
            .await
            .unwrap();
    }
    assert_eq!(corral_api::tls::handshakes() - before, 1);
    drop(client);
}
