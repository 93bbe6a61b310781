//! Prometheus metrics, one home for every component: the registry (prometheus-client's), the
//! text exposition, the latency buckets, and the small HTTP server the components without the
//! API port serve `GET /metrics` on (`--metrics-address`, loopback by default, as kube-proxy's
//! and the scheduler's are).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
pub use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

/// What the exposition is (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets in seconds: 0.5 ms to about 16 s, doubling.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16)
}

/// A latency histogram with [`latency_buckets`].
pub fn latency_histogram() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(latency_buckets())
}

/// The registry as text.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

fn answer(path: &str, registry: &Registry) -> Response<Full<Bytes>> {
    let (status, content_type, body) = if path == "/metrics" {
        (StatusCode::OK, CONTENT_TYPE, encode(registry))
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "only /metrics is served here\n".into(),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}

/// Serves `GET /metrics` on `addr` (plain HTTP/1.1) until the task is aborted. Returns the
/// bound address (`addr` may ask for port 0).
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving /metrics");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let response = answer(req.uri().path(), &registry);
                        async move { Ok::<_, Infallible>(response) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

/// Why an exposition is not valid text.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: {text:?}: {why}")]
    Line {
        line: usize,
        text: String,
        why: &'static str,
    },
    #[error("the exposition does not end with \"# EOF\"")]
    NoEof,
}

/// The samples of a text exposition, `name{labels}` to value, checking each line's shape
/// (for tests of every component's `/metrics`, and scrapers such as `corral top`).
pub fn samples(text: &str) -> Result<std::collections::BTreeMap<String, f64>, ParseError> {
    let mut out = std::collections::BTreeMap::new();
    let mut eof = false;
    for (i, line) in text.lines().enumerate() {
        let bad = |why| ParseError::Line {
            line: i + 1,
            text: line.to_string(),
            why,
        };
        if eof {
            return Err(bad("text after # EOF"));
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            if !(meta.starts_with("HELP ")
                || meta.starts_with("TYPE ")
                || meta.starts_with("UNIT "))
            {
                return Err(bad("a comment that is not HELP, TYPE or UNIT"));
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| bad("no value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad("the value is not a number"))?,
        };
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(bad("not a metric name"));
        }
        if name_end < series.len() && !series.ends_with('}') {
            return Err(bad("unclosed labels"));
        }
        out.insert(series.to_string(), value);
    }
    if !eof {
        return Err(ParseError::NoEof);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn the_exposition_names_help_type_and_values() {
        let mut registry = Registry::default();
        let c: Counter = Counter::default();
        registry.register("demo_things", "Things done", c.clone());
        c.inc_by(3);
        let text = encode(&registry);
        assert!(text.contains("# HELP demo_things Things done."), "{text}");
        assert!(text.contains("# TYPE demo_things counter"), "{text}");
        assert!(text.contains("demo_things_total 3"), "{text}");
        assert_eq!(answer("/metrics", &registry).status(), StatusCode::OK);
        assert_eq!(answer("/other", &registry).status(), StatusCode::NOT_FOUND);
        let parsed = samples(&text).unwrap();
        assert_eq!(parsed["demo_things_total"], 3.0);
    }

    #[test]
    fn malformed_expositions_are_refused_with_their_line() {
        let cases = [
            ("x 1\n", "does not end"),
            ("x one\n# EOF\n", "line 1"),
            ("# NOTE hi\n# EOF\n", "line 1"),
            ("bad-name 1\n# EOF\n", "not a metric name"),
            ("x{a=\"1\" 2\n# EOF\n", "unclosed"),
            ("# EOF\nx 1\n", "after # EOF"),
        ];
        for (text, want) in cases {
            let err = samples(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let ok = samples("# TYPE x counter\nx_total{a=\"b c\"} 2\ny +Inf\n# EOF\n").unwrap();
        assert_eq!(ok["x_total{a=\"b c\"}"], 2.0);
        assert!(ok["y"].is_infinite());
    }
}
