//! The control plane's PKI: the cluster CA (10 years, `DATA_DIR/tls/ca.{crt,key}`), the
//! serving certificate for every name and address the API answers on (365 days, re-issued at
//! start near expiry or when the names change), and client certificates signed for a name
//! and groups, from a key made here or from a CSR (the join path).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use tracing::info;

pub mod bootstrap;
pub mod etcd;
#[cfg(test)]
mod tests;

pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
pub const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// A serving certificate this close to its end is re-issued at start (k3s's rule).
pub const RENEW_BEFORE: Duration = Duration::from_secs(120 * 24 * 3600);
/// Certificates start this far in the past, so a peer whose clock is a little behind accepts them.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Cert {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("{path}: not a PEM certificate")]
    BadPem { path: PathBuf },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("building the TLS configuration: {0}")]
    Tls(String),
}

/// The cluster CA and the serving certificate, loaded or made once at start.
pub struct Pki {
    dir: PathBuf,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    serving_chain: Vec<CertificateDer<'static>>,
    serving_key_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("dir", &self.dir).finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Cert {
        what: what.to_string(),
        source,
    }
}

/// Writes `data` to `path` with `mode`, through a temporary file renamed into place.
pub fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    corral_api::files::write_atomic(path, data, mode).map_err(io_err(path))
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Validity from now minus the skew allowance to now plus `lifetime`. The allowance is at
/// most a tenth of the lifetime: a short-lived (test) certificate backdated by minutes would be
/// due for renewal as soon as it is issued.
fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let start = now();
    params.not_before = start - CLOCK_SKEW.min(lifetime / 10);
    params.not_after = start + lifetime;
}

/// A new self-signed CA (10 years) named `cn`, as PEM, with its key; `what` names it in
/// errors. The one recipe for the cluster CA and the etcd CA.
pub(crate) fn self_signed_ca(cn: &str, what: &str) -> Result<(String, KeyPair), PkiError> {
    let key = KeyPair::generate().map_err(cert_err(&format!("generating {what}'s key")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(cn, &["corral"]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_LIFETIME);
    let cert = params
        .self_signed(&key)
        .map_err(cert_err(&format!("signing {what}")))?;
    Ok((cert.pem(), key))
}

fn subject(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

fn client_params(cn: &str, orgs: &[&str], lifetime: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(cn, orgs);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, lifetime);
    params
}

/// The SAN set a serving certificate has, as strings (DNS names and IP addresses).
fn sans_of(
    der: &[u8],
    path: &Path,
) -> Result<(BTreeSet<String>, OffsetDateTime, Vec<u8>), PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut names = BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    names.insert(d.to_string());
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).map(std::net::IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*b).map(std::net::IpAddr::from).ok(),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let not_after = cert.validity().not_after.to_datetime();
    Ok((names, not_after, cert.issuer().as_raw().to_vec()))
}

/// Normalises names the way [`sans_of`] reads them back (IP addresses in canonical form).
fn normalise(sans: &[String]) -> BTreeSet<String> {
    sans.iter()
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => s.to_ascii_lowercase(),
        })
        .collect()
}

impl Pki {
    /// Loads the CA from `dir` (made on first start) and the serving certificate for `sans`,
    /// re-issuing it when missing, within [`RENEW_BEFORE`] of its end, not from this CA, or
    /// naming other names.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Self, PkiError> {
        Self::open(dir, Some(sans))
    }

    /// The CA a running control plane made in `dir`, to sign client certificates from another
    /// process (the local rig); the serving certificate is left alone.
    pub fn load_existing(dir: &Path) -> Result<Self, PkiError> {
        for f in ["ca.crt", "ca.key"] {
            let path = dir.join(f);
            if !path.exists() {
                return Err(PkiError::Io {
                    path,
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
        }
        Self::open(dir, None)
    }

    fn open(dir: &Path, sans: Option<&[String]>) -> Result<Self, PkiError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(dir))?;
        let ca_crt = dir.join("ca.crt");
        let ca_key = dir.join("ca.key");
        let (ca_pem, key) = if ca_crt.exists() && ca_key.exists() {
            let pem = std::fs::read_to_string(&ca_crt).map_err(io_err(&ca_crt))?;
            let key_pem = std::fs::read_to_string(&ca_key).map_err(io_err(&ca_key))?;
            let key = KeyPair::from_pem(&key_pem).map_err(cert_err("reading ca.key"))?;
            (pem, key)
        } else {
            let (cert_pem, key) = self_signed_ca("corral-ca", "the CA")?;
            write_private(&ca_key, key.serialize_pem().as_bytes(), 0o600)?;
            write_private(&ca_crt, cert_pem.as_bytes(), 0o644)?;
            info!(path = %ca_crt.display(), "made a new cluster CA (10 years)");
            (cert_pem, key)
        };
        let ca_der =
            CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|_| PkiError::BadPem {
                path: ca_crt.clone(),
            })?;
        let issuer = Issuer::from_ca_cert_der(&ca_der, key).map_err(cert_err("reading ca.crt"))?;
        let ca_subject = x509_parser::parse_x509_certificate(&ca_der)
            .map_err(|e| PkiError::Parse {
                path: ca_crt.clone(),
                reason: e.to_string(),
            })?
            .1
            .subject()
            .as_raw()
            .to_vec();
        let mut pki = Self {
            dir: dir.to_path_buf(),
            ca_pem,
            ca_der,
            issuer,
            serving_chain: Vec::new(),
            serving_key_pem: String::new(),
        };
        if let Some(sans) = sans {
            pki.load_or_issue_serving(sans, &ca_subject)?;
        }
        Ok(pki)
    }

    fn load_or_issue_serving(
        &mut self,
        sans: &[String],
        ca_subject: &[u8],
    ) -> Result<(), PkiError> {
        let crt = self.dir.join("serving.crt");
        let key = self.dir.join("serving.key");
        let wanted = normalise(sans);
        if let (Ok(pem), Ok(key_pem)) = (std::fs::read(&crt), std::fs::read_to_string(&key)) {
            if let Ok(der) = CertificateDer::from_pem_slice(&pem) {
                let (have, not_after, issuer) = sans_of(&der, &crt)?;
                let fresh = not_after - now() > RENEW_BEFORE;
                if have == wanted && fresh && issuer == ca_subject {
                    self.serving_chain = vec![der, self.ca_der.clone()];
                    self.serving_key_pem = key_pem;
                    return Ok(());
                }
                info!(have = ?have, wanted = ?wanted, fresh, "re-issuing the serving certificate");
            }
        }
        let key_pair = KeyPair::generate().map_err(cert_err("generating the serving key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject("corral-controlplane", &["corral"]);
        params.subject_alt_names = wanted
            .iter()
            .map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(cert_err(&format!("SAN {s:?}"))),
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, LEAF_LIFETIME);
        let cert = params
            .signed_by(&key_pair, &self.issuer)
            .map_err(cert_err("signing the serving certificate"))?;
        write_private(&key, key_pair.serialize_pem().as_bytes(), 0o600)?;
        write_private(&crt, cert.pem().as_bytes(), 0o644)?;
        info!(sans = ?wanted, "issued the serving certificate (365 days)");
        self.serving_chain = vec![cert.der().clone(), self.ca_der.clone()];
        self.serving_key_pem = key_pair.serialize_pem();
        Ok(())
    }

    /// The CA certificate, PEM.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER (what a join token's hash is computed over).
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// Where the CA and keys live (`DATA_DIR/tls`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new key and a client certificate for `cn` in groups `orgs`: (certificate PEM, key PEM).
    pub fn issue_client(
        &self,
        cn: &str,
        orgs: &[&str],
        lifetime: Duration,
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate().map_err(cert_err("generating a client key"))?;
        let cert = client_params(cn, orgs, lifetime)
            .signed_by(&key, &self.issuer)
            .map_err(cert_err(&format!("signing a certificate for {cn:?}")))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Credentials for `cn` in `orgs`: the CA and a new client certificate.
    pub fn client_credentials(
        &self,
        cn: &str,
        orgs: &[&str],
        lifetime: Duration,
    ) -> Result<corral_api::Credentials, PkiError> {
        let (cert, key) = self.issue_client(cn, orgs, lifetime)?;
        Ok(corral_api::Credentials {
            ca_pem: Some(self.ca_pem.clone().into_bytes()),
            identity: Some((cert.into_bytes(), key.into_bytes())),
            token: None,
        })
    }

    /// Signs the public key of the CSR `csr_pem` as a client certificate for `cn` in `orgs`:
    /// whatever subject, names or usages the CSR asks for are ignored.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        cn: &str,
        orgs: &[&str],
        lifetime: Duration,
    ) -> Result<String, PkiError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(cert_err("reading the CSR"))?;
        csr.params = client_params(cn, orgs, lifetime);
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(cert_err(&format!("signing a certificate for {cn:?}")))?;
        Ok(cert.pem())
    }

    /// The server's TLS configuration: chain [serving, CA] (a joining agent pins the CA it
    /// sees), client certificates optional and verified against the CA, HTTP/2.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Tls(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.serving_key_pem.as_bytes())
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.serving_chain.clone(), key)
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        // h2 for gRPC and Go clients, http/1.1 for REST clients that speak only it (Python).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The names a control plane listening on `listen` serves under: localhost, the loopback
/// addresses, the hostname, the listen address unless unspecified, and `extra` (`--tls-san`).
pub fn default_sans(listen: std::net::IpAddr, extra: &[String]) -> Vec<String> {
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            sans.push(h.to_string());
        }
    }
    if !listen.is_unspecified() {
        sans.push(listen.to_string());
    }
    sans.extend(extra.iter().cloned());
    sans
}
