//! Counters and latency histograms the scheduler keeps about itself: read by the benchmark and
//! logged on exit (hdrhistogram, exact quantiles), and exposed to Prometheus under
//! kube-scheduler's names (`register`, served on `--metrics-address`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use corral_api::runtime::metrics::{latency_histogram, Registry};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram as PromHistogram;

/// The outcome of one scheduling attempt, as kube-scheduler labels `schedule_attempts_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptResult {
    pub result: &'static str,
}

/// The Prometheus side of [`Metrics`].
pub struct Exported {
    attempts: Family<AttemptResult, Counter>,
    attempt_seconds: PromHistogram,
    e2e_seconds: PromHistogram,
    algorithm_seconds: PromHistogram,
    pending: Gauge,
}

impl Default for Exported {
    fn default() -> Self {
        Self {
            attempts: Family::default(),
            attempt_seconds: latency_histogram(),
            e2e_seconds: latency_histogram(),
            algorithm_seconds: latency_histogram(),
            pending: Gauge::default(),
        }
    }
}

pub struct Metrics {
    /// Both watches have listed: the cache reflects the cluster.
    pub synced: AtomicBool,
    /// Nodes in the cache, updated on node events.
    pub nodes: AtomicU64,
    /// Pods waiting in the scheduling queue (any of its three parts or in flight).
    pub pending: AtomicU64,
    pub bound: AtomicU64,
    pub unschedulable: AtomicU64,
    pub bind_errors: AtomicU64,
    /// Filter and score of one pod (the algorithm alone), in microseconds.
    pub algorithm: Mutex<Histogram<u64>>,
    /// From taking the pod off the queue to its bind being acknowledged, in microseconds.
    pub attempt: Mutex<Histogram<u64>>,
    /// From the scheduler first seeing the pod to its bind being acknowledged, in microseconds.
    pub e2e: Mutex<Histogram<u64>>,
    exported: Exported,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            synced: AtomicBool::new(false),
            nodes: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            bound: AtomicU64::new(0),
            unschedulable: AtomicU64::new(0),
            bind_errors: AtomicU64::new(0),
            algorithm: Mutex::new(histogram()),
            attempt: Mutex::new(histogram()),
            e2e: Mutex::new(histogram()),
            exported: Exported::default(),
        }
    }
}

pub fn record(h: &Mutex<Histogram<u64>>, d: Duration) {
    h.lock().saturating_record(d.as_micros().max(1) as u64);
}

impl Metrics {
    /// Adds the scheduler's metrics to `registry` under kube-scheduler's names.
    pub fn register(&self, registry: &mut Registry) {
        let e = &self.exported;
        let scheduler = registry.sub_registry_with_prefix("scheduler");
        scheduler.register(
            "schedule_attempts",
            "Scheduling attempts by result (scheduled, unschedulable, error)",
            e.attempts.clone(),
        );
        scheduler.register(
            "scheduling_attempt_duration_seconds",
            "From taking a pod off the queue to its bind being acknowledged",
            e.attempt_seconds.clone(),
        );
        scheduler.register(
            "pod_scheduling_sli_duration_seconds",
            "From first seeing a pod to its bind being acknowledged, across attempts",
            e.e2e_seconds.clone(),
        );
        scheduler.register(
            "scheduling_algorithm_duration_seconds",
            "Filtering and scoring one pod",
            e.algorithm_seconds.clone(),
        );
        scheduler.register(
            "pending_pods",
            "Pods waiting to be scheduled",
            e.pending.clone(),
        );
    }

    /// Filter and score of one pod took `d`.
    pub fn algorithm(&self, d: Duration) {
        record(&self.algorithm, d);
        self.exported.algorithm_seconds.observe(d.as_secs_f64());
    }

    /// A pod was bound: `attempt` since it left the queue, `e2e` since it was first seen.
    pub fn scheduled(&self, attempt: Duration, e2e: Duration) {
        self.bound.fetch_add(1, Ordering::Relaxed);
        record(&self.attempt, attempt);
        record(&self.e2e, e2e);
        self.exported.attempt_seconds.observe(attempt.as_secs_f64());
        self.exported.e2e_seconds.observe(e2e.as_secs_f64());
        self.attempt_result("scheduled");
    }

    /// No node fits the pod.
    pub fn unschedulable(&self) {
        self.unschedulable.fetch_add(1, Ordering::Relaxed);
        self.attempt_result("unschedulable");
    }

    /// The bind was refused or failed.
    pub fn bind_error(&self) {
        self.bind_errors.fetch_add(1, Ordering::Relaxed);
        self.attempt_result("error");
    }

    /// Pods waiting in the queue now.
    pub fn set_pending(&self, n: u64) {
        self.pending.store(n, Ordering::Relaxed);
        self.exported.pending.set(n as i64);
    }

    fn attempt_result(&self, result: &'static str) {
        self.exported
            .attempts
            .get_or_create(&AttemptResult { result })
            .inc();
    }

    pub fn bound(&self) -> u64 {
        self.bound.load(Ordering::Relaxed)
    }

    /// One line: counts and p50/p99 of each histogram, in milliseconds.
    pub fn summary(&self) -> String {
        let q = |h: &Mutex<Histogram<u64>>| {
            let h = h.lock();
            format!(
                "p50={:.2}ms p99={:.2}ms max={:.2}ms",
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                h.max() as f64 / 1000.0
            )
        };
        format!(
            "bound={} unschedulable_attempts={} bind_errors={} algorithm[{}] attempt[{}] e2e[{}]",
            self.bound(),
            self.unschedulable.load(Ordering::Relaxed),
            self.bind_errors.load(Ordering::Relaxed),
            q(&self.algorithm),
            q(&self.attempt),
            q(&self.e2e)
        )
    }
}
