//! `corral token create|list|delete`: the secret is printed once, stored only as a hash, and
//! the printed token authenticates (through the control plane's token authenticator).
//! `config create-user` needs the RBAC kinds (authz helper) and runs after the merge.

mod common;

use common::Cluster;
use corral_api::token::Token;
use corral_controlplane::auth::tokens::RegistryTokens;
use corral_controlplane::auth::{TokenAuthenticator, TokenRejected};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_token_authenticates_is_listed_without_its_secret_and_deleted() {
    let c = Cluster::start().await;
    let out = c
        .corral(&[
            "token",
            "create",
            "--ttl",
            "1h",
            "--description",
            "lab node",
        ])
        .await;
    let text = out.ok().trim().to_string();
    // The config holds the cluster CA: the token names its hash.
    let token = Token::parse(&text).unwrap();
    assert!(token.ca_hash.is_some(), "{text}");
    let tokens = RegistryTokens::new(c.cp.registry.clone());
    let user = tokens.authenticate(&text).await.unwrap().unwrap();
    assert_eq!(user.name, format!("system:bootstrap:{}", token.id));

    let user_token = c
        .corral(&[
            "token", "create", "--kind", "user", "--user", "alice", "--group", "dev",
        ])
        .await
        .ok()
        .trim()
        .to_string();
    let alice = tokens.authenticate(&user_token).await.unwrap().unwrap();
    assert_eq!(alice.name, "alice");
    assert!(alice.in_group("dev"));

    let list = c.corral(&["token", "list"]).await.ok().to_string();
    assert!(
        list.contains(&token.id) && list.contains("lab node"),
        "{list}"
    );
    assert!(list.contains("alice"), "{list}");
    assert!(!list.contains(&token.secret), "{list}");
    // The default agent token the control plane made is listed too.
    assert_eq!(list.lines().count(), 4, "{list}");

    c.corral(&["token", "delete", &token.id]).await.ok();
    assert_eq!(
        tokens.authenticate(&text).await,
        Err(TokenRejected::Invalid {
            id: token.id.clone()
        })
    );
    let bad = c.corral(&["token", "create", "--kind", "user"]).await;
    assert!(bad.failed().contains("--user"), "{bad:?}");
}
