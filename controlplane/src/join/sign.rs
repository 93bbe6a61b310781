//! Signing node CSRs: the [`CsrSigner`] seam the join service uses (the cluster's `Pki`
//! implements it), and the CSR's public key hash (the node identity record keeps it).

use std::time::Duration;

use rcgen::{CertificateSigningRequestParams, PublicKeyData};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("csr_pem: not a valid PKCS#10 request: {0}")]
    BadCsr(#[source] rcgen::Error),
    #[error("signing the certificate: {0}")]
    Sign(#[source] rcgen::Error),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
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

impl CsrSigner for crate::pki::Pki {
    fn sign_client(
        &self,
        csr_pem: &str,
        cn: &str,
        orgs: &[&str],
        lifetime: Duration,
    ) -> Result<String, SignError> {
        Ok(self.sign_csr(csr_pem, cn, orgs, lifetime)?)
    }

    fn ca_pem(&self) -> String {
        self.ca_cert_pem().to_string()
    }
}

pub use corral_api::pin::pem_to_der;
