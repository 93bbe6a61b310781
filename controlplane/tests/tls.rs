//! TLS and authentication over real connections: who is refused (plaintext, no credentials,
//! another cluster's CA, an expired certificate, a forged tunnel hello) and who is let in
//! (client certificates, bearer tokens through the authenticator, the insecure mode's admin).

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use corral_api::{Client, Credentials};
use corral_controlplane::auth::{TokenAuthenticator, TokenRejected, UserInfo, NODES};
use corral_controlplane::pki::Pki;
use corral_controlplane::{start, Config, Running};
use corral_proto as pb;
use tokio_stream::wrappers::ReceiverStream;

async fn boot_with(config: Config) -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().unwrap();
    let running = start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        controllers: false,
        ..config
    })
    .await
    .unwrap();
    (dir, running)
}

fn ca_only(running: &Running) -> Credentials {
    Credentials {
        ca_pem: running.admin_credentials().ca_pem,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_plaintext_client_is_told_to_use_tls_and_credentials() {
    let (_dir, running) = boot_with(Config::default()).await;
    let client = Client::connect(&format!("http://{}", running.addr))
        .await
        .unwrap();
    let err = client.version().await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated), "{err}");
    assert!(err.to_string().contains("requires TLS"), "{err}");
    assert!(err.to_string().contains("admin.kubeconfig"), "{err}");
}

#[tokio::test]
async fn a_tls_client_without_credentials_is_unauthenticated() {
    let (_dir, running) = boot_with(Config::default()).await;
    let client = Client::connect_with(&running.url(), &ca_only(&running))
        .await
        .unwrap();
    let err = client.version().await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated), "{err}");
    assert!(err.to_string().contains("no credentials"), "{err}");
    // The admin's credentials are let in.
    running.client().await.unwrap().version().await.unwrap();
}

#[tokio::test]
async fn a_client_trusting_another_ca_fails_with_one_line_naming_the_ca() {
    let (_dir, running) = boot_with(Config::default()).await;
    let other = tempfile::tempdir().unwrap();
    let other = Pki::load_or_create(other.path(), &["localhost".into()]).unwrap();
    let creds = other
        .client_credentials("admin", &["system:masters"], Duration::from_secs(3600))
        .unwrap();
    let err = Client::connect_with(&running.url(), &creds)
        .await
        .err()
        .expect("the server's chain does not lead to the other CA");
    let line = err.to_string();
    assert!(
        line.contains("the server's certificate is not signed by the cluster CA in"),
        "{line}"
    );
    assert!(!line.contains('\n'), "{line}");
}

#[tokio::test]
async fn a_connection_outliving_its_client_certificate_is_refused_from_then_on() {
    let (_dir, running) = boot_with(Config::default()).await;
    let pki = running.pki.clone().unwrap();
    let creds = pki
        .client_credentials("shortlived", &["system:masters"], Duration::from_secs(2))
        .unwrap();
    let client = Client::connect_with(&running.url(), &creds).await.unwrap();
    client.version().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let err = loop {
        match client.version().await {
            Err(e) => break e,
            Ok(_) => {
                assert!(tokio::time::Instant::now() < deadline, "still served");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    // A new connection with the expired certificate is refused too.
    let fresh = Client::connect_with(&running.url(), &creds).await;
    let refused = match fresh {
        Err(_) => true,
        Ok(c) => c.version().await.is_err(),
    };
    assert!(refused, "an expired certificate was accepted");
}

#[tokio::test]
async fn a_tunnel_hello_naming_another_node_is_refused() {
    let (_dir, running) = boot_with(Config::default()).await;
    let creds = running.credentials_for("system:node:n1", &[NODES]).unwrap();
    let api = Client::connect_with(&running.url(), &creds).await.unwrap();
    let open = |node: &'static str| {
        let mut tunnel = pb::agent_tunnel_client::AgentTunnelClient::new(api.transport());
        async move {
            let (up, rx) = tokio::sync::mpsc::channel(1);
            up.send(pb::AgentUp {
                msg: Some(pb::agent_up::Msg::Hello(pb::AgentHello {
                    node_name: node.into(),
                })),
            })
            .await
            .unwrap();
            let r = tunnel.open(ReceiverStream::new(rx)).await;
            (up, r)
        }
    };
    let (_up, forged) = open("n2").await;
    let status = forged.expect_err("a forged hello was accepted");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("\"n2\""), "{status:?}");
    let (_up, own) = open("n1").await;
    own.expect("a node opens its own tunnel");
}

struct OneToken;

#[async_trait]
impl TokenAuthenticator for OneToken {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, TokenRejected> {
        match token {
            "abc.good" => Ok(Some(UserInfo::new("alice", ["system:masters"]))),
            "abc.bad" => Err(TokenRejected::Invalid { id: "abc".into() }),
            _ => Ok(None),
        }
    }
}

#[tokio::test]
async fn bearer_tokens_are_checked_by_the_authenticator_given_to_start() {
    let (_dir, running) = boot_with(Config {
        token_authenticator: Some(Arc::new(OneToken)),
        ..Default::default()
    })
    .await;
    let with = |t: &str| Credentials {
        token: Some(t.into()),
        ..ca_only(&running)
    };
    let good = Client::connect_with(&running.url(), &with("abc.good"))
        .await
        .unwrap();
    good.version().await.unwrap();
    for (token, words) in [("abc.bad", "not valid"), ("zzz.unknown", "not recognised")] {
        let c = Client::connect_with(&running.url(), &with(token))
            .await
            .unwrap();
        let err = c.version().await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::Unauthenticated), "{err}");
        assert!(err.to_string().contains(words), "{token}: {err}");
    }
}

#[tokio::test]
async fn the_insecure_mode_serves_plaintext_as_the_admin() {
    let (dir, running) = boot_with(Config {
        insecure_plaintext: true,
        ..Default::default()
    })
    .await;
    assert!(running.url().starts_with("http://"));
    assert!(!dir.path().join("admin.kubeconfig").exists());
    let client = Client::connect(&running.url()).await.unwrap();
    client.version().await.unwrap();
}
