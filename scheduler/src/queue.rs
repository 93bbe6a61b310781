//! The scheduling queue: active (ready to try, by priority then arrival), back-off (failed
//! recently, waiting out an exponential delay) and unschedulable (fits nowhere; retried when
//! the cluster changes, or after a long timeout, never in a busy loop). Pure: time is passed in.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::podinfo::PodInfo;

#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    pub attempts: u32,
    /// When the scheduler first saw the pod, for end-to-end latency.
    pub first_seen: Instant,
    pub last_attempt: Option<Instant>,
    /// The scheduling cycle of the last pop.
    cycle: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: QueuedPod,
    at: Where,
    seq: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A pod left unschedulable this long is retried even without a cluster event.
    pub unschedulable_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            unschedulable_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Default)]
pub struct SchedulingQueue {
    config: QueueConfig,
    entries: HashMap<String, Entry>,
    /// (priority, earlier first, uid); stale heap items are skipped on pop.
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    unschedulable: HashSet<String>,
    scheduling_cycle: u64,
    /// The cycle at which the last cluster event arrived: a pod popped before it that then
    /// fails goes to back-off instead of waiting for another event that may never come.
    move_request_cycle: u64,
    seq: u64,
}

impl SchedulingQueue {
    pub fn new(config: QueueConfig) -> Self {
        SchedulingQueue {
            config,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn where_is(&self, uid: &str) -> Option<Where> {
        self.entries.get(uid).map(|e| e.at)
    }
    pub fn num_unschedulable(&self) -> usize {
        self.unschedulable.len()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, uid: &str) {
        let seq = self.next_seq();
        let e = self.entries.get_mut(uid).expect("entry exists");
        e.at = Where::Active;
        e.seq = seq;
        self.active
            .push((e.pod.info.priority, Reverse(seq), uid.to_string()));
    }

    fn push_backoff(&mut self, uid: &str, until: Instant) {
        let seq = self.next_seq();
        let e = self.entries.get_mut(uid).expect("entry exists");
        e.at = Where::Backoff(until);
        e.seq = seq;
        self.backoff.push(Reverse((until, seq, uid.to_string())));
    }

    fn backoff_duration(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(16);
        (self.config.initial_backoff * (1u32 << shift)).min(self.config.max_backoff)
    }

    /// Adds a new pending pod or refreshes a queued one. An unschedulable pod whose scheduling
    /// inputs changed is tried again.
    pub fn add(&mut self, info: Arc<PodInfo>, now: Instant) {
        let uid = info.uid.clone();
        match self.entries.get_mut(&uid) {
            None => {
                self.entries.insert(
                    uid.clone(),
                    Entry {
                        pod: QueuedPod {
                            info,
                            attempts: 0,
                            first_seen: now,
                            last_attempt: None,
                            cycle: 0,
                        },
                        at: Where::Active,
                        seq: 0,
                    },
                );
                self.push_active(&uid);
            }
            Some(e) => {
                let changed = !same_scheduling_inputs(&e.pod.info, &info);
                e.pod.info = info;
                if changed && matches!(e.at, Where::Unschedulable(_)) {
                    self.unschedulable.remove(&uid);
                    self.requeue(&uid, now);
                }
            }
        }
    }

    pub fn remove(&mut self, uid: &str) -> Option<QueuedPod> {
        self.unschedulable.remove(uid);
        self.entries.remove(uid).map(|e| e.pod)
    }

    /// Moves due back-off pods to active, then takes the most urgent active pod.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush_backoff(now);
        while let Some((_, Reverse(seq), uid)) = self.active.pop() {
            let Some(e) = self.entries.get_mut(&uid) else {
                continue;
            };
            if e.at != Where::Active || e.seq != seq {
                continue;
            }
            self.scheduling_cycle += 1;
            e.at = Where::InFlight;
            e.pod.cycle = self.scheduling_cycle;
            e.pod.attempts += 1;
            e.pod.last_attempt = Some(now);
            return Some(e.pod.clone());
        }
        None
    }

    /// When the earliest back-off ends, to sleep until then.
    pub fn next_backoff_deadline(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, _, _))| *t)
    }

    pub fn has_active(&mut self, now: Instant) -> bool {
        self.flush_backoff(now);
        self.active.iter().any(|(_, Reverse(seq), uid)| {
            self.entries
                .get(uid)
                .is_some_and(|e| e.at == Where::Active && e.seq == *seq)
        })
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((t, seq, _))) = self.backoff.peek() {
            if *t > now {
                break;
            }
            let (seq, uid) = (*seq, self.backoff.pop().expect("peeked").0 .2);
            let valid = self
                .entries
                .get(&uid)
                .is_some_and(|e| matches!(e.at, Where::Backoff(_)) && e.seq == seq);
            if valid {
                self.push_active(&uid);
            }
        }
    }

    /// The attempt found no node. Parks the pod until the cluster changes, unless it already
    /// changed while the pod was being tried.
    pub fn unschedulable(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        if e.at != Where::InFlight {
            return;
        }
        if self.move_request_cycle >= e.pod.cycle {
            let until = now + self.backoff_duration(e.pod.attempts);
            self.push_backoff(uid, until);
        } else {
            self.entries.get_mut(uid).expect("present").at = Where::Unschedulable(now);
            self.unschedulable.insert(uid.to_string());
        }
    }

    /// The attempt failed for a transient reason (bind error): retry after a back-off.
    pub fn backoff(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        let until = now + self.backoff_duration(e.pod.attempts);
        self.unschedulable.remove(uid);
        self.push_backoff(uid, until);
    }

    /// Keeps only pods for which `keep(uid)` holds (after a re-list).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|uid| !keep(uid))
            .cloned()
            .collect();
        for uid in gone {
            self.remove(&uid);
        }
    }

    /// The pod is bound: it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        self.remove(uid);
    }

    fn requeue(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        let until = e
            .pod
            .last_attempt
            .map(|t| t + self.backoff_duration(e.pod.attempts));
        match until {
            Some(until) if until > now => self.push_backoff(uid, until),
            _ => self.push_active(uid),
        }
    }

    /// A cluster event (node added or changed, pod deleted) may let parked pods fit.
    pub fn move_all_unschedulable(&mut self, now: Instant) {
        self.move_request_cycle = self.scheduling_cycle;
        let uids: Vec<String> = self.unschedulable.drain().collect();
        for uid in uids {
            self.requeue(&uid, now);
        }
    }

    /// Whether a parked pod satisfies `f` (to move them only for events that concern them).
    pub fn any_unschedulable(&self, f: impl Fn(&PodInfo) -> bool) -> bool {
        self.unschedulable
            .iter()
            .filter_map(|uid| self.entries.get(uid))
            .any(|e| f(&e.pod.info))
    }

    /// Retries pods parked longer than the timeout, in case an event was missed.
    pub fn flush_unschedulable_leftover(&mut self, now: Instant) {
        let timeout = self.config.unschedulable_timeout;
        let old: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                matches!(self.entries[*uid].at, Where::Unschedulable(since) if now.duration_since(since) >= timeout)
            })
            .cloned()
            .collect();
        for uid in old {
            self.unschedulable.remove(&uid);
            self.requeue(&uid, now);
        }
    }
}

/// Whether two versions of a pod would schedule the same (status and version aside).
fn same_scheduling_inputs(a: &PodInfo, b: &PodInfo) -> bool {
    a.requests == b.requests
        && a.labels == b.labels
        && a.node_selector == b.node_selector
        && a.required_terms == b.required_terms
        && a.preferred_terms == b.preferred_terms
        && a.tolerations == b.tolerations
        && a.host_ports == b.host_ports
        && a.priority == b.priority
        && a.anti_affinity_required.len() == b.anti_affinity_required.len()
        && a.anti_affinity_preferred.len() == b.anti_affinity_preferred.len()
        && a.affinity_required.len() == b.affinity_required.len()
        && a.affinity_preferred.len() == b.affinity_preferred.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::testing::pod_json;
    use serde_json::json;

    fn pod(uid: &str, priority: i32) -> Arc<PodInfo> {
        pod_json(json!({"metadata": {"uid": uid}, "spec": {"priority": priority}}))
    }

    #[test]
    fn active_pods_pop_by_priority_then_arrival() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add(pod("a", 0), now);
        q.add(pod("b", 10), now);
        q.add(pod("c", 0), now);
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop(now).map(|p| p.info.uid.clone())).collect();
        assert_eq!(order, vec!["b", "a", "c"]);
    }

    #[test]
    fn an_unschedulable_pod_waits_for_a_cluster_event() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add(pod("a", 0), t0);
        q.pop(t0).unwrap();
        q.unschedulable("a", t0);
        assert!(matches!(q.where_is("a"), Some(Where::Unschedulable(_))));
        // No event: nothing to do, however long we look (no busy loop).
        assert!(q.pop(t0 + Duration::from_secs(60)).is_none());
        // A node arrives: the pod goes to back-off (its 1s has passed, so straight to active).
        q.move_all_unschedulable(t0 + Duration::from_secs(60));
        assert_eq!(q.where_is("a"), Some(Where::Active));
        assert_eq!(q.pop(t0 + Duration::from_secs(60)).unwrap().attempts, 2);
    }

    #[test]
    fn an_event_during_the_attempt_sends_the_pod_to_backoff() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add(pod("a", 0), t0);
        q.pop(t0).unwrap();
        q.move_all_unschedulable(t0);
        q.unschedulable("a", t0);
        assert_eq!(
            q.where_is("a"),
            Some(Where::Backoff(t0 + Duration::from_secs(1)))
        );
        assert!(q.pop(t0).is_none());
        assert_eq!(q.next_backoff_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(q.pop(t0 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add(pod("a", 0), t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            q.pop(now).unwrap();
            q.backoff("a", now);
            let until = q.next_backoff_deadline().unwrap();
            waits.push((until - now).as_secs());
            now = until;
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn a_changed_pod_leaves_the_unschedulable_queue_but_a_status_update_does_not() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add(pod("a", 0), t0);
        q.pop(t0).unwrap();
        q.unschedulable("a", t0);
        q.add(
            pod_json(json!({"metadata": {"uid": "a", "resourceVersion": "9"},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False"}]}})),
            later,
        );
        assert!(matches!(q.where_is("a"), Some(Where::Unschedulable(_))));
        q.add(pod_json(json!({"metadata": {"uid": "a"}, "spec": {"tolerations": [{"operator": "Exists"}]}})), later);
        assert_eq!(q.where_is("a"), Some(Where::Active));
    }

    #[test]
    fn leftover_unschedulable_pods_are_retried_after_the_timeout() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add(pod("a", 0), t0);
        q.pop(t0).unwrap();
        q.unschedulable("a", t0);
        q.flush_unschedulable_leftover(t0 + Duration::from_secs(299));
        assert_eq!(q.num_unschedulable(), 1);
        q.flush_unschedulable_leftover(t0 + Duration::from_secs(300));
        assert_eq!(q.num_unschedulable(), 0);
        assert!(q.pop(t0 + Duration::from_secs(300)).is_some());
    }

    #[test]
    fn removed_pods_are_skipped() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add(pod("a", 0), t0);
        q.add(pod("b", 0), t0);
        q.remove("a");
        assert_eq!(q.pop(t0).unwrap().info.uid, "b");
        assert!(q.pop(t0).is_none());
    }
}
