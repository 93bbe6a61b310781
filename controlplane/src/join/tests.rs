//! Join and Renew in process: the caller's `UserInfo` is put into the request's extensions as
//! the authentication layer does.

use std::sync::Arc;
use std::time::Duration;

use corral_api::kinds;
use corral_proto::v1 as pb;
use corral_proto::v1::join_server::Join;
use serde_json::json;
use tonic::{Code, Request};
use x509_parser::prelude::*;

use super::*;
use crate::auth::tokens::{ensure_agent_token, RegistryTokens, AGENT_TOKEN_FILE};
use crate::auth::{TokenAuthenticator, TokenRejected};
use crate::pki::Pki;
use crate::registry::testutil;

struct Rig {
    _dir: tempfile::TempDir,
    registry: Arc<Registry>,
    service: JoinService,
}

async fn rig(lifetime: Duration) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(testutil::registry(&dir).await);
    let ca = Arc::new(Pki::load_or_create(&dir.path().join("tls"), &[]).unwrap());
    let service = JoinService::new(registry.clone(), ca, lifetime);
    Rig {
        _dir: dir,
        registry,
        service,
    }
}

fn bootstrapper() -> UserInfo {
    UserInfo::new("system:bootstrap:abcdef", [BOOTSTRAPPERS])
}

/// A CSR asking for admin rights, made with a new key: the server must ignore the subject.
fn csr() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "admin");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, MASTERS);
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (csr, key.serialize_pem())
}

fn join_req(user: Option<UserInfo>, node: &str, csr: &str) -> Request<pb::JoinRequest> {
    let mut r = Request::new(pb::JoinRequest {
        node_name: node.into(),
        csr_pem: csr.into(),
    });
    if let Some(u) = user {
        r.extensions_mut().insert(u);
    }
    r
}

fn renew_req(user: UserInfo, csr: &str) -> Request<pb::RenewRequest> {
    let mut r = Request::new(pb::RenewRequest {
        csr_pem: csr.into(),
    });
    r.extensions_mut().insert(user);
    r
}

/// (CN, O, lifetime in seconds) of a PEM certificate.
fn subject(cert_pem: &str) -> (String, Vec<String>, i64) {
    let der = sign::pem_to_der(cert_pem).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .map(|c| c.as_str().unwrap().to_string())
        .collect::<String>();
    let orgs = cert
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    (cn, orgs, life)
}

async fn add_node(registry: &Registry, name: &str) {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    registry
        .create(&kinds::NODES, "", node, false)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bootstrap_token_gets_a_node_certificate_whatever_the_csr_asks_for() {
    let rig = rig(DEFAULT_NODE_CERT_LIFETIME).await;
    let (csr, _) = csr();
    let resp = rig
        .service
        .join(join_req(Some(bootstrapper()), "n1", &csr))
        .await
        .unwrap()
        .into_inner();
    let (cn, orgs, life) = subject(&resp.cert_pem);
    assert_eq!(cn, "system:node:n1");
    assert_eq!(orgs, vec![NODES.to_string()]);
    // 365 days, plus the 5 minutes the certificate is backdated.
    assert_eq!(life, 365 * 86_400 + 300);
    assert!(resp.ca_pem.contains("BEGIN CERTIFICATE"));
}

#[tokio::test]
async fn joins_without_a_bootstrap_identity_or_with_a_bad_name_are_refused() {
    let rig = rig(DEFAULT_NODE_CERT_LIFETIME).await;
    let (csr, _) = csr();
    let alice = UserInfo::new("alice", ["dev"]);
    let table = [
        (None, "n1", csr.as_str(), Code::Unauthenticated),
        (Some(alice), "n1", csr.as_str(), Code::PermissionDenied),
        (
            Some(bootstrapper()),
            "N1",
            csr.as_str(),
            Code::InvalidArgument,
        ),
        (
            Some(bootstrapper()),
            "-n1",
            csr.as_str(),
            Code::InvalidArgument,
        ),
        (
            Some(bootstrapper()),
            "",
            csr.as_str(),
            Code::InvalidArgument,
        ),
        (
            Some(bootstrapper()),
            "n1",
            "not a csr",
            Code::InvalidArgument,
        ),
    ];
    for (user, node, csr, code) in table {
        let err = rig
            .service
            .join(join_req(user.clone(), node, csr))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{user:?} {node:?}: {}", err.message());
    }
    // A refused join created nothing.
    assert!(rig.service.record("n1").await.unwrap().is_none());
    // system:masters may join too.
    let admin = UserInfo::new("admin", [MASTERS]);
    rig.service
        .join(join_req(Some(admin), "n1", &csr))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_second_key_claiming_a_live_node_name_is_refused_saying_how_to_fix_it() {
    let rig = rig(DEFAULT_NODE_CERT_LIFETIME).await;
    let (first, _) = csr();
    rig.service
        .join(join_req(Some(bootstrapper()), "n1", &first))
        .await
        .unwrap();
    add_node(&rig.registry, "n1").await;
    // The same host (same key) joining again is fine.
    rig.service
        .join(join_req(Some(bootstrapper()), "n1", &first))
        .await
        .unwrap();
    let (second, _) = csr();
    let err = rig
        .service
        .join(join_req(Some(bootstrapper()), "n1", &second))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(
        err.message().contains("corral delete node n1"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("--node-name"), "{}", err.message());
    assert!(!err.message().contains('\n'));
    // Once the Node is deleted, the name is free for the new key.
    rig.registry
        .delete(&kinds::NODES, "", "n1", Default::default())
        .await
        .unwrap();
    rig.service
        .join(join_req(Some(bootstrapper()), "n1", &second))
        .await
        .unwrap();
    let record = rig.service.record("n1").await.unwrap().unwrap();
    assert_eq!(
        identity::key_hash(&record),
        Some(sign::csr_key_hash(&second).unwrap())
    );
}

#[tokio::test]
async fn a_node_renews_its_own_certificate_with_a_new_key_and_nobody_else_can() {
    let rig = rig(Duration::from_secs(3600)).await;
    let (first, _) = csr();
    rig.service
        .join(join_req(Some(bootstrapper()), "n1", &first))
        .await
        .unwrap();
    add_node(&rig.registry, "n1").await;
    let node = UserInfo::new("system:node:n1", [NODES]);
    let (renewed, _) = csr();
    let resp = rig
        .service
        .renew(renew_req(node, &renewed))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        subject(&resp.cert_pem),
        ("system:node:n1".into(), vec![NODES.into()], 3600 + 300)
    );
    // The new key now holds the name: a join with the old key is refused.
    let err = rig
        .service
        .join(join_req(Some(bootstrapper()), "n1", &first))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    for user in [bootstrapper(), UserInfo::new("system:node:n1", ["dev"])] {
        let err = rig
            .service
            .renew(renew_req(user, &renewed))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
}

#[tokio::test]
async fn the_default_agent_token_is_written_once_and_authenticates_as_a_bootstrapper() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(testutil::registry(&dir).await);
    let ca = Pki::load_or_create(&dir.path().join("tls"), &[]).unwrap();
    ensure_agent_token(&registry, dir.path(), ca.ca_der())
        .await
        .unwrap();
    let path = dir.path().join(AGENT_TOKEN_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let token = corral_api::token::Token::parse(&text).unwrap();
    assert_eq!(token.ca_hash, Some(corral_api::token::ca_hash(ca.ca_der())));
    // A restart keeps the token.
    ensure_agent_token(&registry, dir.path(), ca.ca_der())
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    let tokens = RegistryTokens::new(registry.clone());
    let user = tokens.authenticate(text.trim()).await.unwrap().unwrap();
    assert_eq!(user.name, format!("system:bootstrap:{}", token.id));
    assert!(user.in_group(BOOTSTRAPPERS));
    // The short form works too; a wrong secret or a deleted token does not.
    let short = format!("{}.{}", token.id, token.secret);
    assert!(tokens.authenticate(&short).await.unwrap().is_some());
    let wrong = format!("{}.{}", token.id, "x".repeat(16));
    let invalid = TokenRejected::Invalid {
        id: token.id.clone(),
    };
    assert_eq!(tokens.authenticate(&wrong).await, Err(invalid.clone()));
    assert_eq!(
        tokens.authenticate("junk").await,
        Err(TokenRejected::Malformed)
    );
    registry
        .delete(
            &kinds::SECRETS,
            "kube-system",
            &token.secret_name(),
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(tokens.authenticate(&short).await, Err(invalid));
}
