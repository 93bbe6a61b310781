//! Requests against allocatable: a node fits when cpu, memory and pod count of the pods bound
//! and assumed there, plus this pod, stay within allocatable; nodes with more room score higher.

use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Status {
        let alloc = &node.facts().allocatable;
        let used = &node.requested;
        let mut reasons = Vec::new();
        if used.pods + 1 > alloc.pods {
            reasons.push("Too many pods".to_string());
        }
        if pod.requests.cpu > 0 && used.cpu + pod.requests.cpu > alloc.cpu {
            reasons.push("Insufficient cpu".to_string());
        }
        if pod.requests.memory > 0 && used.memory + pod.requests.memory > alloc.memory {
            reasons.push("Insufficient memory".to_string());
        }
        if reasons.is_empty() {
            Status::Success
        } else {
            Status::Unschedulable(reasons)
        }
    }
}

/// kube-scheduler's LeastAllocated strategy over cpu and memory, equally weighted.
pub struct LeastAllocated;

fn free_share(requested: i64, allocatable: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    (allocatable - requested) * 100 / allocatable
}

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesLeastAllocated"
    }
    fn weight(&self) -> i64 {
        1
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> i64 {
        let alloc = &node.facts().allocatable;
        let cpu = free_share(node.score_requested.cpu + pod.score_requests.cpu, alloc.cpu);
        let mem = free_share(
            node.score_requested.memory + pod.score_requests.memory,
            alloc.memory,
        );
        (cpu + mem) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::testing::node_json;
    use crate::podinfo::testing::pod_json;
    use serde_json::json;

    fn pod(cpu: &str, mem: &str) -> std::sync::Arc<PodInfo> {
        pod_json(json!({"metadata": {"uid": format!("{cpu}-{mem}")},
            "spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}))
    }

    #[test]
    fn requests_are_checked_against_what_is_left() {
        let s = CycleState::default();
        let mut half = node_json("half", json!({}));
        half.add_pod(pod("2", "4Gi"));
        let tiny = node_json("tiny", json!({"status": {"allocatable": {"pods": "0"}}}));
        for (node, p, want) in [
            (&half, pod("2", "4Gi"), Status::Success),
            (
                &half,
                pod("2100m", "1Gi"),
                Status::unschedulable("Insufficient cpu"),
            ),
            (
                &half,
                pod("1", "5Gi"),
                Status::unschedulable("Insufficient memory"),
            ),
            (
                &half,
                pod("3", "5Gi"),
                Status::Unschedulable(vec![
                    "Insufficient cpu".into(),
                    "Insufficient memory".into(),
                ]),
            ),
            (&tiny, pod("0", "0"), Status::unschedulable("Too many pods")),
        ] {
            assert_eq!(
                NodeResourcesFit.filter(&p, node, &s),
                want,
                "{} on {}",
                p.uid,
                node.name
            );
        }
    }

    #[test]
    fn emptier_nodes_score_higher() {
        let s = CycleState::default();
        let empty = node_json("empty", json!({}));
        let mut busy = node_json("busy", json!({}));
        busy.add_pod(pod("2", "4Gi"));
        let p = pod("1", "2Gi");
        assert_eq!(LeastAllocated.score(&p, &empty, &s), 75);
        assert_eq!(LeastAllocated.score(&p, &busy, &s), 25);
    }
}
