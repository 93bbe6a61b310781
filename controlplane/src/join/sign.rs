//! Signing node CSRs: the [`CsrSigner`] seam the join service uses, the CSR's public key
//! hash (the node identity record keeps it), and a stand-in cluster CA until the tls
//! helper's PKI is merged.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use sha2::{Digest, Sha256};

/// Certificates are dated this far back, so a node whose clock is a little behind accepts
/// them (Kubernetes' CSR signer backdates by 5 minutes too); at most a tenth of a short
/// lifetime, or a test's certificate would be due for renewal as soon as it is issued.
const BACKDATE: Duration = Duration::from_secs(300);

fn backdate(lifetime: Duration) -> Duration {
    BACKDATE.min(lifetime / 10)
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("csr_pem: not a valid PKCS#10 request: {0}")]
    BadCsr(#[source] rcgen::Error),
    #[error("signing the certificate: {0}")]
    Sign(#[source] rcgen::Error),
    #[error("cluster CA in {path}: {detail}")]
    Ca { path: String, detail: String },
}

/// Signs a client certificate for a CSR's public key, ignoring the subject it asks for.
pub trait CsrSigner: Send + Sync {
    fn sign_client(
        &self,
        csr_pem: &str,
        cn: &str,
        orgs: &[&str],
        lifetime: Duration,
    ) -> Result<String, SignError>;
    /// PEM of the cluster CA.
    fn ca_pem(&self) -> String;
}

/// SHA-256 hex of a CSR's public key (after checking the CSR's signature).
pub fn csr_key_hash(csr_pem: &str) -> Result<String, SignError> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(SignError::BadCsr)?;
    Ok(hex::encode(Sha256::digest(csr.public_key.der_bytes())))
}

/// Client-certificate parameters: subject from the server's decision only.
pub fn client_params(cn: &str, orgs: &[&str], lifetime: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - backdate(lifetime);
    params.not_after = now + lifetime;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let serial: [u8; 16] = rand::random();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial[..]));
    params
}

// MERGE: replace with tls helper's Pki (controlplane/src/pki/): `impl CsrSigner for Pki`
// through `Pki::sign_client`, and drop this stand-in CA.
pub struct LocalCa {
    ca_pem: String,
    key: KeyPair,
}

impl LocalCa {
    /// Loads `DIR/tls/ca.{crt,key}`, making a 10-year CA there when absent (key 0600).
    pub fn load_or_create(data_dir: &Path) -> Result<Self, SignError> {
        let dir = data_dir.join("tls");
        let crt = dir.join("ca.crt");
        let key = dir.join("ca.key");
        let ca_err = |detail: String| SignError::Ca {
            path: dir.display().to_string(),
            detail,
        };
        if crt.exists() {
            let ca_pem = std::fs::read_to_string(&crt).map_err(|e| ca_err(e.to_string()))?;
            let key_pem = std::fs::read_to_string(&key).map_err(|e| ca_err(e.to_string()))?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| ca_err(e.to_string()))?;
            return Ok(Self { ca_pem, key });
        }
        let ca = Self::generate().map_err(SignError::Sign)?;
        std::fs::create_dir_all(&dir).map_err(|e| ca_err(e.to_string()))?;
        crate::auth::tokens::write_private(&key, ca.key.serialize_pem().as_bytes())
            .map_err(|e| ca_err(e.to_string()))?;
        std::fs::write(&crt, &ca.ca_pem).map_err(|e| ca_err(e.to_string()))?;
        Ok(ca)
    }

    /// A new CA in memory (tests).
    pub fn generate() -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "corral-ca");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::from_secs(10 * 365 * 86_400);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            ca_pem: cert.pem(),
            key,
        })
    }

    /// DER of the CA certificate (what a join token's hash names).
    pub fn ca_der(&self) -> Vec<u8> {
        pem_to_der(&self.ca_pem).expect("the CA PEM was written by us")
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

impl CsrSigner for LocalCa {
    fn sign_client(
        &self,
        csr_pem: &str,
        cn: &str,
        orgs: &[&str],
        lifetime: Duration,
    ) -> Result<String, SignError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(SignError::BadCsr)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_pem, &self.key).map_err(SignError::Sign)?;
        let cert = client_params(cn, orgs, lifetime)
            .signed_by(&csr.public_key, &issuer)
            .map_err(SignError::Sign)?;
        Ok(cert.pem())
    }

    fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }
}

pub use corral_api::pin::pem_to_der;
