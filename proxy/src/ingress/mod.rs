//! The Ingress data path: an HTTP/1.1 reverse proxy that looks each request up in the current
//! route table and forwards it straight to a ready pod (round robin), over pooled keep-alive
//! connections. 404 when no rule matches, 503 when the backend has no ready endpoint, 502
//! when the pod cannot be reached.

pub mod routes;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::RwLock;
use tokio::net::TcpListener;

use routes::RouteTable;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// The route table the server reads; the sync loop swaps in a new one on every change.
pub type SharedRoutes = Arc<RwLock<Arc<RouteTable>>>;

struct State {
    routes: SharedRoutes,
    client: Client<HttpConnector, Body>,
}

fn full(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{text}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
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
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

/// Serves until the listener task is dropped.
pub async fn serve(listener: TcpListener, routes: SharedRoutes) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector);
    let state = Arc::new(State { routes, client });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "ingress accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req, peer).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(peer = %peer, error = %e, "ingress connection ended");
            }
        });
    }
}

async fn handle(state: &State, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().host().map(str::to_string))
        .unwrap_or_default();
    let table = state.routes.read().clone();
    let Some(backend) = table.route(&host, req.uri().path()).cloned() else {
        return full(
            StatusCode::NOT_FOUND,
            "404 page not found: no ingress rule matches",
        );
    };
    if backend.endpoints.is_empty() {
        return full(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "503 service unavailable: {} has no ready endpoint",
                backend.name
            ),
        );
    }
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let fwd = HeaderName::from_static("x-forwarded-for");
    let prior = parts
        .headers
        .get(&fwd)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let chain = match prior {
        Some(p) => format!("{p}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&chain) {
        parts.headers.insert(fwd, v);
    }
    if let Ok(v) = HeaderValue::from_str(&host) {
        parts
            .headers
            .insert(HeaderName::from_static("x-forwarded-host"), v);
    }
    parts.headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    // Requests without a body can go to another pod when a connection cannot be made (a pod
    // that just went away); others are sent once.
    let retriable = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
        && !has_body_parts(&parts.headers);
    let attempts = if retriable {
        backend.endpoints.len().min(3)
    } else {
        1
    };
    let mut body = Some(body.boxed());
    let mut last_err = None;
    for _ in 0..attempts {
        let Some(ep) = backend.pick() else { break };
        let uri: Uri = match format!("http://{ep}{path}").parse() {
            Ok(u) => u,
            Err(_) => return full(StatusCode::BAD_REQUEST, "400 bad request: invalid path"),
        };
        let mut out = Request::from_parts(parts.clone(), body.take().unwrap_or_else(empty));
        *out.uri_mut() = uri;
        match state.client.request(out).await {
            Ok(resp) => {
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                return Response::from_parts(rparts, rbody.boxed());
            }
            Err(e) => {
                tracing::debug!(backend = %backend.name, endpoint = %ep, error = %e, "backend request failed");
                let connect = e.is_connect();
                last_err = Some(e);
                if !connect {
                    break;
                }
            }
        }
    }
    let detail = last_err.map(|e| e.to_string()).unwrap_or_default();
    full(
        StatusCode::BAD_GATEWAY,
        &format!("502 bad gateway: {}: {detail}", backend.name),
    )
}

fn has_body_parts(h: &HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

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
