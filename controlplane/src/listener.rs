//! The API's accepting side: at most `max_connections` connections open at once (the rest
//! wait in the kernel's backlog until one closes), and a new connection must send its first
//! bytes (the HTTP/2 preface) within `handshake_timeout` or it is closed. Together with the
//! server's request timeout and HTTP/2 keep-alive, no client can hold the API by connecting
//! and saying nothing.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Future, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};
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

/// A connection holding its slot until closed, and its handshake deadline until the client
/// has spoken.
pub struct Guarded {
    inner: TcpStream,
    _slot: OwnedSemaphorePermit,
    handshake: Option<Pin<Box<Sleep>>>,
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.handshake.is_some() {
            if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                self.handshake = None;
            } else if let Some(deadline) = self.handshake.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    debug!("connection closed: no handshake in time");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no handshake in time",
                    )));
                }
            }
        }
        read
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepted connections under `limits`: a connection is accepted only when a slot is free.
pub fn incoming(
    listener: TcpListener,
    limits: &ServeLimits,
) -> impl Stream<Item = io::Result<Guarded>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let handshake = limits.handshake_timeout;
    futures::stream::unfold((listener, slots), move |(listener, slots)| async move {
        let slot = slots.clone().acquire_owned().await.ok()?;
        loop {
            match listener.accept().await {
                Ok((inner, _)) => {
                    let _ = inner.set_nodelay(true);
                    let conn = Guarded {
                        inner,
                        _slot: slot,
                        handshake: Some(Box::pin(tokio::time::sleep(handshake))),
                    };
                    return Some((Ok(conn), (listener, slots)));
                }
                // Out of descriptors and the like: wait a moment rather than spin or stop.
                Err(e) => {
                    warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}
