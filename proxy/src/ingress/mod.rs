//! The Ingress data path: an HTTP/1.1 reverse proxy that looks each request up in the current
//! route table and forwards it straight to a ready pod (round robin), over keep-alive
//! connections pooled per worker thread. 404 when no rule matches, 503 when the backend has
//! no ready endpoint, 502 when no endpoint could answer (after retrying the next endpoints
//! where `retry` allows it).
//!
//! Workers are threads with a single-threaded Tokio runtime each, accepting from the same
//! listening socket: a request's server, client and connection tasks then run on one thread,
//! with no cross-thread wake-ups, no work stealing and no shared pool lock.

pub mod class;
pub mod retry;
pub mod routes;
pub mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::RwLock;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use retry::Failure;
use routes::RouteTable;
use upstream::{Pool, ProxyBody, UpBody};

/// The route table the workers read; the sync loop swaps in a new one on every change.
pub type SharedRoutes = Arc<RwLock<Arc<RouteTable>>>;

/// Attempts per request, each on the next endpoint of the rotation.
const MAX_ATTEMPTS: usize = 3;
/// How often a worker drops idle upstream connections (idle timeout: one to two periods).
const POOL_SWEEP: Duration = Duration::from_secs(30);

/// What one worker allows a client, as nginx bounds it: how long the request headers may
/// take to arrive (`client_header_timeout`, 60 s) and how many connections it holds at once
/// (ingress-nginx's `worker_connections`, 16,384); past the cap it stops accepting until a
/// connection ends, so a flood waits in the kernel's backlog instead of eating memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(60),
            max_connections: 16_384,
        }
    }
}

struct Worker {
    routes: SharedRoutes,
    pool: Arc<Pool>,
}

fn local(status: StatusCode, text: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::Local(Full::new(text.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for h in HOP_BY_HOP.iter() {
        headers.remove(h);
    }
}

/// `n` listening sockets on `addr` sharing the port (SO_REUSEPORT), so that the kernel spreads
/// connections evenly over the workers; ingress-nginx enables `reuseport` for the same reason.
/// Must be called inside a Tokio runtime; the sockets are handed over deregistered.
pub fn bind(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    (0..n.max(1))
        .map(|_| {
            let socket = match addr {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.set_nodelay(true)?;
            socket.bind(addr)?;
            socket.listen(1024)?.into_std()
        })
        .collect()
}

/// One worker thread per listener, each with its own single-threaded runtime and upstream
/// pool, serving until `stop` turns true (or its sender is dropped).
pub fn spawn_workers(
    listeners: Vec<std::net::TcpListener>,
    routes: SharedRoutes,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let (routes, stop) = (routes.clone(), stop.clone());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("ingress-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        match TcpListener::from_std(listener) {
                            Ok(l) => serve(l, routes, stop).await,
                            Err(e) => tracing::error!(error = %e, "ingress worker cannot listen"),
                        }
                    })
                })
        })
        .collect()
}

/// Serves on the current runtime until `stop` turns true (or its sender is dropped).
pub async fn serve(listener: TcpListener, routes: SharedRoutes, stop: watch::Receiver<bool>) {
    serve_with(listener, routes, stop, Limits::default()).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: TcpListener,
    routes: SharedRoutes,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let pool = Arc::new(Pool::default());
    let sweeper = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(POOL_SWEEP);
            loop {
                every.tick().await;
                pool.sweep();
            }
        })
    };
    let worker = Arc::new(Worker { routes, pool });
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            r = stop.wait_for(|s| *s) => {
                let _ = r;
                break;
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            r = stop.wait_for(|s| *s) => {
                let _ = r;
                break;
            }
        };
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "ingress accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let worker = worker.clone();
        tokio::spawn(async move {
            // Computed once per connection, not per request.
            let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
                .expect("an IP address is a valid header value");
            let svc = service_fn(move |req| {
                let (worker, peer_ip) = (worker.clone(), peer_ip.clone());
                async move { Ok::<_, Infallible>(handle(&worker, req, peer_ip).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(peer = %peer, error = %e, "ingress connection ended");
            }
            drop(slot);
        });
    }
    sweeper.abort();
}

/// Answers one request and counts it by the rule host it matched and its code.
async fn handle(w: &Worker, req: Request<Incoming>, peer_ip: HeaderValue) -> Response<ProxyBody> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or_default();
    let rule_host = w.routes.read().rule_host(host);
    let response = respond(w, req, peer_ip).await;
    crate::metrics::global().ingress_request(&rule_host, response.status().as_u16());
    response
}

async fn respond(w: &Worker, req: Request<Incoming>, peer_ip: HeaderValue) -> Response<ProxyBody> {
    let host_header = req.headers().get(header::HOST);
    let host = host_header
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or_default();
    let backend = w.routes.read().route(host, req.uri().path()).cloned();
    let Some(backend) = backend else {
        return local(
            StatusCode::NOT_FOUND,
            "404 page not found: no ingress rule matches\n",
        );
    };
    let Some(first) = backend.turn() else {
        return local(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "503 service unavailable: {} has no ready endpoint\n",
                backend.name
            ),
        );
    };
    let forwarded_host = match host_header {
        Some(h) => Some(h.clone()),
        None => HeaderValue::from_str(host).ok(),
    };
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let chain = match parts.headers.get(X_FORWARDED_FOR) {
        Some(prior) => {
            let mut v = prior.as_bytes().to_vec();
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer_ip.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or(peer_ip)
        }
        None => peer_ip,
    };
    parts.headers.insert(X_FORWARDED_FOR, chain);
    if let Some(h) = forwarded_host {
        parts.headers.insert(X_FORWARDED_HOST, h);
    }
    parts
        .headers
        .insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    // Pods get origin-form targets over HTTP/1.1 (keep-alive), whatever the client spoke.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(pq);
    }
    parts.version = Version::HTTP_11;

    let has_body = !body.is_end_stream();
    let method = parts.method.clone();
    // A copy of the head, to replay a request without body that was written to a connection
    // that then failed. Requests with a body are only re-sent when hyper hands them back.
    let replayable = (!has_body && retry::idempotent(&method)).then(|| parts.clone());
    let body: UpBody = if has_body {
        Either::Left(body)
    } else {
        Either::Right(Empty::new())
    };
    let mut next = Some(Request::from_parts(parts, body));
    let n = backend.endpoints.len();
    let mut last_err = String::new();
    // Position in the rotation (from `first`) of the next endpoint to consider.
    let mut pos = 0;
    for attempt in 0..MAX_ATTEMPTS {
        let Some(req) = next.take().or_else(|| {
            replayable
                .clone()
                .map(|p| Request::from_parts(p, Either::Right(Empty::new())))
        }) else {
            break;
        };
        // Endpoints that refused a connection lately are passed over while others remain.
        let at = |k: usize| backend.endpoints[(first + k) % n];
        let k = (pos..pos + n)
            .find(|&k| !w.pool.is_down(at(k)))
            .unwrap_or(pos);
        let ep = at(k);
        pos = k + 1;
        let failure = match w.pool.get(ep).await {
            Err(e) => {
                w.pool.mark_down(ep);
                last_err = e.to_string();
                next = Some(req);
                Failure::Connect
            }
            Ok((mut sender, _reused)) => match sender.try_send_request(req).await {
                Ok(resp) => {
                    let (mut rparts, rbody) = resp.into_parts();
                    strip_hop_by_hop(&mut rparts.headers);
                    let body = ProxyBody::upstream(rbody, w.pool.clone(), ep, sender);
                    return Response::from_parts(rparts, body);
                }
                Err(mut e) => {
                    let unsent = e.take_message();
                    let failure = if unsent.is_some() {
                        Failure::NotSent
                    } else {
                        retry::classify(e.error())
                    };
                    last_err = format!("{ep}: {}", e.error());
                    next = unsent;
                    failure
                }
            },
        };
        tracing::debug!(backend = %backend.name, endpoint = %ep, attempt, ?failure, error = %last_err, "backend request failed");
        // A stale pooled connection is worth a fresh one to the same endpoint; an endpoint
        // that refused a connection is not worth another.
        let untried_left = pos < n;
        if !retry::may_retry(&method, has_body, failure)
            || (failure == Failure::Connect && !untried_left)
        {
            break;
        }
    }
    local(
        StatusCode::BAD_GATEWAY,
        format!("502 bad gateway: {}: {last_err}\n", backend.name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: Limits) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: SharedRoutes = Arc::new(RwLock::new(Arc::new(RouteTable::default())));
        let (stop, rx) = watch::channel(false);
        tokio::spawn(serve_with(listener, routes, rx, limits));
        (addr, stop)
    }

    /// Reads until the server closes the connection or answers; the bytes read.
    async fn read_some(c: &mut TcpStream) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).await.unwrap_or(0);
        buf.truncate(n);
        buf
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, _stop) = start(limits).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: slow").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), read_some(&mut c))
            .await
            .expect("the server closes a slow client's connection");
        // hyper answers 408 or just closes; either way no request was served.
        let text = String::from_utf8_lossy(&got);
        assert!(got.is_empty() || text.contains("408"), "{text}");
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_until_one_ends() {
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let (addr, _stop) = start(limits).await;
        let first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        second
            .write_all(b"GET / HTTP/1.1\r\nHost: none\r\n\r\n")
            .await
            .unwrap();
        // Held back while the first connection holds the only slot: proving that nothing
        // happens needs a bounded wait, not a deadline loop.
        let early = tokio::time::timeout(Duration::from_millis(300), read_some(&mut second)).await;
        assert!(early.is_err(), "answered past the cap: {early:?}");
        drop(first);
        let got = tokio::time::timeout(Duration::from_secs(10), read_some(&mut second))
            .await
            .expect("answered once a slot is free");
        assert!(
            String::from_utf8_lossy(&got).starts_with("HTTP/1.1 404"),
            "{got:?}"
        );
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("host", HeaderValue::from_static("mi-app.com"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["host"]);
    }
}
