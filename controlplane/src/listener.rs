//! The API's accepting side: at most `max_connections` connections open at once (the rest
//! wait in the kernel's backlog until one closes), and a new connection must send its first
//! bytes and finish its TLS handshake (its first byte says whether it speaks TLS) within
//! `handshake_timeout` or it is closed (and in that time say whether it speaks HTTP/1.1, see
//! [`Guarded::is_http1`]). Together with the
//! server's request timeout and HTTP/2 keep-alive, no client can hold the API by connecting
//! and saying nothing.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::net::SocketAddr;

use futures::{Stream, StreamExt};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;
use tracing::{debug, warn};

/// Limits on the API's connections and requests.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time a new connection has to send its first bytes.
    pub handshake_timeout: Duration,
    /// Time a request has to be answered (a watch or log stream counts as answered once its
    /// stream starts).
    pub request_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// What the server knows about a connection, in every request's extensions (tonic copies a
/// connection's `ConnectInfo` into each request): the peer's address, whether it spoke TLS,
/// and the client certificate chain the handshake verified against the cluster CA.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    pub tls: bool,
    /// Leaf first; `None` when the client presented no certificate.
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// The certificate's identity, read on the connection's first request.
    pub identity: crate::auth::authn::IdentityCache,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// A connection holding its slot until closed.
pub struct Guarded {
    inner: Io,
    info: ConnInfo,
    /// Bytes read to tell HTTP/1.1 from HTTP/2, handed out again before the stream's own.
    prefix: Vec<u8>,
    http1: bool,
    _slot: OwnedSemaphorePermit,
}

impl Guarded {
    /// Whether the connection speaks HTTP/1.1 (the REST API's upgrades are served on those).
    pub fn is_http1(&self) -> bool {
        self.http1
    }
}

impl Connected for Guarded {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return Poll::Ready(Ok(()));
        }
        match &mut self.inner {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.inner {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How HTTP/2's connection preface starts (no HTTP/1.1 method does).
const H2_PREFACE: &[u8] = b"PRI";

/// Whether a connection speaks HTTP/1.1, by its first bytes (read here and kept in
/// `prefix`): HTTP/2 opens with its preface. ALPN is not trusted for this: Go clients that
/// share one TLS config between HTTP/2 and a WebSocket dialer negotiate `h2`, then send an
/// HTTP/1.1 upgrade request.
async fn sniff(conn: &mut Guarded) -> io::Result<()> {
    let mut first = [0u8; 3];
    let mut got = 0;
    while got < first.len() {
        let n = conn.inner_read(&mut first[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    conn.prefix = first[..got].to_vec();
    conn.http1 = got == first.len() && first != H2_PREFACE;
    Ok(())
}

impl Guarded {
    async fn inner_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        match &mut self.inner {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
        }
    }
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Waits for the client's first byte, then (with `tls`, when that byte opens a TLS record)
/// completes the TLS handshake, all within `deadline`.
async fn handshake(
    tcp: TcpStream,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) -> io::Result<(Io, ConnInfo)> {
    let remote = tcp.peer_addr().ok();
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before speaking",
        ));
    }
    match tls {
        Some(acceptor) if first[0] == TLS_HANDSHAKE => {
            let stream = acceptor.accept(tcp).await?;
            let peer_certs = stream
                .get_ref()
                .1
                .peer_certificates()
                .filter(|c| !c.is_empty())
                .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()));
            let info = ConnInfo {
                remote,
                tls: true,
                peer_certs,
                identity: Default::default(),
            };
            Ok((Io::Tls(Box::new(stream)), info))
        }
        _ => Ok((
            Io::Plain(tcp),
            ConnInfo {
                remote,
                tls: false,
                ..Default::default()
            },
        )),
    }
}

/// Accepted connections under `limits`: a connection is accepted only when a slot is free,
/// and handed to the server once it has spoken (and, with `tls`, finished its handshake)
/// within the handshake timeout. Handshakes run side by side, so a slow client delays only
/// itself.
pub fn incoming(
    listener: TcpListener,
    limits: &ServeLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> impl Stream<Item = io::Result<Guarded>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let timeout = limits.handshake_timeout;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (tx, rx) = tokio::sync::mpsc::channel::<Guarded>(64);
    tokio::spawn(async move {
        loop {
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => return },
                _ = tx.closed() => return,
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            match accepted {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    let tx = tx.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let accept = async {
                            let (inner, info) = handshake(tcp, acceptor.as_ref()).await?;
                            let mut conn = Guarded {
                                inner,
                                info,
                                prefix: Vec::new(),
                                http1: false,
                                _slot: slot,
                            };
                            sniff(&mut conn).await?;
                            Ok::<_, io::Error>(conn)
                        };
                        match tokio::time::timeout(timeout, accept).await {
                            Ok(Ok(conn)) => {
                                let _ = tx.send(conn).await;
                            }
                            Ok(Err(e)) => debug!(error = %e, "connection closed during handshake"),
                            Err(_) => debug!("connection closed: no handshake in time"),
                        }
                    });
                }
                // Out of descriptors and the like: wait a moment rather than spin or stop.
                Err(e) => {
                    drop(slot);
                    warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok)
}
