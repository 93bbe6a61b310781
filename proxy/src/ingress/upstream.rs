//! Keep-alive HTTP/1.1 connections to pods, per endpoint, owned by one Ingress worker thread.
//! A connection goes back to the pool when the response body it carried has been read to its
//! end (done in the body's `Drop`, so no task is spawned per request); idle connections are
//! dropped after one to two sweep periods, closed ones at checkout or sweep. An endpoint that
//! refused a connection is passed over for `FAIL_TIMEOUT` while others are available.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

/// The body sent upstream: the client's, or nothing (requests without a body, and replays).
pub type UpBody = Either<Incoming, Empty<Bytes>>;
pub type Sender = SendRequest<UpBody>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection whose readiness is pending this long at checkout is given up.
const READY_TIMEOUT: Duration = Duration::from_millis(500);
/// Idle connections kept per endpoint; more are closed.
const MAX_IDLE_PER_ENDPOINT: usize = 256;
/// How long an endpoint that refused a connection is passed over (nginx's `fail_timeout`).
const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

struct Idle {
    sender: Sender,
    epoch: u32,
}

#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddrV4, Vec<Idle>>>,
    /// Bumped by every sweep; an idle connection older than the previous epoch is closed.
    epoch: AtomicU32,
    /// Endpoints that failed to connect, until when they are passed over; `down_count`
    /// keeps the usual case (none) to one atomic load per request.
    down: Mutex<HashMap<SocketAddrV4, Instant>>,
    down_count: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {0}: timed out")]
    Timeout(SocketAddrV4),
    #[error("connecting to {addr}: {source}")]
    Io {
        addr: SocketAddrV4,
        #[source]
        source: std::io::Error,
    },
    #[error("http handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddrV4,
        #[source]
        source: hyper::Error,
    },
}

impl Pool {
    /// A ready connection to `ep`: an idle one if there is one (`reused`), else a new one.
    pub async fn get(&self, ep: SocketAddrV4) -> Result<(Sender, bool), ConnectError> {
        while let Some(mut idle) = self.take(ep) {
            if idle.is_closed() {
                continue;
            }
            if idle.is_ready() {
                return Ok((idle, true));
            }
            // Returned as soon as its response body ended: the connection task has not
            // caught up yet. It will within a scheduling round, or it is dropped.
            if let Ok(Ok(())) = tokio::time::timeout(READY_TIMEOUT, idle.ready()).await {
                return Ok((idle, true));
            }
        }
        let sender = connect(ep).await?;
        self.mark_up(ep);
        Ok((sender, false))
    }

    /// Whether `ep` refused a connection less than `FAIL_TIMEOUT` ago.
    pub fn is_down(&self, ep: SocketAddrV4) -> bool {
        if self.down_count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let mut down = self.down.lock();
        match down.get(&ep) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                down.remove(&ep);
                self.down_count.store(down.len(), Ordering::Relaxed);
                false
            }
            None => false,
        }
    }

    pub fn mark_down(&self, ep: SocketAddrV4) {
        let mut down = self.down.lock();
        down.insert(ep, Instant::now() + FAIL_TIMEOUT);
        self.down_count.store(down.len(), Ordering::Relaxed);
    }

    fn mark_up(&self, ep: SocketAddrV4) {
        if self.down_count.load(Ordering::Relaxed) > 0 {
            let mut down = self.down.lock();
            down.remove(&ep);
            self.down_count.store(down.len(), Ordering::Relaxed);
        }
    }

    fn take(&self, ep: SocketAddrV4) -> Option<Sender> {
        self.idle
            .lock()
            .get_mut(&ep)
            .and_then(Vec::pop)
            .map(|i| i.sender)
    }

    fn put(&self, ep: SocketAddrV4, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let epoch = self.epoch.load(Ordering::Relaxed);
        let mut idle = self.idle.lock();
        let list = idle.entry(ep).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(Idle { sender, epoch });
        }
    }

    /// Drops closed connections and those idle since before the previous sweep; call it
    /// periodically (the idle timeout is between one and two periods).
    pub fn sweep(&self) {
        let now = self.epoch.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let mut idle = self.idle.lock();
        for list in idle.values_mut() {
            list.retain(|i| !i.sender.is_closed() && now.wrapping_sub(i.epoch) <= 1);
        }
        idle.retain(|_, list| !list.is_empty());
        drop(idle);
        let mut down = self.down.lock();
        let now = Instant::now();
        down.retain(|_, until| *until > now);
        self.down_count.store(down.len(), Ordering::Relaxed);
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().values().map(Vec::len).sum()
    }
}

async fn connect(ep: SocketAddrV4) -> Result<Sender, ConnectError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(SocketAddr::V4(ep)))
        .await
        .map_err(|_| ConnectError::Timeout(ep))?
        .map_err(|source| ConnectError::Io { addr: ep, source })?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake { addr: ep, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(endpoint = %ep, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// The body of a response to the client: an endpoint's (returning its connection to the pool
/// once read to the end) or one the proxy wrote itself.
pub enum ProxyBody {
    Upstream(Upstream),
    Local(Full<Bytes>),
}

pub struct Upstream {
    body: Incoming,
    /// Polled to `None` (chunked bodies do not know their end before that).
    done: bool,
    back: Option<(Arc<Pool>, SocketAddrV4, Sender)>,
}

impl ProxyBody {
    pub fn upstream(body: Incoming, pool: Arc<Pool>, ep: SocketAddrV4, sender: Sender) -> Self {
        ProxyBody::Upstream(Upstream {
            body,
            done: false,
            back: Some((pool, ep, sender)),
        })
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // A body dropped before its end makes hyper close the connection: not reusable.
        if self.done || self.body.is_end_stream() {
            if let Some((pool, ep, sender)) = self.back.take() {
                pool.put(ep, sender);
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(u) => {
                let frame = std::task::ready!(Pin::new(&mut u.body).poll_frame(cx));
                if frame.is_none() {
                    u.done = true;
                }
                Poll::Ready(frame)
            }
            ProxyBody::Local(f) => Pin::new(f).poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(u) => u.done || u.body.is_end_stream(),
            ProxyBody::Local(f) => f.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(u) => u.body.size_hint(),
            ProxyBody::Local(f) => f.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A one-connection-at-a-time HTTP server answering `ok` on 127.0.0.1; returns its address
    /// and a counter of accepted connections.
    async fn server() -> (SocketAddrV4, Arc<AtomicU32>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let SocketAddr::V4(addr) = l.local_addr().unwrap() else {
            unreachable!("bound to an IPv4 address")
        };
        let accepted = Arc::new(AtomicU32::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    async fn get(pool: &Arc<Pool>, ep: SocketAddrV4) -> bool {
        let (mut s, reused) = pool.get(ep).await.unwrap();
        let req = http::Request::get("/")
            .header(http::header::HOST, "x")
            .body(Either::Right(Empty::new()))
            .unwrap();
        let resp = s.send_request(req).await.unwrap();
        let body = ProxyBody::upstream(resp.into_body(), pool.clone(), ep, s);
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"ok");
        reused
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_was_read() {
        let (ep, accepted) = server().await;
        let pool = Arc::new(Pool::default());
        assert!(!get(&pool, ep).await);
        for _ in 0..5 {
            assert!(get(&pool, ep).await);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_does_not_return_the_connection() {
        let (ep, _) = server().await;
        let pool = Arc::new(Pool::default());
        let (mut s, _) = pool.get(ep).await.unwrap();
        let req = http::Request::get("/")
            .header(http::header::HOST, "x")
            .body(Either::Right(Empty::new()))
            .unwrap();
        let resp = s.send_request(req).await.unwrap();
        drop(ProxyBody::upstream(resp.into_body(), pool.clone(), ep, s));
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn idle_connections_are_dropped_after_two_sweeps() {
        let (ep, _) = server().await;
        let pool = Arc::new(Pool::default());
        get(&pool, ep).await;
        pool.sweep();
        assert_eq!(pool.idle_count(), 1, "idle for less than a period");
        pool.sweep();
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(ep) = l.local_addr().unwrap() else {
            unreachable!("bound to an IPv4 address")
        };
        drop(l);
        let pool = Pool::default();
        assert!(matches!(pool.get(ep).await, Err(ConnectError::Io { .. })));
    }

    #[tokio::test]
    async fn an_endpoint_marked_down_is_up_again_once_a_connection_succeeds() {
        let (ep, _) = server().await;
        let pool = Arc::new(Pool::default());
        assert!(!pool.is_down(ep));
        pool.mark_down(ep);
        assert!(pool.is_down(ep));
        pool.get(ep).await.unwrap();
        assert!(!pool.is_down(ep));
    }
}
