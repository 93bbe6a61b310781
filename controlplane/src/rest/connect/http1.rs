//! HTTP/1.1 connections of the API's listener: served by hyper with upgrades on (tonic's
//! server turns them off, and exec/attach need them), every request going to [`Rest`] with
//! the connection's `ConnInfo` in its extensions, as tonic puts it there for HTTP/2.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use corral_api::status::StatusReason;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tonic::transport::server::Connected;
use tracing::debug;

use crate::listener::Guarded;
use crate::metrics::MetricsLayer;
use crate::rest::response::{self, Body};
use crate::rest::Rest;

/// Serves one HTTP/1.1 connection in its own task until the client closes it or `stop`
/// changes (then in-flight requests finish and the connection closes).
pub fn serve(conn: Guarded, rest: Arc<Rest>, timeout: Duration, mut stop: watch::Receiver<()>) {
    let info = conn.connect_info();
    let svc = tower::service_fn(move |req: Request<Incoming>| {
        let (rest, info) = (rest.clone(), info.clone());
        async move {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(info);
            // A stream (watch, logs, exec) counts as answered once its response starts.
            let answer = tokio::time::timeout(timeout, rest.handle(req)).await;
            Ok::<_, Infallible>(answer.unwrap_or_else(|_| {
                response::fail(
                    StatusReason::Timeout,
                    "the request was not answered in time",
                )
            }))
        }
    });
    // Counted and timed as the HTTP/2 requests are (the tonic router's outermost layer).
    let svc = TowerToHyperService::new(tower::Layer::layer(&MetricsLayer, svc));
    tokio::spawn(async move {
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(conn), svc)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let done = tokio::select! {
            r = conn.as_mut() => Some(r),
            _ = stop.changed() => None,
        };
        let result = match done {
            Some(r) => r,
            None => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            debug!(error = %e, "HTTP/1.1 connection ended with an error");
        }
    });
}
