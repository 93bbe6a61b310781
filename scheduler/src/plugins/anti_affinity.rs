//! Pod anti-affinity (typically on `kubernetes.io/hostname`): a pod's required terms keep it out
//! of topology domains holding pods its selector matches, existing pods' required terms keep
//! matching pods out of their domain, and preferred terms lower the score of such domains.
//! The domains are computed once per pod from the cache, so the per-node check is a lookup.

use std::collections::{HashMap, HashSet};

use super::topology_value;
use crate::cache::Cache;
use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

#[derive(Debug, Default)]
pub struct AntiAffinityState {
    /// topology key → values of domains holding a pod the incoming pod's required terms reject.
    own: HashMap<String, HashSet<String>>,
    /// (key, value) domains where an existing pod's required terms reject the incoming pod.
    existing: Vec<(String, String)>,
    /// Summed weight of preferred terms matching pods, per domain.
    preferred: super::DomainWeights,
}

impl AntiAffinityState {
    pub fn compute(pod: &PodInfo, cache: &Cache) -> Self {
        let mut state = AntiAffinityState::default();
        if !pod.anti_affinity_required.is_empty() || !pod.anti_affinity_preferred.is_empty() {
            for node in cache.all_nodes() {
                for other in node.pods.iter().filter(|o| o.uid != pod.uid) {
                    for term in pod
                        .anti_affinity_required
                        .iter()
                        .filter(|t| t.matches(other))
                    {
                        if let Some(v) = topology_value(node, &term.topology_key) {
                            state
                                .own
                                .entry(term.topology_key.clone())
                                .or_default()
                                .insert(v.to_string());
                        }
                    }
                    state
                        .preferred
                        .add(&pod.anti_affinity_preferred, other, node);
                }
            }
        }
        for (node, other) in cache.anti_affinity_pods() {
            if other.uid == pod.uid {
                continue;
            }
            for term in other
                .anti_affinity_required
                .iter()
                .filter(|t| t.matches(pod))
            {
                if let Some(v) = topology_value(node, &term.topology_key) {
                    state
                        .existing
                        .push((term.topology_key.clone(), v.to_string()));
                }
            }
        }
        state
    }
}

pub struct PodAntiAffinity;

impl FilterPlugin for PodAntiAffinity {
    fn name(&self) -> &'static str {
        "PodAntiAffinity"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Status {
        let s = &state.anti_affinity;
        let own_conflict = pod.anti_affinity_required.iter().any(|t| {
            let values = s.own.get(&t.topology_key);
            topology_value(node, &t.topology_key)
                .is_some_and(|v| values.is_some_and(|vs| vs.contains(v)))
        });
        if own_conflict {
            return Status::unschedulable("node(s) didn't match pod anti-affinity rules");
        }
        let existing_conflict = s
            .existing
            .iter()
            .any(|(k, v)| topology_value(node, k) == Some(v.as_str()));
        if existing_conflict {
            return Status::unschedulable(
                "node(s) didn't satisfy existing pods anti-affinity rules",
            );
        }
        Status::Success
    }
}

impl ScorePlugin for PodAntiAffinity {
    fn name(&self) -> &'static str {
        "PodAntiAffinity"
    }
    fn weight(&self) -> i64 {
        2
    }
    fn applies(&self, pod: &PodInfo) -> bool {
        !pod.anti_affinity_preferred.is_empty()
    }
    fn score(&self, _pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> i64 {
        -state.anti_affinity.preferred.of(node)
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

    fn web(uid: &str, node: Option<&str>, affinity: serde_json::Value) -> Arc<PodInfo> {
        pod_json(
            json!({"metadata": {"uid": uid, "name": uid, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "affinity": affinity}}),
        )
    }

    fn required_apart() -> serde_json::Value {
        json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}})
    }

    fn cluster() -> Cache {
        let mut c = Cache::new();
        for n in ["a", "b"] {
            c.upsert_node(node_json(n, json!({})).facts.unwrap(), n);
        }
        c
    }

    #[test]
    fn required_anti_affinity_keeps_replicas_on_distinct_hosts() {
        let fw = Framework::default();
        let mut c = cluster();
        c.upsert_pod(web("w1", Some("a"), json!({})));
        let apart = web("new", None, required_apart());
        let plain = web("plain", None, json!({}));
        let db = pod_json(json!({"metadata": {"uid": "db", "labels": {"app": "db"}}}));
        for (pod, node, ok, why) in [
            (&apart, "a", false, "a web pod runs on a"),
            (&apart, "b", true, "b is free"),
            (&plain, "a", true, "no anti-affinity"),
        ] {
            let state = fw.prepare(pod, &c);
            let st = PodAntiAffinity.filter(pod, c.node(node).unwrap(), &state);
            assert_eq!(st.is_success(), ok, "{why}");
        }
        // Symmetry: an existing pod with required anti-affinity keeps matching pods away.
        let mut c = cluster();
        c.upsert_pod(web("w1", Some("a"), required_apart()));
        let state = fw.prepare(&plain, &c);
        assert_eq!(
            PodAntiAffinity.filter(&plain, c.node("a").unwrap(), &state),
            Status::unschedulable("node(s) didn't satisfy existing pods anti-affinity rules")
        );
        let state = fw.prepare(&db, &c);
        assert!(PodAntiAffinity
            .filter(&db, c.node("a").unwrap(), &state)
            .is_success());
    }

    #[test]
    fn preferred_anti_affinity_scores_crowded_hosts_lower() {
        let fw = Framework::default();
        let mut c = cluster();
        c.upsert_pod(web("w1", Some("a"), json!({})));
        let pod = web(
            "new",
            None,
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}},
                "topologyKey": "kubernetes.io/hostname"}}]}}),
        );
        let state = fw.prepare(&pod, &c);
        let mut scores: Vec<i64> = ["a", "b"]
            .iter()
            .map(|n| PodAntiAffinity.score(&pod, c.node(n).unwrap(), &state))
            .collect();
        assert_eq!(scores, vec![-50, 0]);
        PodAntiAffinity.normalize(&mut scores);
        assert_eq!(scores, vec![0, 100]);
    }
}
