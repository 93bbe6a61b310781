//! The token cleaner over the real API server: an expired token's Secret goes, a live one and
//! one that never expires stay.

mod common;

use std::time::Duration;

use corral_api::kinds;
use corral_api::token::{Token, TokenKind, TokenRecord, NAMESPACE};

fn record(id: &str, expiration: Option<jiff::Timestamp>) -> serde_json::Value {
    let t = Token::parse(&format!("{id}.0123456789abcdef")).unwrap();
    let mut r = TokenRecord::new(&t, TokenKind::User, "cleaner test");
    r.user = Some("someone".into());
    r.expiration = expiration;
    r.to_secret()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_secrets_are_deleted_and_others_kept() {
    let c = common::start(corral_controllers::Config::default()).await;
    let now = jiff::Timestamp::now();
    let hour = jiff::SignedDuration::from_secs(3600);
    for (id, exp) in [
        ("expird", Some(now - hour)),
        ("living", Some(now + hour)),
        ("foreve", None),
    ] {
        c.client
            .create_value(&kinds::SECRETS, NAMESPACE, &record(id, exp), false)
            .await
            .unwrap();
    }
    let names = || async {
        let (items, _) = c
            .client
            .list_value(&kinds::SECRETS, NAMESPACE, &Default::default())
            .await
            .unwrap();
        items
            .iter()
            .filter_map(|s| s.pointer("/metadata/name")?.as_str().map(str::to_string))
            .filter(|n| n.starts_with("corral-token-"))
            .collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = names().await;
        if !left.contains(&"corral-token-expird".to_string()) {
            assert!(
                left.contains(&"corral-token-living".to_string()),
                "{left:?}"
            );
            assert!(
                left.contains(&"corral-token-foreve".to_string()),
                "{left:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired token is still there: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
