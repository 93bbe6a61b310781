//! Joining and staying joined: the pure planner (use the node certificate, renew it, join
//! with the token, or refuse with one line), the join (pin the CA with `corral_api::pin`
//! before the token leaves the host, CSR from a key made here), and renewal when less than a
//! third of the certificate's lifetime remains, at start and on a timer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_api::pin::{self, PinError};
use corral_api::token::Token;
use corral_proto::v1 as pb;
use tracing::{info, warn};

use crate::credentials::{self, CertInfo, CredentialsError, NodeCredentials};

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error("this host's clock ({now}) is before the cluster CA's start ({not_before}): fix the clock (NTP) and retry")]
    ClockSkew { now: String, not_before: String },
    #[error("node certificate in {path} is not valid before {not_before} (this host's clock reads {now}): fix the clock (NTP)")]
    CertNotYetValid {
        path: PathBuf,
        not_before: String,
        now: String,
    },
    #[error(
        "node certificate in {path} expired at {at}: join again with --token (or --token-file)"
    )]
    Expired { path: PathBuf, at: String },
    #[error("no node credentials in {data_dir} and no join token: pass --token or --token-file (the control plane writes DATA_DIR/agent-token; `corral token create` makes more)")]
    NoCredentials { data_dir: PathBuf },
    #[error("{server} refused the join: {message}")]
    Refused { server: String, message: String },
    #[error("{server} presents a certificate the cluster CA did not sign (a control plane of another cluster?): {detail}; if the cluster was rebuilt, remove {kubeconfig} and join again with a new token")]
    OtherCluster {
        server: String,
        detail: String,
        kubeconfig: PathBuf,
    },
    #[error("connecting to {server}: {detail}")]
    Connect { server: String, detail: String },
    #[error("{server} answered with a CA other than the one pinned: refusing its certificate")]
    CaChanged { server: String },
    #[error("making the node key and CSR: {0}")]
    Csr(#[source] rcgen::Error),
    #[error(transparent)]
    Files(#[from] CredentialsError),
}

/// What the agent does with its data dir at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Use,
    Renew,
    Join,
    Refuse(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoCredentials,
    Expired { at: i64 },
    NotYetValid { not_before: i64 },
}

/// Renew when less than a third of the lifetime remains (k3s: 120 of 365 days).
pub fn renew_at(cert: &CertInfo) -> i64 {
    cert.not_after - (cert.not_after - cert.not_before) / 3
}

/// Pure: `cert` is the node certificate on disk (if any), `now` Unix seconds.
pub fn plan(cert: Option<&CertInfo>, has_token: bool, now: i64) -> Step {
    match cert {
        None if has_token => Step::Join,
        None => Step::Refuse(Refusal::NoCredentials),
        Some(c) if now >= c.not_after && has_token => Step::Join,
        Some(c) if now >= c.not_after => Step::Refuse(Refusal::Expired { at: c.not_after }),
        Some(c) if now < c.not_before => Step::Refuse(Refusal::NotYetValid {
            not_before: c.not_before,
        }),
        Some(c) if now >= renew_at(c) => Step::Renew,
        Some(_) => Step::Use,
    }
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| secs.to_string())
}

/// A key made here and a CSR for it (the server sets the subject; this one is a hint).
fn key_and_csr(node_name: &str) -> Result<(String, String), JoinError> {
    let key = rcgen::KeyPair::generate().map_err(JoinError::Csr)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(JoinError::Csr)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("system:node:{node_name}"),
    );
    let csr = params.serialize_request(&key).map_err(JoinError::Csr)?;
    Ok((csr.pem().map_err(JoinError::Csr)?, key.serialize_pem()))
}

/// The Join service at `server` over the shared client (TLS verified with `ca_pem`),
/// presenting `identity` or `token` if given.
async fn join_client(
    server: &str,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    token: Option<String>,
    kubeconfig: &Path,
) -> Result<pb::join_client::JoinClient<corral_api::client::Transport>, JoinError> {
    let creds = corral_api::Credentials {
        ca_pem: Some(ca_pem.as_bytes().to_vec()),
        identity: identity.map(|(c, k)| (c.as_bytes().to_vec(), k.as_bytes().to_vec())),
        token,
    };
    let client = corral_api::Client::connect_with(server, &creds)
        .await
        .map_err(|e| {
            use corral_api::tls::TlsError;
            match corral_api::tls::find_tls_error(&e) {
                Some(TlsError::UnknownCa { .. }) => JoinError::OtherCluster {
                    server: server.to_string(),
                    detail: e.to_string(),
                    kubeconfig: kubeconfig.to_path_buf(),
                },
                Some(TlsError::ServerNotYetValid) => JoinError::ClockSkew {
                    now: rfc3339(unix_now()),
                    not_before: "the server certificate's start".into(),
                },
                _ => JoinError::Connect {
                    server: server.to_string(),
                    detail: e.to_string(),
                },
            }
        })?;
    Ok(pb::join_client::JoinClient::new(client.transport()))
}

fn refused(server: &str, status: tonic::Status) -> JoinError {
    JoinError::Refused {
        server: server.to_string(),
        message: status.message().to_string(),
    }
}

/// The CA of the first of the comma-separated `servers` that presents one, with that server.
async fn fetch_ca_any(servers: &str) -> Result<(String, Vec<u8>), JoinError> {
    let mut last = None;
    for server in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match pin::fetch_ca(server).await {
            Ok(ca) => return Ok((server.to_string(), ca)),
            Err(e) => {
                warn!(server, error = %e, "fetching the cluster CA failed; trying the next server");
                last = Some(e);
            }
        }
    }
    Err(last
        .map(JoinError::from)
        .unwrap_or_else(|| JoinError::Connect {
            server: servers.to_string(),
            detail: "no server address".into(),
        }))
}

/// Joins: pins the CA, then sends the token and a CSR over a connection verified with it.
/// Writes nothing unless the join succeeded.
pub async fn join(
    server: &str,
    token: &Token,
    node_name: &str,
    data_dir: &Path,
) -> Result<NodeCredentials, JoinError> {
    // With several servers, the first that answers pins the CA and signs; the node keeps them
    // all for its connection.
    let all = server;
    let (server, ca_der) = fetch_ca_any(all).await?;
    let server = server.as_str();
    match &token.ca_hash {
        Some(hash) => pin::check(server, hash, &ca_der)?,
        None => warn!(
            server,
            ca_sha256 = %corral_api::token::ca_hash(&ca_der),
            "JOIN TOKEN HAS NO CA HASH: trusting the CA this server presented (trust on first use); \
             use the K10<hash>::<id>.<secret> form from DATA_DIR/agent-token or `corral token create`"
        ),
    }
    let ca_pem = pin::der_to_pem(&ca_der);
    if let Some(ca) = credentials::cert_info(&ca_pem) {
        let now = unix_now();
        if now < ca.not_before {
            return Err(JoinError::ClockSkew {
                now: rfc3339(now),
                not_before: rfc3339(ca.not_before),
            });
        }
    }
    let kubeconfig = data_dir.join(credentials::KUBECONFIG);
    let bearer = format!("{}.{}", token.id, token.secret);
    let mut joiner = join_client(server, &ca_pem, None, Some(bearer), &kubeconfig).await?;
    let (csr_pem, key_pem) = key_and_csr(node_name)?;
    let req = pb::JoinRequest {
        node_name: node_name.to_string(),
        csr_pem,
    };
    let resp = joiner
        .join(req)
        .await
        .map_err(|s| refused(server, s))?
        .into_inner();
    if pin::pem_to_der(&resp.ca_pem).as_deref() != Some(ca_der.as_slice()) {
        return Err(JoinError::CaChanged {
            server: server.to_string(),
        });
    }
    let creds = NodeCredentials {
        server: all.to_string(),
        ca_pem,
        cert_pem: resp.cert_pem,
        key_pem,
    };
    credentials::store(data_dir, node_name, &creds)?;
    info!(
        server,
        node = node_name,
        "joined the cluster; node certificate written"
    );
    Ok(creds)
}

/// Renews with a new key, authenticating with the current certificate; writes atomically.
pub async fn renew(
    current: &NodeCredentials,
    node_name: &str,
    data_dir: &Path,
) -> Result<NodeCredentials, JoinError> {
    let kubeconfig = data_dir.join(credentials::KUBECONFIG);
    let mut renewer = join_client(
        &current.server,
        &current.ca_pem,
        Some((&current.cert_pem, &current.key_pem)),
        None,
        &kubeconfig,
    )
    .await?;
    let (csr_pem, key_pem) = key_and_csr(node_name)?;
    let resp = renewer
        .renew(pb::RenewRequest { csr_pem })
        .await
        .map_err(|s| refused(&current.server, s))?
        .into_inner();
    let creds = NodeCredentials {
        cert_pem: resp.cert_pem,
        key_pem,
        ..current.clone()
    };
    credentials::store(data_dir, node_name, &creds)?;
    info!(node = node_name, "node certificate renewed");
    Ok(creds)
}

/// At start: the node's credentials, joining or renewing as the planner says.
pub async fn ensure(
    server: &str,
    token: Option<&Token>,
    node_name: &str,
    data_dir: &Path,
) -> Result<NodeCredentials, JoinError> {
    let current = credentials::load(data_dir)?;
    let info = current
        .as_ref()
        .and_then(|c| credentials::cert_info(&c.cert_pem));
    let path = data_dir.join(credentials::KUBECONFIG);
    match (
        plan(info.as_ref(), token.is_some(), unix_now()),
        current,
        token,
    ) {
        (Step::Use, Some(c), _) => Ok(c),
        (Step::Renew, Some(c), _) => renew(&c, node_name, data_dir).await,
        (Step::Join, _, Some(t)) => join(server, t, node_name, data_dir).await,
        (Step::Refuse(Refusal::Expired { at }), _, _) => Err(JoinError::Expired {
            path,
            at: rfc3339(at),
        }),
        (Step::Refuse(Refusal::NotYetValid { not_before }), _, _) => {
            Err(JoinError::CertNotYetValid {
                path,
                not_before: rfc3339(not_before),
                now: rfc3339(unix_now()),
            })
        }
        _ => Err(JoinError::NoCredentials {
            data_dir: data_dir.to_path_buf(),
        }),
    }
}

/// Renews the node certificate when due, for as long as the agent runs, handing each new
/// set of credentials to `renewed` (the client swaps its identity for new connections).
pub async fn renew_forever(
    node_name: String,
    data_dir: PathBuf,
    renewed: impl Fn(&NodeCredentials) + Send + 'static,
) {
    loop {
        let current = match credentials::load(&data_dir) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "reading node credentials for renewal");
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            }
        };
        let Some(info) = credentials::cert_info(&current.cert_pem) else {
            warn!("node certificate is unreadable; renewal stopped");
            return;
        };
        let wait = (renew_at(&info) - unix_now()).clamp(0, 3600);
        if wait > 0 {
            tokio::time::sleep(Duration::from_secs(wait as u64)).await;
            continue;
        }
        match renew(&current, &node_name, &data_dir).await {
            Ok(c) => renewed(&c),
            Err(e) => {
                warn!(error = %e, "node certificate renewal failed; retrying");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    }
}

/// Reads a token from `--token` or `--token-file` (trimmed).
pub fn read_token(
    token: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Token>, TokenArgError> {
    let text = match (token, file) {
        (Some(t), _) => t.to_string(),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|source| TokenArgError::Read {
            path: f.to_path_buf(),
            source,
        })?,
        (None, None) => return Ok(None),
    };
    Token::parse(&text).map(Some).map_err(TokenArgError::Parse)
}

#[derive(Debug, thiserror::Error)]
pub enum TokenArgError {
    #[error("reading --token-file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--token: {0}")]
    Parse(#[source] corral_api::token::TokenError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: i64, not_after: i64) -> CertInfo {
        CertInfo {
            not_before,
            not_after,
            common_name: "system:node:n1".into(),
        }
    }

    #[test]
    fn the_planner_uses_renews_joins_or_refuses() {
        // Lifetime 300 s: renew from 200 (a third left).
        let c = cert(0, 300);
        let table = [
            (None, true, 10, Step::Join),
            (None, false, 10, Step::Refuse(Refusal::NoCredentials)),
            (Some(&c), false, 10, Step::Use),
            (Some(&c), true, 199, Step::Use),
            (Some(&c), false, 200, Step::Renew),
            (Some(&c), true, 299, Step::Renew),
            (Some(&c), true, 300, Step::Join),
            (
                Some(&c),
                false,
                300,
                Step::Refuse(Refusal::Expired { at: 300 }),
            ),
            (
                Some(&c),
                true,
                -1,
                Step::Refuse(Refusal::NotYetValid { not_before: 0 }),
            ),
        ];
        for (cert, token, now, want) in table {
            assert_eq!(
                plan(cert, token, now),
                want,
                "{cert:?} token={token} now={now}"
            );
        }
        // 365 days: renewal starts with about 121 days left, as k3s's 120.
        let year = cert(0, 365 * 86_400);
        assert_eq!((year.not_after - renew_at(&year)) / 86_400, 121);
    }

    #[test]
    fn tokens_come_from_the_flag_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "abcdef.0123456789abcdef\n").unwrap();
        assert_eq!(read_token(None, None).unwrap(), None);
        assert_eq!(read_token(None, Some(&f)).unwrap().unwrap().id, "abcdef");
        assert!(read_token(Some("nope"), None).is_err());
        let missing = dir.path().join("missing");
        assert!(matches!(
            read_token(None, Some(&missing)),
            Err(TokenArgError::Read { .. })
        ));
    }
}
