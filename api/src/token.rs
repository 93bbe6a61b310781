//! Join and user tokens on the wire and at rest, one home for the CLI, the agent and the
//! server: the text form `K10<sha256 hex of the CA DER>::<id>.<secret>` (k3s's shape with a
//! Kubernetes bootstrap token), and the `corral.io/token` Secret that stores only the secret's
//! SHA-256 (`kube-system/corral-token-<id>`).

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Namespace of token Secrets.
pub const NAMESPACE: &str = "kube-system";
/// Type of token Secrets.
pub const SECRET_TYPE: &str = "corral.io/token";
/// Label every token Secret carries (its value: the kind).
pub const KIND_LABEL: &str = "corral.io/token-kind";
/// Prefix of a token Secret's name; the token id follows.
pub const SECRET_PREFIX: &str = "corral-token-";
/// Group of the read-only tokens `corral dashboard` mints; the control plane's default
/// ClusterRole [`DASHBOARD_ROLE`] (get/list/watch on what the page reads) is bound to it.
pub const DASHBOARD_GROUP: &str = "corral:dashboard-viewers";
/// The ClusterRole bound to [`DASHBOARD_GROUP`].
pub const DASHBOARD_ROLE: &str = "corral:dashboard-viewer";
/// User name prefix of an agent (bootstrap) token.
pub const BOOTSTRAP_PREFIX: &str = "system:bootstrap:";

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: expected [K10<ca-hash>::]<id>.<secret> (id 6 and secret 16 characters of [a-z0-9])")]
    Malformed,
    #[error("malformed token: the CA hash after K10 must be 64 lower-case hex characters")]
    BadCaHash,
    #[error("token secret {name:?}: field data.{field} is {problem}")]
    Record {
        name: String,
        field: &'static str,
        problem: &'static str,
    },
}

/// A parsed token. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// SHA-256 hex of the CA certificate (DER); `None` for the short form.
    pub ca_hash: Option<String>,
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("ca_hash", &self.ca_hash)
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn valid_part(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
}

impl Token {
    /// Parses the long (`K10<hash>::<id>.<secret>`) or short (`<id>.<secret>`) form;
    /// surrounding whitespace (a token file's newline) is ignored.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        let (ca_hash, rest) = match text.strip_prefix("K10") {
            Some(long) => {
                let (hash, rest) = long.split_once("::").ok_or(TokenError::Malformed)?;
                if hash.len() != 64
                    || !hash
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(TokenError::BadCaHash);
                }
                (Some(hash.to_string()), rest)
            }
            None => (None, text),
        };
        let (id, secret) = rest.split_once('.').ok_or(TokenError::Malformed)?;
        if !valid_part(id, ID_LEN) || !valid_part(secret, SECRET_LEN) {
            return Err(TokenError::Malformed);
        }
        Ok(Self {
            ca_hash,
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// A new random token (id and secret from the OS's CSPRNG through `rand`).
    pub fn generate(ca_der: Option<&[u8]>) -> Self {
        use rand::Rng;
        let mut rng = rand::rngs::OsRng;
        let mut part = |n: usize| -> String {
            (0..n)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect()
        };
        Self {
            id: part(ID_LEN),
            secret: part(SECRET_LEN),
            ca_hash: ca_der.map(ca_hash),
        }
    }

    /// The token as a user passes it: the long form when the CA hash is known.
    pub fn to_text(&self) -> String {
        match &self.ca_hash {
            Some(h) => format!("K10{h}::{}.{}", self.id, self.secret),
            None => format!("{}.{}", self.id, self.secret),
        }
    }

    pub fn secret_name(&self) -> String {
        format!("{SECRET_PREFIX}{}", self.id)
    }
}

/// SHA-256 hex of a CA certificate's DER: the value a long token names.
pub fn ca_hash(ca_der: &[u8]) -> String {
    hex::encode(Sha256::digest(ca_der))
}

/// SHA-256 hex of a token secret: the only form of it the server stores.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Authenticates as `system:bootstrap:<id>` in `system:bootstrappers`: may only join.
    Agent,
    /// Authenticates as the named user with its groups.
    User,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Agent => "agent",
            TokenKind::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(TokenKind::Agent),
            "user" => Some(TokenKind::User),
            _ => None,
        }
    }
}

/// What the server keeps of a token (the Secret's data), never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub kind: TokenKind,
    pub secret_sha256: String,
    pub description: String,
    /// `None`: never expires.
    pub expiration: Option<jiff::Timestamp>,
    /// User tokens only.
    pub user: Option<String>,
    pub groups: Vec<String>,
}

impl TokenRecord {
    /// The record of a freshly generated token.
    pub fn new(token: &Token, kind: TokenKind, description: &str) -> Self {
        Self {
            id: token.id.clone(),
            kind,
            secret_sha256: secret_hash(&token.secret),
            description: description.to_string(),
            expiration: None,
            user: None,
            groups: Vec::new(),
        }
    }

    /// The `corral.io/token` Secret holding this record.
    pub fn to_secret(&self) -> Value {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut data = serde_json::Map::new();
        data.insert("token-id".into(), b64(&self.id).into());
        data.insert("kind".into(), b64(self.kind.as_str()).into());
        data.insert("secret-sha256".into(), b64(&self.secret_sha256).into());
        data.insert("description".into(), b64(&self.description).into());
        if let Some(exp) = self.expiration {
            data.insert("expiration".into(), b64(&exp.to_string()).into());
        }
        if let Some(user) = &self.user {
            data.insert("user".into(), b64(user).into());
            data.insert("groups".into(), b64(&self.groups.join(",")).into());
        }
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": format!("{SECRET_PREFIX}{}", self.id),
                "namespace": NAMESPACE,
                "labels": {KIND_LABEL: self.kind.as_str()},
            },
            "type": SECRET_TYPE,
            "data": data,
        })
    }

    /// Reads a `corral.io/token` Secret; `Ok(None)` for a Secret of another type.
    pub fn from_secret(secret: &Value) -> Result<Option<Self>, TokenError> {
        if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
            return Ok(None);
        }
        let name = secret
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let err = |field, problem| TokenError::Record {
            name: name.clone(),
            field,
            problem,
        };
        let field = |key: &'static str| -> Result<Option<String>, TokenError> {
            let Some(v) = secret.pointer(&format!("/data/{key}")) else {
                return Ok(None);
            };
            let raw = v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or_else(|| err(key, "not base64"))?;
            String::from_utf8(raw)
                .map(Some)
                .map_err(|_| err(key, "not UTF-8"))
        };
        let id = field("token-id")?.ok_or_else(|| err("token-id", "missing"))?;
        if !valid_part(&id, ID_LEN) {
            return Err(err("token-id", "not 6 characters of [a-z0-9]"));
        }
        let kind = field("kind")?
            .as_deref()
            .map(|k| TokenKind::parse(k).ok_or_else(|| err("kind", "neither agent nor user")))
            .transpose()?
            .unwrap_or(TokenKind::Agent);
        let secret_sha256 =
            field("secret-sha256")?.ok_or_else(|| err("secret-sha256", "missing"))?;
        let expiration = field("expiration")?
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<jiff::Timestamp>()
                    .map_err(|_| err("expiration", "not an RFC 3339 time"))
            })
            .transpose()?;
        let user = field("user")?;
        let groups = field("groups")?
            .map(|g| {
                g.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if kind == TokenKind::User && user.as_deref().is_none_or(str::is_empty) {
            return Err(err("user", "missing for a user token"));
        }
        Ok(Some(Self {
            id,
            kind,
            secret_sha256,
            description: field("description")?.unwrap_or_default(),
            expiration,
            user,
            groups,
        }))
    }
}

/// Parses a TTL such as `24h`, `30m`, `7d`, `90s`, or `0` (never expires: `None`).
pub fn parse_ttl(s: &str) -> Option<Option<std::time::Duration>> {
    let s = s.trim();
    if s == "0" {
        return Some(None);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then_some(Some(std::time::Duration::from_secs(secs)))
}

#[cfg(test)]
mod tests;
