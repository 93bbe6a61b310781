//! The agent's Prometheus metrics under kubelet's names: pod start latency, from the agent
//! first seeing a pod to its status posted as Running (kubelet's pod start SLI, image pulls
//! included). Served on `--metrics-address`.

use std::sync::OnceLock;
use std::time::Duration;

use corral_api::runtime::metrics::{latency_histogram, Registry};
use prometheus_client::metrics::histogram::Histogram;

pub struct AgentMetrics {
    pod_start: Histogram,
}

/// This process's metrics.
pub fn global() -> &'static AgentMetrics {
    static M: OnceLock<AgentMetrics> = OnceLock::new();
    M.get_or_init(|| AgentMetrics {
        pod_start: latency_histogram(),
    })
}

impl AgentMetrics {
    /// A pod this agent started is Running, `took` after it was first seen.
    pub fn pod_started(&self, took: Duration) {
        self.pod_start.observe(took.as_secs_f64());
    }
}

/// A registry with every agent metric.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.register(
        "kubelet_pod_start_duration_seconds",
        "From the agent first seeing a pod to its status posted as Running",
        global().pod_start.clone(),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::runtime::metrics::{encode, samples};

    #[test]
    fn pod_starts_are_observed() {
        let before =
            samples(&encode(&registry())).unwrap()["kubelet_pod_start_duration_seconds_count"];
        global().pod_started(Duration::from_millis(800));
        let after = samples(&encode(&registry())).unwrap();
        assert_eq!(
            after["kubelet_pod_start_duration_seconds_count"],
            before + 1.0
        );
        assert!(after["kubelet_pod_start_duration_seconds_bucket{le=\"1.024\"}"] >= 1.0);
    }
}
