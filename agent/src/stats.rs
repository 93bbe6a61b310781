//! Resource usage for `corral top` and metrics.k8s.io, as kubelet's summary feeds
//! metrics-server: every [`SAMPLE_EVERY`] the agent reads each running container's cumulative
//! CPU time and memory working set (containerd's task metrics) and the node's (its cgroup root,
//! `node.rs`); CPU is the rate between the last two samples, so figures exist from the second.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use corral_proto as pb;
use jiff::Timestamp;
use parking_lot::Mutex;
use tracing::{debug, warn};

use crate::runtime::metrics::{task_usage, Usage};
use crate::runtime::{
    RuntimeError, TaskState, LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE,
};

pub mod node;

/// How often the agent samples: kubelet's cadvisor housekeeping is 10-15 s, metrics-server's
/// resolution 15 s; shorter here so figures appear soon after a pod starts.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("reading {path:?}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path:?} does not hold the expected figures")]
    Parse { path: PathBuf },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// One running container's cumulative reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSample {
    /// The runtime's container id: a restarted container is a new one.
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub usage: Usage,
}

/// Everything read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: Timestamp,
    /// `None` when the node's files could not be read (the containers still count).
    pub node: Option<Usage>,
    pub containers: Vec<ContainerSample>,
}

/// Takes one [`Sample`]: containerd and the cgroup files on a node, a fake in tests.
#[async_trait]
pub trait Sampler: Send + Sync + 'static {
    async fn sample(&self) -> Result<Sample, StatsError>;
}

/// Nanocores used between two cumulative CPU readings `window` apart; `None` when the counter
/// went backwards (a reset) or no time passed.
pub fn nanocores(prev_ns: u64, cur_ns: u64, window: Duration) -> Option<u64> {
    let used = cur_ns.checked_sub(prev_ns)?;
    let window = window.as_nanos();
    if window == 0 {
        return None;
    }
    // CPU-nanoseconds per second of wall time, in u128 so a long window cannot overflow.
    u64::try_from(u128::from(used) * 1_000_000_000 / window).ok()
}

fn usage_of(prev: Usage, cur: Usage, window: Duration) -> Option<pb::Usage> {
    Some(pb::Usage {
        cpu_nanocores: nanocores(prev.cpu_ns, cur.cpu_ns, window)?,
        memory_working_set_bytes: cur.working_set,
    })
}

/// The summary of two consecutive samples: node and containers present in both, memory from
/// the newer one. Pods are sorted by namespace and name, containers by name.
pub fn summarize(prev: &Sample, cur: &Sample) -> pb::StatsSummary {
    let window = Duration::try_from(cur.at.duration_since(prev.at)).unwrap_or_default();
    let before: HashMap<&str, Usage> = prev
        .containers
        .iter()
        .map(|c| (c.id.as_str(), c.usage))
        .collect();
    let mut pods: Vec<pb::PodUsage> = Vec::new();
    let mut sorted: Vec<&ContainerSample> = cur.containers.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
    });
    for c in sorted {
        let Some(usage) = before
            .get(c.id.as_str())
            .and_then(|p| usage_of(*p, c.usage, window))
        else {
            continue;
        };
        let entry = pb::ContainerUsage {
            name: c.container.clone(),
            usage: Some(usage),
        };
        match pods.last_mut() {
            Some(p) if p.namespace == c.namespace && p.name == c.pod => p.containers.push(entry),
            _ => pods.push(pb::PodUsage {
                namespace: c.namespace.clone(),
                name: c.pod.clone(),
                containers: vec![entry],
            }),
        }
    }
    let node = match (prev.node, cur.node) {
        (Some(p), Some(c)) => usage_of(p, c, window),
        _ => None,
    };
    pb::StatsSummary {
        request_id: 0,
        error: String::new(),
        ready: true,
        timestamp_ms: cur.at.as_millisecond(),
        window_ms: window.as_millis() as u64,
        node,
        pods,
    }
}

/// A summary older than this is not served: sampling has been failing.
pub const STALE_AFTER: Duration = Duration::from_secs(3 * SAMPLE_EVERY.as_secs());

/// The latest summary, shared between the sampling loop and the tunnel.
#[derive(Clone, Default)]
pub struct Stats {
    latest: Arc<Mutex<Option<(pb::StatsSummary, std::time::Instant)>>>,
}

impl Stats {
    /// The answer to a tunnel request: the latest summary, or not `ready` before the second
    /// sample and once sampling has failed for [`STALE_AFTER`].
    pub fn answer(&self, request_id: u64) -> pb::StatsSummary {
        let latest = self.latest.lock().clone();
        let mut s = match latest {
            Some((s, at)) if at.elapsed() < STALE_AFTER => s,
            Some(_) => pb::StatsSummary {
                error: format!("usage not sampled for {}s", STALE_AFTER.as_secs()),
                ..Default::default()
            },
            None => Default::default(),
        };
        s.request_id = request_id;
        s
    }

    fn publish(&self, summary: pb::StatsSummary) {
        self.publish_at(summary, std::time::Instant::now());
    }

    fn publish_at(&self, summary: pb::StatsSummary, at: std::time::Instant) {
        *self.latest.lock() = Some((summary, at));
    }
}

/// Samples every `every` for as long as the agent runs, publishing each summary.
pub async fn run(stats: Stats, sampler: Arc<dyn Sampler>, every: Duration) {
    let mut prev: Option<Sample> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sampler.sample().await {
            Ok(cur) => {
                if let Some(p) = &prev {
                    let s = summarize(p, &cur);
                    debug!(
                        pods = s.pods.len(),
                        window_ms = s.window_ms,
                        "usage sampled"
                    );
                    stats.publish(s);
                }
                prev = Some(cur);
            }
            Err(e) => warn!(error = %e, "sampling resource usage failed"),
        }
    }
}

/// The node's sampler: containerd's task metrics joined with its containers' pod labels, and
/// the node's cgroup root.
pub struct ContainerdSampler {
    pub client: corral_containerd::Client,
    pub node: node::NodeCgroup,
}

#[async_trait]
impl Sampler for ContainerdSampler {
    async fn sample(&self) -> Result<Sample, StatsError> {
        let containers = self.client.list().await?;
        let usage: HashMap<String, Usage> = task_usage(&self.client).await?.into_iter().collect();
        let node = match self.node.usage() {
            Ok(u) => Some(u),
            Err(e) => {
                debug!(error = %e, "node usage unreadable");
                None
            }
        };
        let at = Timestamp::now();
        let containers = containers
            .into_iter()
            .filter(|c| matches!(c.state, TaskState::Running { .. }))
            .filter_map(|c| {
                let label = |k: &str| c.labels.get(k).cloned();
                Some(ContainerSample {
                    usage: *usage.get(&c.id)?,
                    namespace: label(LABEL_POD_NAMESPACE)?,
                    pod: label(LABEL_POD_NAME)?,
                    container: label(LABEL_CONTAINER_NAME)?,
                    id: c.id,
                })
            })
            .collect();
        Ok(Sample {
            at,
            node,
            containers,
        })
    }
}

#[cfg(test)]
mod tests;
