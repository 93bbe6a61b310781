//! Bearer tokens on the server: the [`TokenAuthenticator`] over `corral.io/token` Secrets
//! (hash compared in constant time, expiry refused), the identity each token kind grants, and
//! the default agent token made on first start (`DATA_DIR/agent-token`, as k3s's).
//! The token's wire and storage format lives in `corral_api::token`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use corral_api::kinds;
use corral_api::token::{self, Token, TokenKind, TokenRecord};
use tracing::{info, warn};

use super::{TokenAuthenticator, TokenRejected, UserInfo, AUTHENTICATED, BOOTSTRAPPERS};
use crate::registry::{ApiError, Registry};

/// File the control plane writes its default agent token to (mode 0600).
pub const AGENT_TOKEN_FILE: &str = "agent-token";

/// Equal-length comparison whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The identity a token record grants.
pub fn identity(record: &TokenRecord) -> UserInfo {
    match record.kind {
        TokenKind::Agent => UserInfo::new(
            format!("{}{}", token::BOOTSTRAP_PREFIX, record.id),
            [BOOTSTRAPPERS, AUTHENTICATED],
        ),
        TokenKind::User => {
            let mut groups = record.groups.clone();
            if !groups.iter().any(|g| g == AUTHENTICATED) {
                groups.push(AUTHENTICATED.to_string());
            }
            UserInfo {
                name: record.user.clone().unwrap_or_default(),
                groups,
            }
        }
    }
}

/// Checks a presented secret against its stored record at `now` (pure).
pub fn verify(
    record: &TokenRecord,
    secret: &str,
    now: jiff::Timestamp,
) -> Result<UserInfo, TokenRejected> {
    let presented = token::secret_hash(secret);
    if !constant_time_eq(presented.as_bytes(), record.secret_sha256.as_bytes()) {
        return Err(TokenRejected::Invalid {
            id: record.id.clone(),
        });
    }
    if let Some(at) = record.expiration.filter(|at| *at <= now) {
        return Err(TokenRejected::Expired {
            id: record.id.clone(),
            at: at.to_string(),
        });
    }
    Ok(identity(record))
}

/// Looks tokens up in the registry's in-memory store.
pub struct RegistryTokens {
    registry: Arc<Registry>,
}

impl RegistryTokens {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

#[async_trait]
impl TokenAuthenticator for RegistryTokens {
    async fn authenticate(&self, text: &str) -> Result<Option<UserInfo>, TokenRejected> {
        let token = Token::parse(text).map_err(|_| TokenRejected::Malformed)?;
        let invalid = || TokenRejected::Invalid {
            id: token.id.clone(),
        };
        let secret = match self
            .registry
            .get(&kinds::SECRETS, token::NAMESPACE, &token.secret_name())
            .await
        {
            Ok(s) => s,
            Err(ApiError::NotFound { .. }) => return Err(invalid()),
            Err(e) => {
                warn!(token = %token.id, error = %e, "reading token secret");
                return Err(invalid());
            }
        };
        let record = match TokenRecord::from_secret(&secret) {
            Ok(Some(r)) if r.id == token.id => r,
            Ok(_) => return Err(invalid()),
            Err(e) => {
                warn!(token = %token.id, error = %e, "token secret is malformed");
                return Err(invalid());
            }
        };
        verify(&record, &token.secret, jiff::Timestamp::now()).map(Some)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentTokenError {
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storing the default agent token: {0}")]
    Store(#[from] ApiError),
}

/// On first start, makes the default agent token (no expiry) and writes its long form to
/// `DATA_DIR/agent-token` (0600). An existing file is kept as it is: deleting the token with
/// `corral token delete` must not be undone by a restart.
pub async fn ensure_agent_token(
    registry: &Registry,
    data_dir: &Path,
    ca_der: &[u8],
) -> Result<(), AgentTokenError> {
    let path = data_dir.join(AGENT_TOKEN_FILE);
    if path.exists() {
        return Ok(());
    }
    let token = Token::generate(Some(ca_der));
    let record = TokenRecord::new(&token, TokenKind::Agent, "default agent token");
    registry
        .create(&kinds::SECRETS, token::NAMESPACE, record.to_secret(), false)
        .await?;
    corral_api::files::write_private(&path, format!("{}\n", token.to_text()).as_bytes()).map_err(
        |source| AgentTokenError::Write {
            path: path.display().to_string(),
            source,
        },
    )?;
    info!(path = %path.display(), token = %token.id, "wrote the default agent token");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: TokenKind, expiration: Option<&str>) -> TokenRecord {
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        let mut r = TokenRecord::new(&t, kind, "");
        r.expiration = expiration.map(|e| e.parse().unwrap());
        if kind == TokenKind::User {
            r.user = Some("alice".into());
            r.groups = vec!["dev".into()];
        }
        r
    }

    #[test]
    fn secrets_are_checked_against_hash_and_expiry() {
        let now: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let bootstrap = UserInfo::new("system:bootstrap:abcdef", [BOOTSTRAPPERS, AUTHENTICATED]);
        let alice = UserInfo::new("alice", ["dev", AUTHENTICATED]);
        let invalid = Err(TokenRejected::Invalid {
            id: "abcdef".into(),
        });
        let table = [
            (
                record(TokenKind::Agent, None),
                "0123456789abcdef",
                Ok(bootstrap.clone()),
            ),
            (record(TokenKind::User, None), "0123456789abcdef", Ok(alice)),
            (
                record(TokenKind::Agent, None),
                "0123456789abcdeg",
                invalid.clone(),
            ),
            (record(TokenKind::Agent, None), "", invalid),
            (
                record(TokenKind::Agent, Some("2030-01-01T00:00:01Z")),
                "0123456789abcdef",
                Ok(bootstrap),
            ),
            (
                record(TokenKind::Agent, Some("2030-01-01T00:00:00Z")),
                "0123456789abcdef",
                Err(TokenRejected::Expired {
                    id: "abcdef".into(),
                    at: "2030-01-01T00:00:00Z".into(),
                }),
            ),
        ];
        for (rec, secret, want) in table {
            assert_eq!(verify(&rec, secret, now), want, "{rec:?} {secret}");
        }
    }

    #[test]
    fn constant_time_comparison_agrees_with_equality() {
        for (a, b) in [
            ("", ""),
            ("a", "a"),
            ("a", "b"),
            ("ab", "a"),
            ("abc", "abd"),
        ] {
            assert_eq!(constant_time_eq(a.as_bytes(), b.as_bytes()), a == b);
        }
    }
}
