//! The proxy's Prometheus metrics: iptables sync latency under kube-proxy's name, and Ingress
//! requests by the rule host that matched (never the raw Host header: a client cannot grow
//! the label set) and status code. Served on `--metrics-address`.

use std::sync::OnceLock;
use std::time::Duration;

use corral_api::runtime::metrics::{latency_histogram, Registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngressLabels {
    pub host: String,
    pub code: String,
}

pub struct ProxyMetrics {
    sync: Histogram,
    ingress: Family<IngressLabels, Counter>,
}

/// This process's metrics.
pub fn global() -> &'static ProxyMetrics {
    static M: OnceLock<ProxyMetrics> = OnceLock::new();
    M.get_or_init(|| ProxyMetrics {
        sync: latency_histogram(),
        ingress: Family::default(),
    })
}

impl ProxyMetrics {
    /// One iptables sync (planned and applied) took `took`.
    pub fn synced(&self, took: Duration) {
        self.sync.observe(took.as_secs_f64());
    }

    /// An Ingress request matched the rule of `host` ("" for none or a rule without host)
    /// and was answered with `code`.
    pub fn ingress_request(&self, host: &str, code: u16) {
        self.ingress
            .get_or_create(&IngressLabels {
                host: host.to_string(),
                code: code.to_string(),
            })
            .inc();
    }
}

/// A registry with every proxy metric.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.register(
        "kubeproxy_sync_proxy_rules_duration_seconds",
        "Time to plan and apply one iptables sync",
        global().sync.clone(),
    );
    r.register(
        "corral_ingress_requests",
        "Ingress requests by matched rule host and status code",
        global().ingress.clone(),
    );
    r
}
