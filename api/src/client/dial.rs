//! The connector tonic makes each new connection through: it tries the client's [`Servers`]
//! in their dial order, TCP and then (with a cluster CA) TLS from the swappable configuration,
//! each attempt bounded, and remembers the one that answered. A server that died costs the
//! calls that were on its connection; the next connection goes to another server.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::servers::{Servers, Target};
use crate::tls::{self, ConfigSlot, TlsError};

/// How long one server gets to accept a connection and finish its handshake when it is the
/// only one, and when others could be tried instead.
const ATTEMPT_ALONE: Duration = Duration::from_secs(3);
const ATTEMPT_OF_SEVERAL: Duration = Duration::from_secs(2);

/// A connection, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Dials the first server of [`Servers::candidates`] that answers.
#[derive(Clone)]
pub struct Dialer {
    servers: Servers,
    /// The TLS configuration slot and where its CA came from; `None` dials plaintext.
    tls: Option<(ConfigSlot, Arc<str>)>,
}

impl Dialer {
    pub fn new(servers: Servers, tls: Option<(ConfigSlot, &str)>) -> Self {
        Self {
            servers,
            tls: tls.map(|(slot, src)| (slot, src.into())),
        }
    }
}

async fn dial_one(
    target: &Target,
    tls: Option<&(ConfigSlot, Arc<str>)>,
) -> Result<Box<dyn Io>, TlsError> {
    let addr = format!("{}:{}", target.host, target.port);
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| TlsError::Tcp {
            addr,
            source: Arc::new(source),
        })?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Box::new(tcp)),
        Some((slot, src)) => {
            let config = slot.read().clone();
            let stream = tls::handshake(config, &target.host, target.port, tcp, src).await?;
            Ok(Box::new(stream))
        }
    }
}

impl tower::Service<http::Uri> for Dialer {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, TlsError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TlsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let candidates = this.servers.candidates();
            let attempt = if candidates.len() > 1 {
                ATTEMPT_OF_SEVERAL
            } else {
                ATTEMPT_ALONE
            };
            // The error to report when none answers: a TLS problem says more than a refusal.
            let mut worst: Option<TlsError> = None;
            for target in &candidates {
                let outcome = tokio::time::timeout(attempt, dial_one(target, this.tls.as_ref()))
                    .await
                    .unwrap_or_else(|_| {
                        Err(TlsError::Tcp {
                            addr: format!("{}:{}", target.host, target.port),
                            source: Arc::new(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("no answer within {attempt:?}"),
                            )),
                        })
                    });
                match outcome {
                    Ok(io) => {
                        this.servers.answered(target);
                        return Ok(TokioIo::new(io));
                    }
                    Err(e) => {
                        if candidates.len() > 1 {
                            tracing::warn!(server = %target.url, error = %e, "control plane did not answer; trying the next");
                        }
                        if worst.as_ref().is_none_or(|w| tcp_only(w) && !tcp_only(&e)) {
                            worst = Some(e);
                        }
                    }
                }
            }
            Err(worst.expect("a client has at least one server"))
        })
    }
}

fn tcp_only(e: &TlsError) -> bool {
    matches!(e, TlsError::Tcp { .. })
}
