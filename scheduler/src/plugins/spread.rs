//! Spreads the pods of one owner (ReplicaSet, StatefulSet, ...) across nodes: the fewer pods
//! of the same controller a node already runs, the higher it scores.

use super::normalize_by_max;
use crate::framework::{CycleState, ScorePlugin};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub struct OwnerSpread;

impl ScorePlugin for OwnerSpread {
    fn name(&self) -> &'static str {
        "OwnerSpread"
    }
    fn weight(&self) -> i64 {
        2
    }
    fn applies(&self, pod: &PodInfo) -> bool {
        pod.owner.is_some()
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> i64 {
        let owner = pod.owner.as_deref();
        node.pods
            .iter()
            .filter(|p| p.owner.as_deref() == owner && p.namespace == pod.namespace)
            .count() as i64
    }
    fn normalize(&self, scores: &mut [i64]) {
        normalize_by_max(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::testing::node_json;
    use crate::podinfo::testing::pod_json;
    use serde_json::json;

    fn owned(uid: &str, owner: &str) -> std::sync::Arc<PodInfo> {
        pod_json(
            json!({"metadata": {"uid": uid, "ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": owner, "uid": owner, "controller": true}]}}),
        )
    }

    #[test]
    fn nodes_without_siblings_score_highest() {
        let s = CycleState::default();
        let empty = node_json("empty", json!({}));
        let mut one = node_json("one", json!({}));
        one.add_pod(owned("a", "rs1"));
        one.add_pod(owned("x", "rs2"));
        let mut two = node_json("two", json!({}));
        two.add_pod(owned("b", "rs1"));
        two.add_pod(owned("c", "rs1"));
        let p = owned("new", "rs1");
        let mut scores: Vec<i64> = [&empty, &one, &two]
            .iter()
            .map(|n| OwnerSpread.score(&p, n, &s))
            .collect();
        assert_eq!(scores, vec![0, 1, 2]);
        OwnerSpread.normalize(&mut scores);
        assert_eq!(scores, vec![100, 50, 0]);
        assert!(!OwnerSpread.applies(&pod_json(json!({}))));
    }
}
