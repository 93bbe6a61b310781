//! The running scheduler: two watches (nodes, pods) feed the cache and the queue under one
//! lock; a single loop takes pods off the queue, runs the algorithm, assumes the pod on its
//! node and hands the bind to a task, so many binds are in flight while the next pod is placed.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::k8s::api::core::v1::{Node, Pod};
use corral_api::Client;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::algorithm::Algorithm;
use crate::cache::{Cache, NodeChange};
use crate::events::Recorder;
use crate::framework::Framework;
use crate::metrics::Metrics;
use crate::podinfo::PodInfo;
use crate::queue::{QueueConfig, QueuedPod, SchedulingQueue};
use corral_api::runtime::{Event, Watcher, WatcherConfig};

#[derive(Debug, Clone)]
pub struct Config {
    /// Identity used in events (and for leader election by the binary).
    pub identity: String,
    /// 0: kube-scheduler's adaptive default.
    pub percentage_of_nodes_to_score: u32,
    pub max_binds_in_flight: usize,
    pub queue: QueueConfig,
    pub scheduler_names: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            identity: "corral-scheduler".into(),
            percentage_of_nodes_to_score: 0,
            max_binds_in_flight: 256,
            queue: QueueConfig::default(),
            scheduler_names: crate::SCHEDULER_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

struct State {
    cache: Cache,
    queue: SchedulingQueue,
    nodes_synced: bool,
    pods_synced: bool,
}

struct Shared {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    recorder: Arc<Recorder>,
    wake: Notify,
    scheduler_names: Vec<String>,
}

pub struct Scheduler {
    client: Client,
    config: Config,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

/// Aborts the watch tasks when the scheduler stops.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Scheduler {
    pub fn new(client: Client, config: Config) -> Self {
        let metrics = Arc::new(Metrics::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                cache: Cache::new(),
                queue: SchedulingQueue::new(config.queue),
                nodes_synced: false,
                pods_synced: false,
            }),
            wake: Notify::new(),
            metrics: metrics.clone(),
            recorder: Recorder::new(client.clone(), &config.identity),
            scheduler_names: config.scheduler_names.clone(),
        });
        Scheduler {
            client,
            config,
            shared,
            metrics,
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Keeps the cache and queue from the watches and, while `leader` holds true, schedules.
    /// Runs until the task is dropped.
    pub async fn run(self, mut leader: watch::Receiver<bool>) {
        let shared = self.shared.clone();
        let nodes = Watcher::<Node>::new(self.client.clone(), WatcherConfig::all());
        let node_task = tokio::spawn(async move {
            nodes.run(|ev| shared.on_node(ev)).await;
        });
        let shared = self.shared.clone();
        // Finished pods hold nothing: leaving the selector removes them from the cache.
        let pods = Watcher::<Pod>::new(
            self.client.clone(),
            WatcherConfig::fields("status.phase!=Succeeded,status.phase!=Failed"),
        );
        let pod_task = tokio::spawn(async move {
            pods.run(|ev| shared.on_pod(ev)).await;
        });
        let _tasks = Tasks(vec![node_task, pod_task]);

        let recorder = self.shared.recorder.clone();
        let binds = Arc::new(Semaphore::new(self.config.max_binds_in_flight.max(1)));
        let mut algorithm = Algorithm::new(
            Framework::default(),
            self.config.percentage_of_nodes_to_score,
        );
        let mut was_leader = false;
        loop {
            if !*leader.borrow_and_update() {
                if was_leader {
                    tracing::info!("not the leader any more: scheduling paused");
                    was_leader = false;
                }
                if leader.changed().await.is_err() {
                    return;
                }
                continue;
            }
            if !was_leader {
                tracing::info!(identity = %self.config.identity, "leading: scheduling");
                was_leader = true;
            }
            let now = Instant::now();
            let (popped, deadline) = {
                let mut st = self.shared.state.lock();
                if !(st.nodes_synced && st.pods_synced) {
                    (None, None)
                } else {
                    st.queue.flush_unschedulable_leftover(now);
                    (st.queue.pop(now), st.queue.next_backoff_deadline())
                }
            };
            let Some(pod) = popped else {
                let deadline = deadline
                    .unwrap_or(now + Duration::from_secs(30))
                    .min(now + Duration::from_secs(30));
                tokio::select! {
                    _ = self.shared.wake.notified() => {}
                    _ = tokio::time::sleep_until(deadline.into()) => {}
                    _ = leader.changed() => {}
                }
                continue;
            };
            // Wait for a bind slot before placing, so assumed pods never pile up unbounded.
            let permit = binds
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            self.schedule_one(&mut algorithm, pod, permit, &recorder);
        }
    }

    fn schedule_one(
        &self,
        algorithm: &mut Algorithm,
        pod: QueuedPod,
        permit: tokio::sync::OwnedSemaphorePermit,
        recorder: &Arc<Recorder>,
    ) {
        let started = Instant::now();
        let uid = pod.info.uid.clone();
        let mut st = self.shared.state.lock();
        // Deleted or bound while waiting for a bind slot.
        if st.queue.where_is(&uid).is_none() {
            return;
        }
        let result = algorithm.schedule(&pod.info, &st.cache);
        match result {
            Ok(placement) => {
                st.cache.assume(pod.info.clone(), &placement.node);
                drop(st);
                self.metrics.algorithm(started.elapsed());
                tracing::debug!(pod = %pod.info.key(), node = %placement.node,
                    evaluated = placement.evaluated, feasible = placement.feasible, "assumed");
                let client = self.client.clone();
                let shared = self.shared.clone();
                let metrics = self.metrics.clone();
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    let info = &pod.info;
                    let sent_at = corral_api::object::now();
                    let res = client
                        .bind(&info.namespace, &info.name, &info.uid, &placement.node)
                        .await;
                    drop(permit);
                    let now = Instant::now();
                    let mut st = shared.state.lock();
                    match res {
                        Ok(()) => {
                            st.queue.done(&info.uid);
                            drop(st);
                            recorder.scheduled(info, &placement.node, sent_at);
                            recorder.forget(&info.uid);
                            metrics.scheduled(now - started, now - pod.first_seen);
                            tracing::debug!(pod = %info.key(), node = %placement.node, "bound");
                        }
                        Err(e) => {
                            metrics.bind_error();
                            st.cache.forget(&info.uid);
                            if e.is_not_found() || e.is_conflict() {
                                // Gone, recreated or bound elsewhere: the watch has the truth.
                                tracing::info!(pod = %info.key(), node = %placement.node, error = %e, "bind refused");
                                st.queue.remove(&info.uid);
                            } else {
                                tracing::warn!(pod = %info.key(), node = %placement.node, error = %e, "bind failed: backing off");
                                st.queue.backoff(&info.uid, now);
                            }
                            drop(st);
                            shared.wake.notify_one();
                        }
                    }
                });
            }
            Err(fit) => {
                st.queue.unschedulable(&uid, Instant::now());
                drop(st);
                drop(permit);
                self.metrics.algorithm(started.elapsed());
                self.metrics.unschedulable();
                let message = fit.to_string();
                tracing::info!(pod = %pod.info.key(), attempts = pod.attempts, reason = %message, "unschedulable");
                recorder.failed_scheduling(pod.info, message);
            }
        }
    }
}

impl Shared {
    fn ours(&self, pod: &PodInfo) -> bool {
        self.scheduler_names.contains(&pod.scheduler_name)
    }

    fn pod_info(pod: &Pod) -> Option<Arc<PodInfo>> {
        match PodInfo::from_pod(pod) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring pod");
                None
            }
        }
    }

    fn on_node(&self, ev: Event<Node>) {
        let now = Instant::now();
        let mut st = self.state.lock();
        let moved = match ev {
            Event::Bookmark(_) => return,
            Event::Restarted(nodes, _) => {
                st.cache.replace_nodes(&nodes);
                st.nodes_synced = true;
                true
            }
            Event::Applied(node) => matches!(
                st.cache.apply_node(&node),
                Some(NodeChange::Added | NodeChange::Relevant)
            ),
            Event::Deleted(node) => {
                st.cache
                    .remove_node(node.metadata.name.as_deref().unwrap_or_default());
                false
            }
        };
        if moved {
            st.queue.move_all_unschedulable(now);
        }
        self.publish(&st);
        drop(st);
        self.wake.notify_one();
    }

    fn on_pod(&self, ev: Event<Pod>) {
        // Decode outside the lock: the scheduling loop shares it.
        let ev = match ev {
            Event::Bookmark(_) => return,
            Event::Restarted(pods, rv) => {
                Event::Restarted(pods.iter().filter_map(Self::pod_info).collect(), rv)
            }
            Event::Applied(pod) => match Self::pod_info(&pod) {
                Some(info) => Event::Applied(info),
                None => return,
            },
            Event::Deleted(pod) => match Self::pod_info(&pod) {
                Some(info) => Event::Deleted(info),
                None => return,
            },
        };
        let now = Instant::now();
        let mut st = self.state.lock();
        let mut freed = false;
        match ev {
            Event::Bookmark(_) => {}
            Event::Restarted(infos, _) => {
                let listed: HashSet<&str> = infos.iter().map(|p| p.uid.as_str()).collect();
                st.queue.retain(|uid| listed.contains(uid));
                let (bound, pending): (Vec<_>, Vec<_>) =
                    infos.iter().cloned().partition(|p| p.node_name.is_some());
                st.cache.replace_pods(bound);
                for p in pending {
                    self.pending(&mut st, p, now);
                }
                st.pods_synced = true;
                freed = true;
            }
            Event::Applied(info) => {
                if info.node_name.is_some() {
                    st.queue.remove(&info.uid);
                    // A pod newly bound (or confirmed) on a node can be what a parked pod's
                    // required pod affinity waits for.
                    let landed =
                        st.cache.node_of(&info.uid).is_none() || st.cache.is_assumed(&info.uid);
                    freed = st.cache.upsert_pod(info);
                    freed |= landed
                        && st
                            .queue
                            .any_unschedulable(|p| !p.affinity_required.is_empty());
                } else {
                    self.pending(&mut st, info, now);
                }
            }
            Event::Deleted(info) => {
                self.recorder.forget(&info.uid);
                st.queue.remove(&info.uid);
                freed = st.cache.remove_pod(&info.uid);
            }
        }
        if freed {
            st.queue.move_all_unschedulable(now);
        }
        self.publish(&st);
        drop(st);
        self.wake.notify_one();
    }

    fn publish(&self, st: &State) {
        self.metrics
            .nodes
            .store(st.cache.num_nodes() as u64, Ordering::Relaxed);
        self.metrics.set_pending(st.queue.len() as u64);
        self.metrics
            .synced
            .store(st.nodes_synced && st.pods_synced, Ordering::Relaxed);
    }

    fn pending(&self, st: &mut State, info: Arc<PodInfo>, now: Instant) {
        // Assumed (bind in flight or just done): an older unbound version must not requeue it.
        if st.cache.node_of(&info.uid).is_some() {
            return;
        }
        if self.ours(&info) && !info.deleting && !info.terminal {
            st.queue.add(info, now);
        } else {
            st.queue.remove(&info.uid);
        }
    }
}
