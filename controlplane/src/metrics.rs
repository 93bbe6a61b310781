//! The control plane's Prometheus metrics under kube-apiserver's names: requests by verb,
//! resource and code with their latency (a tower layer around the API listener's services,
//! REST and gRPC alike; the verb and resource are set by the request's authorization check
//! through a task-local), the store's commit latency and group sizes, registered watches, their events and delivery lag, and
//! the in-process controllers' work queues. Served at `GET /metrics` on the API port to `system:masters`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use corral_api::runtime::metrics::{latency_histogram, Registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub verb: String,
    pub resource: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    pub resource: String,
}

/// Every metric of this process (one set per process: the store's writer thread records
/// into it without being handed it).
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    commit_seconds: Histogram,
    commit_group: Histogram,
    watchers: Family<ResourceLabel, Gauge>,
    watch_events: Family<ResourceLabel, Counter>,
    watch_lag: Family<ResourceLabel, Histogram>,
}

fn latency() -> Histogram {
    latency_histogram()
}

impl Metrics {
    fn new() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency),
            commit_seconds: latency_histogram(),
            commit_group: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            watchers: Family::default(),
            watch_events: Family::default(),
            watch_lag: Family::new_with_constructor(latency),
        }
    }

    /// A registry holding every metric.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::default();
        r.register(
            "apiserver_request",
            "API requests by verb, resource and HTTP code",
            self.requests.clone(),
        );
        r.register(
            "apiserver_request_duration_seconds",
            "API request latency to the response's head, by verb and resource",
            self.latency.clone(),
        );
        r.register(
            "apiserver_storage_commit_duration_seconds",
            "Time to commit one group of writes to the store",
            self.commit_seconds.clone(),
        );
        r.register(
            "apiserver_storage_commit_group_size",
            "Writes committed together in one store transaction",
            self.commit_group.clone(),
        );
        r.register(
            "apiserver_registered_watchers",
            "Open watches by resource",
            self.watchers.clone(),
        );
        r.register(
            "apiserver_watch_events",
            "Watch events sent to clients, by resource",
            self.watch_events.clone(),
        );
        r.register(
            "apiserver_watch_event_lag_seconds",
            "From a change reaching this server (a SQLite commit, an etcd notification) to its event leaving on a watch, by resource",
            self.watch_lag.clone(),
        );
        // The controllers run in this process.
        corral_controllers::metrics::register(&mut r);
        r
    }

    /// One store commit of `writes` writes took `took`.
    pub fn commit(&self, writes: usize, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.commit_group.observe(writes as f64);
    }

    /// A watch of `resource` opened; it counts until the returned guard drops, and counts
    /// the events sent through [`WatchGuard::sent`].
    pub fn watch_opened(&'static self, resource: &str) -> WatchGuard {
        let label = ResourceLabel {
            resource: resource.to_string(),
        };
        let gauge = self.watchers.get_or_create(&label).clone();
        gauge.inc();
        WatchGuard {
            open: gauge,
            events: self.watch_events.get_or_create(&label).clone(),
            lag: self.watch_lag.get_or_create(&label).clone(),
        }
    }

    fn observe(&self, labels: Labels, code: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: labels.verb.clone(),
                resource: labels.resource.clone(),
                code: code.to_string(),
            })
            .inc();
        if labels.verb != "watch" {
            self.latency
                .get_or_create(&LatencyLabels {
                    verb: labels.verb,
                    resource: labels.resource,
                })
                .observe(took.as_secs_f64());
        }
    }
}

/// Counts one open watch until dropped, and the events it sends.
pub struct WatchGuard {
    open: Gauge,
    events: Counter,
    lag: Histogram,
}

impl WatchGuard {
    /// One event went to the client, the change having reached this server at `seen`.
    pub fn sent(&self, seen: Option<Instant>) {
        self.events.inc();
        if let Some(at) = seen {
            self.lag.observe(at.elapsed().as_secs_f64());
        }
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// This process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// What the authorization check learned about the request being served.
#[derive(Debug, Clone, Default)]
struct Labels {
    verb: String,
    resource: String,
}

tokio::task_local! {
    static CURRENT: RefCell<Labels>;
}

/// Names the request being served (called by the authorization check of every API call). A
/// call outside a request does nothing.
pub fn label_request(verb: &str, resource: &str, subresource: &str) {
    let _ = CURRENT.try_with(|l| {
        let mut l = l.borrow_mut();
        l.verb = verb.to_string();
        l.resource = if subresource.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{subresource}")
        };
    });
}

/// The HTTP code kube-apiserver would answer for a gRPC status code.
pub fn http_code(grpc: tonic::Code) -> u16 {
    use tonic::Code::*;
    match grpc {
        Ok => 200,
        InvalidArgument | FailedPrecondition | OutOfRange => 400,
        Unauthenticated => 401,
        PermissionDenied => 403,
        NotFound => 404,
        AlreadyExists | Aborted => 409,
        ResourceExhausted => 429,
        Cancelled => 499,
        Unimplemented => 501,
        Unavailable => 503,
        DeadlineExceeded => 504,
        _ => 500,
    }
}

/// The code of a response: a gRPC error's status (sent in the head when the call failed
/// before any message), else the HTTP status.
fn code_of<B>(response: &http::Response<B>) -> u16 {
    match response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    {
        Some(code) => http_code(tonic::Code::from(code)),
        None => response.status().as_u16(),
    }
}

/// Times every request of the API listener and counts it by verb, resource and code.
#[derive(Clone, Default)]
pub struct MetricsLayer;

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
}

impl<S, Req, B> tower::Service<Req> for MetricsService<S>
where
    S: tower::Service<Req, Response = http::Response<B>> + Send,
    S::Future: Send + 'static,
    S::Error: Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let started = Instant::now();
        let future = self.inner.call(req);
        Box::pin(async move {
            let (result, seen) = CURRENT
                .scope(RefCell::new(Labels::default()), async move {
                    let result = future.await;
                    let seen = CURRENT.with(|l| l.borrow().clone());
                    (result, seen)
                })
                .await;
            let code = match &result {
                Ok(response) => code_of(response),
                Err(_) => 500,
            };
            // kube-apiserver answers a create with 201; a gRPC success has no such code.
            let code = if code == 200 && seen.verb == "create" {
                201
            } else {
                code
            };
            // Requests that never reached an authorization check (discovery, OpenAPI, a
            // refusal before it) are counted without a resource.
            let seen = if seen.verb.is_empty() {
                Labels {
                    verb: "other".into(),
                    resource: String::new(),
                }
            } else {
                seen
            };
            global().observe(seen, code, started.elapsed());
            result
        })
    }
}

#[cfg(test)]
mod tests;
