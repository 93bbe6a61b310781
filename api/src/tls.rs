//! TLS on the client side, one home for every component: the rustls client configuration built
//! from [`Credentials`] (the cluster CA the server's chain must lead to, the client's own
//! certificate), the handshake the client's dialer makes, and the one-line errors a failed handshake
//! becomes. The dialer reads the configuration from a swappable slot at each new connection,
//! so renewed credentials reach new connections without rebuilding the client.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::credentials::Credentials;

static HANDSHAKES: AtomicU64 = AtomicU64::new(0);

/// TLS handshakes completed by this process's clients: a client keeps one connection, so this
/// grows by one per client, not per request.
pub fn handshakes() -> u64 {
    HANDSHAKES.load(Ordering::Relaxed)
}

/// Why a TLS connection could not be made or configured: one line that names what to fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("no CA certificate in {src}: set certificate-authority or certificate-authority-data")]
    NoCa { src: String },
    #[error("CA certificate in {src} is not usable: {source}")]
    BadCa {
        src: String,
        #[source]
        source: rustls::Error,
    },
    #[error("client certificate or key in {src} is not usable: {reason}")]
    BadIdentity { src: String, reason: String },
    #[error("the server's certificate is not signed by the cluster CA in {src}")]
    UnknownCa { src: String },
    #[error("the server's certificate has expired: restart the control plane to re-issue it, or check this machine's clock")]
    ServerExpired,
    #[error("the server's certificate is not valid yet: this machine's clock and the control plane's differ (clock skew); fix the time")]
    ServerNotYetValid,
    #[error("the server's certificate does not name {host:?}: connect by a name it has, or add it with the control plane's --tls-san")]
    WrongName { host: String },
    #[error("the server refused this client's certificate ({alert:?}): it expired, is not valid yet (clock skew), or is from another cluster; get new credentials")]
    ClientRefused { alert: rustls::AlertDescription },
    #[error("server address {uri:?} has no host")]
    NoHost { uri: String },
    #[error("connecting to {addr}: {source}")]
    Tcp {
        addr: String,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("TLS handshake with {addr}: {source}")]
    Handshake {
        addr: String,
        #[source]
        source: Arc<io::Error>,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Parses the PEM certificates of `pem` (a CA bundle or a client chain).
fn certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// The rustls configuration for `creds`: verify the server against `ca_pem`, present
/// `identity` when there is one, speak HTTP/2. `src` names where the credentials came from,
/// for errors.
pub fn client_config(creds: &Credentials, src: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let ca = creds.ca_pem.as_deref().ok_or_else(|| TlsError::NoCa {
        src: src.to_string(),
    })?;
    let mut roots = RootCertStore::empty();
    let cas = certs(ca);
    if cas.is_empty() {
        return Err(TlsError::NoCa {
            src: src.to_string(),
        });
    }
    for cert in cas {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            src: src.to_string(),
            source,
        })?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports the default protocol versions")
        .with_root_certificates(roots);
    let mut config = match &creds.identity {
        Some((cert_pem, key_pem)) => {
            let bad = |reason: String| TlsError::BadIdentity {
                src: src.to_string(),
                reason,
            };
            let chain = certs(cert_pem);
            if chain.is_empty() {
                return Err(bad("no PEM certificate".into()));
            }
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| bad(format!("private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The configuration new connections use; swapped when credentials are renewed.
pub type ConfigSlot = Arc<RwLock<Arc<ClientConfig>>>;

/// TLS over `tcp` with `config`, verifying the server's certificate for `host` (a name or an
/// IP address); `src` is where the CA came from, for errors.
pub async fn handshake(
    config: Arc<ClientConfig>,
    host: &str,
    port: u16,
    tcp: TcpStream,
    src: &str,
) -> Result<TlsStream<TcpStream>, TlsError> {
    let addr = format!("{host}:{port}");
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| TlsError::NoHost { uri: addr.clone() })?;
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| classify(e, src, host, &addr))?;
    HANDSHAKES.fetch_add(1, Ordering::Relaxed);
    Ok(tls)
}

/// A failed handshake in words that say what to fix.
fn classify(e: io::Error, src: &str, host: &str, addr: &str) -> TlsError {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsError::UnknownCa {
                    src: src.to_string(),
                }
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                TlsError::ServerExpired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsError::ServerNotYetValid
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsError::WrongName {
                    host: host.to_string(),
                }
            }
            _ => TlsError::Handshake {
                addr: addr.to_string(),
                source: Arc::new(e),
            },
        },
        Some(rustls::Error::AlertReceived(alert)) => TlsError::ClientRefused { alert: *alert },
        _ => TlsError::Handshake {
            addr: addr.to_string(),
            source: Arc::new(e),
        },
    }
}

/// The [`TlsError`] somewhere in an error's source chain (tonic wraps the connector's error).
pub fn find_tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a TlsError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<TlsError>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}
