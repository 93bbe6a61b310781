//! Joining over real TLS: the CA is pinned before the token leaves the host (servers that
//! record what they receive prove it), nothing is written on a refused join, and a node
//! certificate with a short lifetime is renewed; against a control plane over TLS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corral_agent::credentials;
use corral_agent::join::{self, JoinError};
use corral_api::pin::PinError;
use corral_api::token::Token;
use corral_controlplane::auth::tokens::AGENT_TOKEN_FILE;
use parking_lot::Mutex;
use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::AsyncReadExt;

/// A CA and its key, written where the control plane keeps them.
fn write_ca(dir: &std::path::Path) -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "test-ca");
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = params.self_signed(&key).unwrap().pem();
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    std::fs::write(dir.join("tls/ca.crt"), &ca_pem).unwrap();
    std::fs::write(dir.join("tls/ca.key"), key.serialize_pem()).unwrap();
    (ca_pem, key)
}

/// A serving certificate for 127.0.0.1 signed by the CA: (chain PEM [leaf, CA], key PEM).
fn serving(ca_pem: &str, ca_key: &KeyPair) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()]).unwrap();
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).unwrap();
    let leaf = params.signed_by(&key, &issuer).unwrap().pem();
    (format!("{leaf}{ca_pem}"), key.serialize_pem())
}

struct Cluster {
    _cp_dir: tempfile::TempDir,
    cp: corral_controlplane::Running,
    server: String,
    agent_token: Token,
}

/// A control plane over TLS (its CA, agent token and Join service), node certificates
/// issued for `lifetime`.
async fn cluster(lifetime: Duration) -> Cluster {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = corral_controlplane::start(corral_controlplane::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: cp_dir.path().to_path_buf(),
        controllers: false,
        node_cert_lifetime: lifetime,
        ..Default::default()
    })
    .await
    .unwrap();
    let agent_token =
        Token::parse(&std::fs::read_to_string(cp_dir.path().join(AGENT_TOKEN_FILE)).unwrap())
            .unwrap();
    let server = cp.url();
    Cluster {
        _cp_dir: cp_dir,
        cp,
        server,
        agent_token,
    }
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A TLS server with its own CA that records every byte it receives after the handshake.
async fn recording_tls_server() -> Recorder {
    let (ca_pem, ca_key) = write_ca(tempfile::tempdir().unwrap().path());
    let (chain, key) = serving(&ca_pem, &ca_key);
    let certs: Vec<_> = rustls_pemfile_certs(&chain);
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
        KeyPair::from_pem(&key).unwrap().serialize_der().into(),
    );
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    // Speak HTTP/2 as the control plane does, so a client that skipped the pin would go on
    // to send its request (and the token) here.
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    recording_server(Some(acceptor)).await
}

fn rustls_pemfile_certs(chain: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
        .map(Result::unwrap)
        .collect()
}

/// A plain TCP server that records every byte it receives.
async fn recording_tcp_server() -> Recorder {
    recording_server(None).await
}

/// Records every byte each connection sends (after a TLS handshake when `tls` is given),
/// answering nothing; a plain connection idle for 500 ms is done (a client waiting for a
/// ServerHello would wait forever).
async fn recording_server(tls: Option<tokio_rustls::TlsAcceptor>) -> Recorder {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let recorder = Recorder {
        server,
        ..Default::default()
    };
    let (rec, finished) = (recorder.bytes.clone(), recorder.finished.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = tls.clone();
            let (rec, finished) = (rec.clone(), finished.clone());
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            record(stream, &rec, None).await;
                        }
                    }
                    None => record(tcp, &rec, Some(Duration::from_millis(500))).await,
                }
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    recorder
}

/// Appends what `stream` sends to `rec` until it ends (or is idle for `idle`).
async fn record(
    mut stream: impl tokio::io::AsyncRead + Unpin,
    rec: &Mutex<Vec<u8>>,
    idle: Option<Duration>,
) {
    let mut buf = [0u8; 4096];
    loop {
        let read = stream.read(&mut buf);
        let n = match idle {
            Some(idle) => match tokio::time::timeout(idle, read).await {
                Ok(Ok(n)) => n,
                _ => return,
            },
            None => match read.await {
                Ok(n) => n,
                Err(_) => return,
            },
        };
        if n == 0 {
            return;
        }
        rec.lock().extend_from_slice(&buf[..n]);
    }
}

#[derive(Default)]
struct Recorder {
    server: String,
    bytes: Arc<Mutex<Vec<u8>>>,
    /// Connections the server has finished reading.
    finished: Arc<AtomicUsize>,
}

impl Recorder {
    /// Waits until the server has read every connection to its end.
    async fn wait_finished(&self, connections: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.finished.load(Ordering::SeqCst) < connections {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the recording server finished reading");
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_token_naming_another_ca_is_refused_before_the_secret_leaves_the_host() {
    let real = tempfile::tempdir().unwrap();
    let (real_ca, _) = write_ca(real.path());
    let real_der = corral_api::pin::pem_to_der(&real_ca).unwrap();
    let token = Token::generate(Some(&real_der));
    let tls = recording_tls_server().await;
    let tcp = recording_tcp_server().await;
    let data_dir = tempfile::tempdir().unwrap();

    let tls_err = join::join(&tls.server, &token, "n1", data_dir.path()).await;
    let tcp_err = join::join(&tcp.server, &token, "n1", data_dir.path()).await;

    // Once the servers have read everything sent, look for the token in it.
    for (what, rec) in [("TLS", &tls), ("TCP", &tcp)] {
        rec.wait_finished(1).await;
        let rec = rec.bytes.lock();
        assert!(
            !contains(&rec, &token.secret),
            "{what} server received the secret"
        );
        assert!(
            !contains(&rec, &token.id),
            "{what} server received the token id"
        );
    }
    assert!(
        !tcp.bytes.lock().is_empty(),
        "the TCP recorder saw the ClientHello"
    );
    // Stronger than looking for the secret (HPACK may Huffman-code it): nothing at all was
    // sent after the TLS handshake.
    assert!(
        tls.bytes.lock().is_empty(),
        "no application data after the handshake"
    );
    assert!(
        files_in(data_dir.path()).is_empty(),
        "a refused join writes nothing"
    );

    let err = tls_err.unwrap_err();
    match &err {
        JoinError::Pin(PinError::Mismatch {
            token_hash,
            server_hash,
            ..
        }) => {
            assert_eq!(Some(token_hash), token.ca_hash.as_ref());
            assert_ne!(token_hash, server_hash);
        }
        other => panic!("expected a CA hash mismatch, got {other:?}"),
    }
    let line = err.to_string();
    assert!(
        !line.contains('\n') && !line.contains(&token.secret),
        "{line}"
    );
    let err = tcp_err.unwrap_err();
    assert!(
        matches!(err, JoinError::Pin(PinError::Handshake { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_agent_joins_with_the_default_token_and_gets_its_node_identity() {
    let c = cluster(Duration::from_secs(365 * 86_400)).await;
    let data_dir = tempfile::tempdir().unwrap();
    let creds = join::ensure(&c.server, Some(&c.agent_token), "n1", data_dir.path())
        .await
        .unwrap();
    let info = credentials::cert_info(&creds.cert_pem).unwrap();
    assert_eq!(info.common_name, "system:node:n1");
    // The files are there, private, and what a restart uses without the token.
    use std::os::unix::fs::PermissionsExt;
    for f in ["kubeconfig", "tls/node.key"] {
        let mode = std::fs::metadata(data_dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let again = join::ensure(&c.server, None, "n1", data_dir.path())
        .await
        .unwrap();
    assert_eq!(again, creds);

    // Another host with its own key claiming the name of a live node is told how to fix it.
    let node = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
    c.cp.registry
        .create(&corral_api::kinds::NODES, "", node, false)
        .await
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let err = join::join(&c.server, &c.agent_token, "n1", other.path())
        .await
        .unwrap_err();
    let line = err.to_string();
    assert!(
        line.contains("corral delete node n1") && !line.contains('\n'),
        "{line}"
    );
    assert!(files_in(other.path()).is_empty());

    // A wrong secret with the right CA hash: refused by the server, nothing written.
    let mut wrong = c.agent_token.clone();
    wrong.secret = "x".repeat(16);
    let err = join::join(&c.server, &wrong, "n2", other.path())
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("not valid"), "{err}");
    assert!(files_in(other.path()).is_empty());

    // The short form (no CA hash) joins with a warning.
    let mut short = c.agent_token.clone();
    short.ca_hash = None;
    join::join(&c.server, &short, "n2", other.path())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_short_lived_node_certificate_is_renewed_with_a_new_key() {
    let c = cluster(Duration::from_secs(6)).await;
    let data_dir = tempfile::tempdir().unwrap();
    let first = join::ensure(&c.server, Some(&c.agent_token), "n1", data_dir.path())
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let renewal = tokio::spawn(join::renew_forever(
        "n1".into(),
        data_dir.path().to_path_buf(),
        move |creds| {
            let _ = tx.send(creds.clone());
        },
    ));
    let renewed = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("renewed within 30 s")
        .unwrap();
    renewal.abort();
    assert_ne!(renewed.key_pem, first.key_pem);
    let (old, new) = (
        credentials::cert_info(&first.cert_pem).unwrap(),
        credentials::cert_info(&renewed.cert_pem).unwrap(),
    );
    assert_eq!(new.common_name, "system:node:n1");
    assert!(new.not_after > old.not_after);
    // What is on disk is the renewed set.
    assert_eq!(credentials::load(data_dir.path()).unwrap(), Some(renewed));
}
