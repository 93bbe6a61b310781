//! Token cleaner, as Kubernetes' `tokencleaner` does for bootstrap tokens: `corral.io/token`
//! Secrets whose expiration has passed are deleted. The authenticator already refuses them;
//! this removes what is left (`corral dashboard` mints a short-lived token each time). A pure
//! choice of what to delete and a thin loop on the controllers' leader, run on each change of
//! a token Secret and once a minute.

use std::sync::Arc;
use std::time::Duration;

use corral_api::client::DeleteOptions;
use corral_api::k8s::api::core::v1::Secret;
use corral_api::runtime::{reflector, watcher, Store, WatcherConfig};
use corral_api::token::{self, TokenRecord};
use corral_api::{kinds, ListParams};
use jiff::Timestamp;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::Context;

const EVERY: Duration = Duration::from_secs(60);

/// An expired token's Secret: its name and uid (the delete's precondition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub name: String,
    pub uid: String,
}

/// The token Secrets among `secrets` whose expiration is at or before `now`. Secrets of other
/// types, tokens without expiry, and records that do not parse (left for an operator) are kept.
pub fn expired(secrets: &[Value], now: Timestamp) -> Vec<Expired> {
    secrets
        .iter()
        .filter(|s| {
            matches!(
                TokenRecord::from_secret(s),
                Ok(Some(TokenRecord { expiration: Some(at), .. })) if at <= now
            )
        })
        .filter_map(|s| {
            Some(Expired {
                name: s.pointer("/metadata/name")?.as_str()?.to_string(),
                uid: s.pointer("/metadata/uid")?.as_str()?.to_string(),
            })
        })
        .collect()
}

pub fn start(ctx: Arc<Context>) -> Vec<JoinHandle<()>> {
    let secrets = Store::<Secret>::new();
    let changed = Arc::new(Notify::new());
    {
        let changed = changed.clone();
        secrets.on_change(move |_| changed.notify_one());
    }
    let config = WatcherConfig {
        namespace: token::NAMESPACE.into(),
        params: ListParams::labels(token::KIND_LABEL),
    };
    let events = watcher::<Secret>(ctx.client.clone(), config);
    let informer = tokio::spawn(reflector::reflect(secrets.clone(), events));
    let cleaner = tokio::spawn(async move {
        secrets.wait_synced().await;
        loop {
            sweep(&ctx, &secrets).await;
            // A new or changed token at once; an expiry passing, within a minute.
            tokio::select! {
                _ = changed.notified() => {}
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    });
    vec![informer, cleaner]
}

async fn sweep(ctx: &Context, secrets: &Store<Secret>) {
    let values: Vec<Value> = secrets
        .list()
        .iter()
        .filter_map(|s| serde_json::to_value(&**s).ok())
        .collect();
    for gone in expired(&values, Timestamp::now()) {
        let opts = DeleteOptions {
            uid: Some(gone.uid.clone()),
            ..Default::default()
        };
        match ctx
            .client
            .delete_value(&kinds::SECRETS, token::NAMESPACE, &gone.name, opts)
            .await
        {
            Ok(_) => info!(secret = %gone.name, "deleted an expired token"),
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => warn!(secret = %gone.name, error = %e, "deleting an expired token failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::token::{Token, TokenKind};
    use serde_json::json;

    fn secret(id: &str, expiration: Option<&str>) -> Value {
        let t = Token::parse(&format!("{id}.0123456789abcdef")).unwrap();
        let mut r = TokenRecord::new(&t, TokenKind::User, "test");
        r.expiration = expiration.map(|e| e.parse().unwrap());
        r.user = Some("corral:dashboard:x".into());
        let mut s = r.to_secret();
        s["metadata"]["uid"] = json!(format!("uid-{id}"));
        s
    }

    #[test]
    fn only_token_secrets_past_their_expiration_are_chosen() {
        let now: Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
        let mut other = secret("zzzzzz", Some("2020-01-01T00:00:00Z"));
        other["type"] = json!("Opaque");
        let mut broken = secret("yyyyyy", Some("2020-01-01T00:00:00Z"));
        broken["data"]["secret-sha256"] = json!("%%%");
        let secrets = vec![
            secret("aaaaaa", Some("2026-12-07T11:59:59Z")),
            secret("bbbbbb", Some("2026-12-07T12:00:00Z")),
            secret("cccccc", Some("2026-12-07T12:00:01Z")),
            secret("dddddd", None),
            other,
            broken,
        ];
        let names: Vec<String> = expired(&secrets, now).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["corral-token-aaaaaa", "corral-token-bbbbbb"]);
        assert_eq!(expired(&secrets, now)[0].uid, "uid-aaaaaa");
    }
}
