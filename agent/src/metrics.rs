//! The agent's Prometheus metrics under kubelet's names: pod start latency, from the agent
//! first seeing a pod to its status posted as Running (kubelet's pod start SLI, image pulls
//! included); how long terminating pods waited for the proxies to drop them. Served on
//! `--metrics-address`.

use std::sync::OnceLock;
use std::time::Duration;

use corral_api::runtime::metrics::{latency_histogram, Registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

pub struct AgentMetrics {
    pod_start: Histogram,
    held: Family<HoldLabels, Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HoldLabels {
    outcome: &'static str,
}

/// This process's metrics.
pub fn global() -> &'static AgentMetrics {
    static M: OnceLock<AgentMetrics> = OnceLock::new();
    M.get_or_init(|| AgentMetrics {
        pod_start: latency_histogram(),
        held: Family::new_with_constructor(latency_histogram),
    })
}

impl AgentMetrics {
    /// A pod this agent started is Running, `took` after it was first seen.
    pub fn pod_started(&self, took: Duration) {
        self.pod_start.observe(took.as_secs_f64());
    }

    /// A terminating pod's SIGTERM waited `held` for the proxies, ending as `outcome` says.
    pub fn termination_held(&self, held: Duration, outcome: &crate::drain::Outcome) {
        self.held
            .get_or_create(&HoldLabels {
                outcome: outcome.label(),
            })
            .observe(held.as_secs_f64());
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
    r.register(
        "corral_agent_termination_hold_duration_seconds",
        "How long a terminating pod's SIGTERM waited for every proxy to drop it, by outcome",
        global().held.clone(),
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
