//! CA pinning for a joining client, k3s's `/cacerts` step done inside the TLS handshake: take
//! the server's chain without trusting it, keep its last certificate (the CA), and compare its
//! SHA-256 with the hash a join token names. Nothing but a ClientHello is sent before the
//! caller has checked the hash; the secret leaves only on a connection verified with that CA.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncWriteExt;

use crate::token;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("server {server:?}: must be https://HOST:PORT")]
    BadServer { server: String },
    #[error("connecting to {server}: {source}")]
    Connect {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "TLS handshake with {server} failed (is it a Corral control plane serving TLS?): {source}"
    )]
    Handshake {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{server} presented no certificate")]
    NoCertificate { server: String },
    #[error(
        "the CA of {server} has hash {server_hash}, the token names {token_hash}: refusing to \
         send the token (wrong --server, a token from another cluster, or someone in between)"
    )]
    Mismatch {
        server: String,
        token_hash: String,
        server_hash: String,
    },
}

/// `https://HOST:PORT` → (`HOST`, `HOST:PORT`).
pub fn split_server(server: &str) -> Result<(String, String), PinError> {
    let bad = || PinError::BadServer {
        server: server.to_string(),
    };
    let rest = server.strip_prefix("https://").ok_or_else(bad)?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(bad());
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']').ok_or_else(bad)?.0.to_string()
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_string()
    };
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:443")
    };
    Ok((host, addr))
}

/// Accepts any chain: used only to read the chain, never to send anything that matters.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The DER of the last certificate of the chain `server` presents (its CA when it sends
/// `[leaf, CA]`, the certificate itself when self-signed). The connection is closed right
/// after the handshake: no application data is sent.
pub async fn fetch_ca(server: &str) -> Result<Vec<u8>, PinError> {
    let (host, addr) = split_server(server)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PinError::Handshake {
            server: server.to_string(),
            source: std::io::Error::other(e),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        .with_no_client_auth();
    let connect = |source| PinError::Connect {
        server: server.to_string(),
        source,
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| connect(std::io::ErrorKind::TimedOut.into()))?
        .map_err(connect)?;
    let name = ServerName::try_from(host).map_err(|_| PinError::BadServer {
        server: server.to_string(),
    })?;
    let handshake = |source| PinError::Handshake {
        server: server.to_string(),
        source,
    };
    let mut tls = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| handshake(std::io::ErrorKind::TimedOut.into()))?
    .map_err(handshake)?;
    let ca = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.last())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| PinError::NoCertificate {
            server: server.to_string(),
        })?;
    let _ = tls.shutdown().await;
    Ok(ca)
}

/// Checks the fetched CA against the hash a token names.
pub fn check(server: &str, token_hash: &str, ca_der: &[u8]) -> Result<(), PinError> {
    let server_hash = token::ca_hash(ca_der);
    if server_hash != token_hash {
        return Err(PinError::Mismatch {
            server: server.to_string(),
            token_hash: token_hash.to_string(),
            server_hash,
        });
    }
    Ok(())
}

/// DER of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body = pem
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)?
        .split("-----END CERTIFICATE-----")
        .next()?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// PEM of one DER certificate.
pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_split_into_host_and_address() {
        let table: &[(&str, Option<(&str, &str)>)] = &[
            ("https://10.0.0.1:7443", Some(("10.0.0.1", "10.0.0.1:7443"))),
            ("https://cp.lab:7443/", Some(("cp.lab", "cp.lab:7443"))),
            ("https://cp.lab", Some(("cp.lab", "cp.lab:443"))),
            ("https://[::1]:7443", Some(("::1", "[::1]:7443"))),
            ("http://10.0.0.1:7443", None),
            ("10.0.0.1:7443", None),
            ("https://", None),
            ("https://a/b", None),
        ];
        for (server, want) in table {
            let got = split_server(server).ok();
            let got = got.as_ref().map(|(h, a)| (h.as_str(), a.as_str()));
            assert_eq!(got, *want, "{server}");
        }
    }

    #[test]
    fn certificates_round_trip_between_der_and_pem() {
        let der = b"not really a certificate".to_vec();
        assert_eq!(pem_to_der(&der_to_pem(&der)), Some(der));
        assert_eq!(pem_to_der("junk"), None);
    }

    #[test]
    fn a_ca_with_another_hash_is_refused_naming_both_hashes() {
        let want = token::ca_hash(b"real");
        assert!(check("https://s:1", &want, b"real").is_ok());
        let err = check("https://s:1", &want, b"fake")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&want) && err.contains(&token::ca_hash(b"fake")),
            "{err}"
        );
    }
}
