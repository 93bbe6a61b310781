//! One scheduling attempt: filter a sample of nodes, score the feasible ones, pick the best.
//! Pure over the cache, so it is tested without a control plane.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cache::Cache;
use crate::framework::{FitError, Framework};
use crate::podinfo::PodInfo;

/// kube-scheduler's floor: below this many nodes every node is checked.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
pub const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// How many feasible nodes to look for before scoring (`percentageOfNodesToScore`).
/// `percentage` 0 means kube-scheduler's adaptive default: 50% minus 1% per 125 nodes, not
/// below 5%, and never fewer than 100 nodes.
pub fn num_feasible_nodes_to_find(num_nodes: usize, percentage: u32) -> usize {
    let percentage = percentage as usize;
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return num_nodes;
    }
    let pct = if percentage == 0 {
        (50usize.saturating_sub(num_nodes / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE)
    } else {
        percentage
    };
    (num_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: Arc<str>,
    pub evaluated: usize,
    pub feasible: usize,
}

pub struct Algorithm {
    pub framework: Framework,
    pub percentage_of_nodes_to_score: u32,
    next_start: usize,
    rng: StdRng,
}

impl Algorithm {
    pub fn new(framework: Framework, percentage_of_nodes_to_score: u32) -> Self {
        Algorithm {
            framework,
            percentage_of_nodes_to_score,
            next_start: 0,
            rng: StdRng::from_entropy(),
        }
    }

    pub fn schedule(&mut self, pod: &PodInfo, cache: &Cache) -> Result<Placement, FitError> {
        let n = cache.num_nodes();
        if n == 0 {
            return Err(FitError::new(0));
        }
        let state = self.framework.prepare(pod, cache);
        let want = num_feasible_nodes_to_find(n, self.percentage_of_nodes_to_score);
        let start = self.next_start % n;
        let mut feasible = Vec::with_capacity(want.min(n));
        let mut diagnosis = FitError::new(n);
        let mut processed = 0;
        // Start where the previous attempt stopped so every node gets its turn.
        for i in 0..n {
            let node = cache.node_at((start + i) % n);
            processed += 1;
            let status = self.framework.filter(pod, node, &state);
            if status.is_success() {
                feasible.push(node);
                if feasible.len() >= want {
                    break;
                }
            } else {
                diagnosis.record(&status);
            }
        }
        self.next_start = (start + processed) % n;
        if feasible.is_empty() {
            return Err(diagnosis);
        }
        let count = feasible.len();
        let placement = |node: &Arc<str>| Placement {
            node: node.clone(),
            evaluated: processed,
            feasible: count,
        };
        if count == 1 {
            return Ok(placement(&feasible[0].name));
        }

        let mut totals = vec![0i64; count];
        let mut scores = vec![0i64; count];
        for plugin in self.framework.scores.iter().filter(|p| p.applies(pod)) {
            for (s, node) in scores.iter_mut().zip(&feasible) {
                *s = plugin.score(pod, node, &state);
            }
            plugin.normalize(&mut scores);
            for (t, s) in totals.iter_mut().zip(&scores) {
                *t += plugin.weight() * s;
            }
        }
        // Highest total wins; ties are broken uniformly at random (reservoir sampling).
        let mut best = 0;
        let mut ties = 0u32;
        for (i, t) in totals.iter().enumerate() {
            if *t > totals[best] {
                best = i;
                ties = 1;
            } else if *t == totals[best] {
                ties += 1;
                if self.rng.gen_range(0..ties) == 0 {
                    best = i;
                }
            }
        }
        Ok(placement(&feasible[best].name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::testing::node_json;
    use crate::podinfo::testing::pod_json;
    use serde_json::json;

    #[test]
    fn sampling_follows_kube_scheduler() {
        for (nodes, pct, want) in [
            (50, 0, 50),
            (100, 0, 100),
            (1000, 0, 420),
            (5000, 0, 500),
            (10000, 0, 500),
            (100_000, 0, 5000),
            (5000, 100, 5000),
            (5000, 10, 500),
            (5000, 1, 100),
        ] {
            assert_eq!(
                num_feasible_nodes_to_find(nodes, pct),
                want,
                "{nodes} nodes at {pct}%"
            );
        }
    }

    fn cluster(n: usize) -> Cache {
        let mut c = Cache::new();
        for i in 0..n {
            let name = format!("n{i}");
            c.upsert_node(node_json(&name, json!({})).facts.unwrap(), &name);
        }
        c
    }

    #[test]
    fn a_pod_that_fits_nowhere_gets_every_node_counted() {
        let mut c = cluster(4);
        let taint = node_json(
            "n0",
            json!({"spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}}),
        );
        c.upsert_node(taint.facts.unwrap(), "n0");
        let big = pod_json(json!({"spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "5"}}}]}}));
        let mut alg = Algorithm::new(Framework::default(), 0);
        let err = alg.schedule(&big, &c).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/4 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 3 Insufficient cpu."
        );
    }

    #[test]
    fn large_clusters_are_sampled_and_the_start_rotates() {
        let c = cluster(1000);
        let mut alg = Algorithm::new(Framework::default(), 0);
        let pod = pod_json(json!({}));
        let first = alg.schedule(&pod, &c).unwrap();
        assert_eq!(first.feasible, 420);
        assert_eq!(first.evaluated, 420);
        assert_eq!(alg.next_start, 420);
        alg.schedule(&pod, &c).unwrap();
        assert_eq!(alg.next_start, 840);
    }

    #[test]
    fn replicas_of_one_owner_spread_over_nodes() {
        let mut c = cluster(3);
        let mut alg = Algorithm::new(Framework::default(), 0);
        for i in 0..6 {
            let pod = pod_json(
                json!({"metadata": {"uid": format!("p{i}"), "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs", "controller": true}]}}),
            );
            let placed = alg.schedule(&pod, &c).unwrap();
            c.assume(pod, &placed.node);
        }
        for i in 0..3 {
            assert_eq!(c.node(&format!("n{i}")).unwrap().pods.len(), 2, "n{i}");
        }
    }

    #[test]
    fn an_assumed_pod_is_counted_by_the_next_attempt() {
        let mut c = cluster(1);
        let mut alg = Algorithm::new(Framework::default(), 0);
        let pod = |uid: &str| {
            pod_json(
                json!({"metadata": {"uid": uid}, "spec": {"containers": [{"name": "c",
                "image": "i", "resources": {"requests": {"cpu": "3"}}}]}}),
            )
        };
        let p1 = pod("p1");
        let placed = alg.schedule(&p1, &c).unwrap();
        c.assume(p1, &placed.node);
        let err = alg.schedule(&pod("p2"), &c).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/1 nodes are available: 1 Insufficient cpu."
        );
    }
}
