//! One raw HTTP/1.1 request over TLS (ALPN `http/1.1`, `Connection: close`), as kubectl's
//! HTTP/1.1 paths and browsers send them: the status code, the header block and the body.
#![allow(dead_code)]

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response split into status code (0 when none came), header block and body.
pub struct Answer {
    pub code: u16,
    pub head: String,
    pub body: String,
}

/// Sends `request` (the whole text, head and body) with `creds` (a CA only, or a client
/// identity too) and reads until the server closes.
pub async fn send(
    addr: std::net::SocketAddr,
    creds: &corral_api::Credentials,
    request: &str,
) -> Answer {
    let mut config = (*corral_api::tls::client_config(creds, "test").unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        code,
        head: head.to_string(),
        body: body.to_string(),
    }
}
