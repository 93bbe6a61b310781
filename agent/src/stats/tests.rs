//! The sampler's rate math, summaries of two samples, and what the tunnel is answered.

use super::*;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap()
}

fn c(id: &str, pod: &str, container: &str, cpu_ns: u64, working_set: u64) -> ContainerSample {
    ContainerSample {
        id: id.into(),
        namespace: "default".into(),
        pod: pod.into(),
        container: container.into(),
        usage: Usage {
            cpu_ns,
            working_set,
        },
    }
}

fn u(cpu_ns: u64, working_set: u64) -> Usage {
    Usage {
        cpu_ns,
        working_set,
    }
}

#[test]
fn cpu_rate_is_nanoseconds_used_per_second_of_window() {
    let s = Duration::from_secs(1);
    for (prev, cur, window, want) in [
        // one full core over 10 s
        (0, 10_000_000_000, 10 * s, Some(1_000_000_000)),
        // a quarter core over 2 s
        (1_000, 500_001_000, 2 * s, Some(250_000_000)),
        (5, 5, s, Some(0)),
        (
            0,
            1_500_000_000,
            Duration::from_millis(500),
            Some(3_000_000_000),
        ),
        // a counter that went backwards (a reset) gives nothing, not a huge figure
        (10, 9, s, None),
        // no time passed: no rate
        (0, 100, Duration::ZERO, None),
        // a large counter over a long window does not overflow
        (
            0,
            u64::MAX,
            Duration::from_secs(3600 * 24 * 365),
            Some(584_942_417_355),
        ),
    ] {
        assert_eq!(
            nanocores(prev, cur, window),
            want,
            "{prev} -> {cur} over {window:?}"
        );
    }
}

#[test]
fn a_summary_reports_containers_seen_in_both_samples_grouped_by_pod() {
    let prev = Sample {
        at: at(0),
        node: Some(u(0, 1)),
        containers: vec![
            c("a1", "web", "app", 0, 100),
            c("a2", "web", "sidecar", 1_000_000_000, 50),
            c("old", "gone", "app", 0, 10),
            c("r1", "restarted", "app", 0, 10),
        ],
    };
    let cur = Sample {
        at: at(2000),
        node: Some(u(4_000_000_000, 4096)),
        containers: vec![
            c("a2", "web", "sidecar", 1_500_000_000, 60),
            c("a1", "web", "app", 2_000_000_000, 200),
            // first seen: reported from the next sample
            c("new", "fresh", "app", 9, 9),
            // a restarted container is a new id: nothing until it has two samples
            c("r2", "restarted", "app", 5, 10),
        ],
    };
    let s = summarize(&prev, &cur);
    assert!(s.ready);
    assert_eq!(s.window_ms, 2000);
    assert_eq!(s.timestamp_ms, at(2000).as_millisecond());
    assert_eq!(
        s.node,
        Some(pb::Usage {
            cpu_nanocores: 2_000_000_000,
            memory_working_set_bytes: 4096
        })
    );
    assert_eq!(s.pods.len(), 1, "{:?}", s.pods);
    let web = &s.pods[0];
    assert_eq!(
        (web.namespace.as_str(), web.name.as_str()),
        ("default", "web")
    );
    let got: Vec<(&str, u64, u64)> = web
        .containers
        .iter()
        .map(|c| {
            let u = c.usage.unwrap();
            (c.name.as_str(), u.cpu_nanocores, u.memory_working_set_bytes)
        })
        .collect();
    assert_eq!(
        got,
        vec![("app", 1_000_000_000, 200), ("sidecar", 250_000_000, 60)]
    );
}

#[test]
fn a_node_unreadable_in_either_sample_has_no_node_figures() {
    let prev = Sample {
        at: at(0),
        node: None,
        containers: vec![],
    };
    let cur = Sample {
        at: at(1000),
        node: Some(u(5, 5)),
        containers: vec![],
    };
    assert_eq!(summarize(&prev, &cur).node, None);
}

/// Hands out the samples the test sends, one per call, counting those taken.
struct FakeSampler {
    rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Sample>>,
    taken: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Sampler for FakeSampler {
    async fn sample(&self) -> Result<Sample, StatsError> {
        let s = self.rx.lock().await.recv().await.ok_or(StatsError::Parse {
            path: "fake: no more samples".into(),
        })?;
        self.taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(s)
    }
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test]
async fn figures_are_published_from_the_second_sample_on() {
    let stats = Stats::default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let sampler = Arc::new(FakeSampler {
        rx: tokio::sync::Mutex::new(rx),
        taken: Default::default(),
    });
    let sample = |i: i64| Sample {
        at: at(i * 1000),
        node: Some(u(i as u64 * 500_000_000, 10)),
        containers: vec![],
    };
    assert!(!stats.answer(1).ready, "ready before any sample");
    let task = tokio::spawn(run(
        stats.clone(),
        sampler.clone(),
        Duration::from_millis(1),
    ));
    tx.send(sample(0)).unwrap();
    let taken = || sampler.taken.load(std::sync::atomic::Ordering::SeqCst);
    until("the first sample", || taken() == 1).await;
    assert!(!stats.answer(1).ready, "ready after one sample");
    tx.send(sample(1)).unwrap();
    until("figures", || stats.answer(1).ready).await;
    let s = stats.answer(7);
    assert_eq!(s.request_id, 7);
    assert_eq!(s.window_ms, 1000);
    assert_eq!(s.node.unwrap().cpu_nanocores, 500_000_000);
    task.abort();
}

#[test]
fn a_summary_is_not_served_once_sampling_has_failed_for_a_while() {
    let stats = Stats::default();
    let summary = pb::StatsSummary {
        ready: true,
        ..Default::default()
    };
    stats.publish_at(summary.clone(), std::time::Instant::now());
    assert!(stats.answer(1).ready);
    let old = std::time::Instant::now() - STALE_AFTER - Duration::from_secs(1);
    stats.publish_at(summary, old);
    let answer = stats.answer(2);
    assert!(!answer.ready);
    assert!(answer.error.contains("not sampled"), "{}", answer.error);
    assert_eq!(answer.request_id, 2);
}
