//! The node's credentials on disk: `DATA_DIR/kubeconfig` (0600) is the one source of truth,
//! written by a single atomic rename so a crash never leaves a certificate without its key;
//! `DATA_DIR/tls/{ca.crt,node.crt,node.key}` are copies for other tools. Also reads a
//! certificate's validity, which the join planner decides on.

use std::path::{Path, PathBuf};

pub const KUBECONFIG: &str = "kubeconfig";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}: remove it and join again with --token")]
    Malformed { path: PathBuf, detail: String },
}

/// A node's certificate, key and cluster CA (all PEM), and the server they are for.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeCredentials {
    pub server: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("server", &self.server)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl NodeCredentials {
    pub fn to_credentials(&self) -> corral_api::credentials::Credentials {
        corral_api::credentials::Credentials {
            ca_pem: Some(self.ca_pem.clone().into_bytes()),
            identity: Some((
                self.cert_pem.clone().into_bytes(),
                self.key_pem.clone().into_bytes(),
            )),
            token: None,
        }
    }

    /// The kubeconfig (`corral_api::kubeconfig::load` and kubectl read it).
    pub fn kubeconfig(&self, node_name: &str) -> String {
        let name = format!("system:node:{node_name}");
        corral_api::kubeconfig::inline(&name, &self.server, &self.to_credentials(), None).to_yaml()
    }
}

/// Reads `DATA_DIR/kubeconfig` (through the one kubeconfig reader); `Ok(None)` when there
/// is none.
pub fn load(data_dir: &Path) -> Result<Option<NodeCredentials>, CredentialsError> {
    let path = data_dir.join(KUBECONFIG);
    if !path.exists() {
        return Ok(None);
    }
    let bad = |detail: String| CredentialsError::Malformed {
        path: path.clone(),
        detail,
    };
    let (server, creds) = corral_api::kubeconfig::load(&path).map_err(|e| bad(e.to_string()))?;
    let text = |b: Vec<u8>, what: &str| {
        String::from_utf8(b).map_err(|_| bad(format!("{what} is not PEM text")))
    };
    let (cert, key) = creds
        .identity
        .ok_or_else(|| bad("no client-certificate-data and client-key-data".into()))?;
    Ok(Some(NodeCredentials {
        server,
        ca_pem: text(
            creds
                .ca_pem
                .ok_or_else(|| bad("no certificate-authority-data".into()))?,
            "certificate-authority-data",
        )?,
        cert_pem: text(cert, "client-certificate-data")?,
        key_pem: text(key, "client-key-data")?,
    }))
}

/// Writes the kubeconfig (the commit point: one rename), then the PEM copies.
pub fn store(
    data_dir: &Path,
    node_name: &str,
    creds: &NodeCredentials,
) -> Result<(), CredentialsError> {
    write_private(
        &data_dir.join(KUBECONFIG),
        creds.kubeconfig(node_name).as_bytes(),
    )?;
    let tls = data_dir.join("tls");
    std::fs::create_dir_all(&tls).map_err(|source| CredentialsError::Write {
        path: tls.clone(),
        source,
    })?;
    write_private(&tls.join("ca.crt"), creds.ca_pem.as_bytes())?;
    write_private(&tls.join("node.crt"), creds.cert_pem.as_bytes())?;
    write_private(&tls.join("node.key"), creds.key_pem.as_bytes())?;
    Ok(())
}

/// Temporary file (0600) in the same directory, fsync, rename.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), CredentialsError> {
    corral_api::files::write_private(path, contents).map_err(|source| CredentialsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A certificate's validity window (Unix seconds) and subject common name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: i64,
    pub not_after: i64,
    pub common_name: String,
}

pub fn cert_info(pem: &str) -> Option<CertInfo> {
    use x509_parser::prelude::*;
    let (_, pem) = parse_x509_pem(pem.as_bytes()).ok()?;
    let (_, cert) = X509Certificate::from_der(&pem.contents).ok()?;
    Some(CertInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        common_name: cert
            .subject()
            .iter_common_name()
            .filter_map(|c| c.as_str().ok())
            .collect(),
    })
}
