//! What a client presents and trusts, in one place for every component: the cluster CA it
//! verifies the server with, its own certificate and key, and a bearer token. Loaded from a
//! kubeconfig's fields (`certificate-authority-data`, `client-certificate-data`,
//! `client-key-data`, `token`) or built by a joining agent.

/// A client's credentials. `ca_pem: None` means plaintext `http://` (only against a control
/// plane started with its explicit plaintext flag).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// PEM of the CA certificate(s) the server's chain must lead to.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate chain and PEM private key presented as the client's identity.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Sent as `authorization: Bearer <token>` on every request.
    pub token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("ca", &self.ca_pem.is_some())
            .field("identity", &self.identity.is_some())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
