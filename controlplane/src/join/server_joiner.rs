//! The joining side of ServerJoin (`corral-controlplane etcd-join`): the server token's text
//! forms, then pin the cluster CA the token names, send the secret over a connection verified
//! with it, and write the etcd CA and this host's etcd certificates from the answer.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use corral_api::pin;
use corral_proto::v1 as pb;
use tracing::{info, warn};

use crate::pki::etcd as etcd_pki;

#[derive(Debug, thiserror::Error)]
pub enum JoinerError {
    #[error("malformed server token: expected K10<ca-hash>::server:<secret> or <secret> (the first server's DATA_DIR/server-token)")]
    Malformed,
    #[error(transparent)]
    Pin(#[from] pin::PinError),
    #[error("connecting to {server}: {detail}")]
    Connect { server: String, detail: String },
    #[error("{server} refused the server join: {message}")]
    Refused { server: String, message: String },
    #[error("{server} answered with a malformed etcd CA: {source}")]
    BadCa {
        server: String,
        #[source]
        source: crate::pki::PkiError,
    },
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
}

/// A server token: the secret that seals the cluster CA in the store and authenticates a
/// joining server, with the hash of the cluster CA when given in the long form.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerToken {
    pub ca_hash: Option<String>,
    pub secret: String,
}

impl std::fmt::Debug for ServerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerToken")
            .field("ca_hash", &self.ca_hash)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ServerToken {
    /// `K10<sha256 hex of the CA DER>::server:<secret>` (k3s's form) or the bare `<secret>`.
    pub fn parse(text: &str) -> Result<Self, JoinerError> {
        let text = text.trim();
        let (ca_hash, secret) = match text.strip_prefix("K10") {
            Some(long) => {
                let (hash, rest) = long.split_once("::").ok_or(JoinerError::Malformed)?;
                let hex = hash.len() == 64
                    && hash
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                let secret = rest.strip_prefix("server:").ok_or(JoinerError::Malformed)?;
                if !hex {
                    return Err(JoinerError::Malformed);
                }
                (Some(hash.to_string()), secret)
            }
            None => (None, text),
        };
        let ok = !secret.is_empty()
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(JoinerError::Malformed);
        }
        Ok(Self {
            ca_hash,
            secret: secret.to_string(),
        })
    }

    /// The long form for a cluster whose CA is `ca_der`.
    pub fn long(secret: &str, ca_der: &[u8]) -> String {
        format!(
            "K10{}::server:{}",
            corral_api::token::ca_hash(ca_der),
            secret.trim()
        )
    }
}

/// How long a join is retried while etcd says it cannot add a member yet.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// What a join gave: etcd's `--initial-cluster` for this member and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub initial_cluster: String,
    pub member_id: String,
}

/// Joins the embedded etcd through `server`: pins its CA, sends the token, writes the etcd CA
/// and this host's etcd certificates (for `sans`) into `dir`.
pub async fn join(
    server: &str,
    token: &ServerToken,
    name: &str,
    peer_url: &str,
    dir: &Path,
    sans: &BTreeSet<String>,
) -> Result<Joined, JoinerError> {
    let ca_der = pin::fetch_ca(server).await?;
    match &token.ca_hash {
        Some(hash) => pin::check(server, hash, &ca_der)?,
        None => warn!(
            server,
            ca_sha256 = %corral_api::token::ca_hash(&ca_der),
            "SERVER TOKEN HAS NO CA HASH: trusting the CA this server presented (trust on first \
             use); give the K10<hash>::server:<secret> form the first server's installer printed"
        ),
    }
    let creds = corral_api::Credentials {
        ca_pem: Some(pin::der_to_pem(&ca_der).into_bytes()),
        identity: None,
        token: None,
    };
    let client = corral_api::Client::connect_with(server, &creds)
        .await
        .map_err(|e| JoinerError::Connect {
            server: server.to_string(),
            detail: e.to_string(),
        })?;
    let mut joiner = pb::server_join_client::ServerJoinClient::new(client.transport());
    let req = pb::ServerJoinRequest {
        token: token.secret.clone(),
        name: name.to_string(),
        peer_url: peer_url.to_string(),
    };
    // etcd adds a member only once its leader has been connected to every member for a while
    // ("unhealthy cluster" right after the previous join): Unavailable is tried again.
    let deadline = Instant::now() + RETRY_FOR;
    let resp = loop {
        match joiner.join_server(req.clone()).await {
            Ok(r) => break r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                info!(server, reason = %s.message(), "etcd cannot add a member yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(s) => {
                return Err(JoinerError::Refused {
                    server: server.to_string(),
                    message: s.message().to_string(),
                })
            }
        }
    };
    let ca = etcd_pki::EtcdCa {
        cert_pem: resp.etcd_ca_pem,
        key_pem: resp.etcd_ca_key_pem,
    };
    etcd_pki::ensure(dir, Some(&ca), name, sans).map_err(|source| match source {
        crate::pki::PkiError::Cert { .. } | crate::pki::PkiError::BadPem { .. } => {
            JoinerError::BadCa {
                server: server.to_string(),
                source,
            }
        }
        other => other.into(),
    })?;
    info!(server, member = name, id = %resp.member_id, "joined the embedded etcd");
    Ok(Joined {
        initial_cluster: resp.initial_cluster,
        member_id: resp.member_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_tokens_parse_in_the_long_and_the_bare_form() {
        let hash = "ab".repeat(32);
        let long = format!("K10{hash}::server:0123abcd");
        assert_eq!(
            ServerToken::parse(&format!("{long}\n")).unwrap(),
            ServerToken {
                ca_hash: Some(hash.clone()),
                secret: "0123abcd".into()
            }
        );
        assert_eq!(ServerToken::parse("0123abcd").unwrap().ca_hash, None);
        for bad in [
            "",
            "K10abc::server:x",
            &format!("K10{hash}::x"),
            &format!("K10{hash}::server:"),
            "two words",
        ] {
            assert!(ServerToken::parse(bad).is_err(), "{bad:?}");
        }
        let printed = ServerToken::long("0123abcd", b"der");
        assert_eq!(
            ServerToken::parse(&printed).unwrap().ca_hash,
            Some(corral_api::token::ca_hash(b"der"))
        );
        assert!(!format!("{:?}", ServerToken::parse(&long).unwrap()).contains("0123abcd"));
    }
}
