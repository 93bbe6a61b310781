//! Counters and latency histograms the scheduler keeps about itself (read by the benchmark and
//! logged on exit).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

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
        }
    }
}

pub fn record(h: &Mutex<Histogram<u64>>, d: Duration) {
    h.lock().saturating_record(d.as_micros().max(1) as u64);
}

impl Metrics {
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
