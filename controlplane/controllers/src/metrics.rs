//! The controllers' work-queue metrics under client-go's names: depth, the time a key waits
//! to be taken, reconcile latency and retries, by controller. One set per process, added to
//! the control plane's `/metrics` by [`register`].

use std::sync::OnceLock;
use std::time::Duration;

use corral_api::runtime::metrics::{latency_histogram, Registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub name: String,
}

pub struct QueueMetrics {
    depth: Family<QueueLabel, Gauge>,
    work: Family<QueueLabel, Histogram>,
    retries: Family<QueueLabel, Counter>,
    reconciles: Family<QueueLabel, Counter>,
}

fn latency() -> Histogram {
    latency_histogram()
}

/// This process's work-queue metrics.
pub fn global() -> &'static QueueMetrics {
    static M: OnceLock<QueueMetrics> = OnceLock::new();
    M.get_or_init(|| QueueMetrics {
        depth: Family::default(),
        work: Family::new_with_constructor(latency),
        retries: Family::default(),
        reconciles: Family::default(),
    })
}

fn label(name: &str) -> QueueLabel {
    QueueLabel { name: name.into() }
}

impl QueueMetrics {
    /// Keys waiting in `controller`'s queue now.
    pub fn depth(&self, controller: &str, depth: usize) {
        self.depth
            .get_or_create(&label(controller))
            .set(depth as i64);
    }

    /// One reconcile of `controller` took `took`; `failed` sends its key back with back-off.
    pub fn reconciled(&self, controller: &str, took: Duration, failed: bool) {
        let l = label(controller);
        self.work.get_or_create(&l).observe(took.as_secs_f64());
        self.reconciles.get_or_create(&l).inc();
        if failed {
            self.retries.get_or_create(&l).inc();
        }
    }
}

/// Adds the work-queue metrics to `registry`.
pub fn register(registry: &mut Registry) {
    let m = global();
    registry.register(
        "workqueue_depth",
        "Keys waiting in a controller's work queue",
        m.depth.clone(),
    );
    registry.register(
        "workqueue_work_duration_seconds",
        "Time one reconcile of a key took",
        m.work.clone(),
    );
    registry.register(
        "workqueue_retries",
        "Reconciles that failed and were queued again with back-off",
        m.retries.clone(),
    );
    registry.register(
        "controller_reconciles",
        "Reconciles run, by controller",
        m.reconciles.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::runtime::metrics::{encode, samples};

    #[test]
    fn reconciles_depth_and_retries_are_counted_per_controller() {
        global().depth("metrics-test", 4);
        global().reconciled("metrics-test", Duration::from_millis(3), false);
        global().reconciled("metrics-test", Duration::from_millis(3), true);
        let mut r = Registry::default();
        register(&mut r);
        let s = samples(&encode(&r)).unwrap();
        assert_eq!(s["workqueue_depth{name=\"metrics-test\"}"], 4.0);
        assert_eq!(s["controller_reconciles_total{name=\"metrics-test\"}"], 2.0);
        assert_eq!(s["workqueue_retries_total{name=\"metrics-test\"}"], 1.0);
        assert_eq!(
            s["workqueue_work_duration_seconds_count{name=\"metrics-test\"}"],
            2.0
        );
    }
}
