//! Pod affinity, as kube-scheduler's InterPodAffinity does it: a pod with required terms goes
//! only to a topology domain that already holds a pod matching all of them (or anywhere, when
//! no pod in the cluster matches and the pod matches its own terms: the first of a group);
//! preferred terms raise the score of domains holding matching pods by their weight.

use std::collections::HashMap;

use super::topology_value;
use crate::cache::Cache;
use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::{AffinityTerm, PodInfo};

#[derive(Debug, Default)]
pub struct AffinityState {
    /// (topology key, value) → existing pods matching every required term in that domain.
    required: HashMap<(String, String), usize>,
    /// Summed weight of preferred terms matching pods, per domain.
    preferred: super::DomainWeights,
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    terms.iter().all(|t| t.matches(pod))
}

impl AffinityState {
    pub fn compute(pod: &PodInfo, cache: &Cache) -> Self {
        let mut state = AffinityState::default();
        if pod.affinity_required.is_empty() && pod.affinity_preferred.is_empty() {
            return state;
        }
        for node in cache.all_nodes() {
            for other in node.pods.iter().filter(|o| o.uid != pod.uid) {
                if !pod.affinity_required.is_empty() && matches_all(&pod.affinity_required, other) {
                    for term in &pod.affinity_required {
                        if let Some(v) = topology_value(node, &term.topology_key) {
                            *state
                                .required
                                .entry((term.topology_key.clone(), v.to_string()))
                                .or_default() += 1;
                        }
                    }
                }
                state.preferred.add(&pod.affinity_preferred, other, node);
            }
        }
        state
    }
}

pub struct PodAffinity;

impl FilterPlugin for PodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Status {
        if pod.affinity_required.is_empty() {
            return Status::Success;
        }
        let s = &state.affinity;
        let mut pods_exist = true;
        for term in &pod.affinity_required {
            // Every topology key must be a label of the node.
            let Some(v) = topology_value(node, &term.topology_key) else {
                return Status::unschedulable("node(s) didn't match pod affinity rules");
            };
            if s.required
                .get(&(term.topology_key.clone(), v.to_string()))
                .copied()
                .unwrap_or(0)
                == 0
            {
                pods_exist = false;
            }
        }
        if pods_exist || (s.required.is_empty() && matches_all(&pod.affinity_required, pod)) {
            Status::Success
        } else {
            Status::unschedulable("node(s) didn't match pod affinity rules")
        }
    }
}

impl ScorePlugin for PodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
    fn weight(&self) -> i64 {
        2
    }
    fn applies(&self, pod: &PodInfo) -> bool {
        !pod.affinity_preferred.is_empty()
    }
    fn score(&self, _pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> i64 {
        state.affinity.preferred.of(node)
    }
    /// Min-max scaling, as kube-scheduler's InterPodAffinity.
    fn normalize(&self, scores: &mut [i64]) {
        super::min_max_normalize(scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Framework;
    use crate::nodeinfo::testing::node_json;
    use crate::podinfo::testing::pod_json;
    use serde_json::json;
    use std::sync::Arc;

    fn pod(uid: &str, app: &str, node: Option<&str>, affinity: serde_json::Value) -> Arc<PodInfo> {
        pod_json(
            json!({"metadata": {"uid": uid, "name": uid, "labels": {"app": app}},
            "spec": {"nodeName": node, "affinity": affinity}}),
        )
    }

    fn near(app: &str, key: &str) -> serde_json::Value {
        json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}})
    }

    /// Nodes a and b in zone z1, c in zone z2.
    fn cluster() -> Cache {
        let mut c = Cache::new();
        for (n, zone) in [("a", "z1"), ("b", "z1"), ("c", "z2")] {
            let labels = json!({"topology.kubernetes.io/zone": zone});
            c.upsert_node(
                node_json(n, json!({"metadata": {"labels": labels}}))
                    .facts
                    .unwrap(),
                n,
            );
        }
        c
    }

    fn feasible(c: &Cache, p: &PodInfo) -> Vec<&'static str> {
        let state = Framework::default().prepare(p, c);
        ["a", "b", "c"]
            .into_iter()
            .filter(|n| {
                PodAffinity
                    .filter(p, c.node(n).unwrap(), &state)
                    .is_success()
            })
            .collect()
    }

    #[test]
    fn required_affinity_follows_matching_pods_by_topology() {
        let mut c = cluster();
        c.upsert_pod(pod("db1", "db", Some("a"), json!({})));
        let host = pod("w", "web", None, near("db", "kubernetes.io/hostname"));
        assert_eq!(feasible(&c, &host), ["a"], "same host as the db");
        let zone = pod("w", "web", None, near("db", "topology.kubernetes.io/zone"));
        assert_eq!(feasible(&c, &zone), ["a", "b"], "same zone as the db");
        let cache = pod("w", "web", None, near("cache", "kubernetes.io/hostname"));
        assert!(feasible(&c, &cache).is_empty(), "no cache pod anywhere");
        let state = Framework::default().prepare(&cache, &c);
        assert_eq!(
            PodAffinity.filter(&cache, c.node("a").unwrap(), &state),
            Status::unschedulable("node(s) didn't match pod affinity rules")
        );
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_goes_anywhere_the_rest_follow_it() {
        let mut c = cluster();
        let first = pod(
            "g1",
            "group",
            None,
            near("group", "topology.kubernetes.io/zone"),
        );
        assert_eq!(feasible(&c, &first), ["a", "b", "c"]);
        c.upsert_pod(pod(
            "g1",
            "group",
            Some("c"),
            near("group", "topology.kubernetes.io/zone"),
        ));
        let second = pod(
            "g2",
            "group",
            None,
            near("group", "topology.kubernetes.io/zone"),
        );
        assert_eq!(feasible(&c, &second), ["c"]);
    }

    #[test]
    fn preferred_affinity_scores_domains_with_matching_pods_higher() {
        let mut c = cluster();
        c.upsert_pod(pod("db1", "db", Some("b"), json!({})));
        let p = pod(
            "w",
            "web",
            None,
            json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 80, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}},
                    "topologyKey": "kubernetes.io/hostname"}}]}}),
        );
        let state = Framework::default().prepare(&p, &c);
        let mut scores: Vec<i64> = ["a", "b", "c"]
            .iter()
            .map(|n| PodAffinity.score(&p, c.node(n).unwrap(), &state))
            .collect();
        assert_eq!(scores, vec![0, 80, 0]);
        PodAffinity.normalize(&mut scores);
        assert_eq!(scores, vec![0, 100, 0]);
    }
}
