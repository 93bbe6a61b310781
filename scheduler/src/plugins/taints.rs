//! Taints and tolerations: NoSchedule and NoExecute taints the pod does not tolerate rule the
//! node out; untolerated PreferNoSchedule taints only lower its score.

use corral_api::rules::taints::{untolerated, HARD_EFFECTS, PREFER_NO_SCHEDULE};

use super::normalize_by_max;
use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Status {
        match untolerated(&node.facts().taints, &pod.tolerations, HARD_EFFECTS).next() {
            None => Status::Success,
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn weight(&self) -> i64 {
        3
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> i64 {
        untolerated(
            &node.facts().taints,
            &pod.tolerations,
            &[PREFER_NO_SCHEDULE],
        )
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

    #[test]
    fn hard_taints_filter_unless_tolerated() {
        let s = CycleState::default();
        let gpu = node_json(
            "gpu",
            json!({"spec": {"taints": [
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        );
        let gone = node_json(
            "gone",
            json!({"spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}}),
        );
        let soft = node_json(
            "soft",
            json!({"spec": {"taints": [
            {"key": "spot", "effect": "PreferNoSchedule"}]}}),
        );
        let plain = pod_json(json!({}));
        let gpu_pod = pod_json(json!({"spec": {"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}));
        for (pod, node, want) in [
            (
                &plain,
                &gpu,
                Status::unresolvable("node(s) had untolerated taint {dedicated: gpu}"),
            ),
            (&gpu_pod, &gpu, Status::Success),
            (
                &plain,
                &gone,
                Status::unresolvable(
                    "node(s) had untolerated taint {node.kubernetes.io/unreachable: }",
                ),
            ),
            (&plain, &soft, Status::Success),
        ] {
            assert_eq!(TaintToleration.filter(pod, node, &s), want, "{}", node.name);
        }
    }

    #[test]
    fn prefer_no_schedule_lowers_the_score() {
        let s = CycleState::default();
        let soft = node_json(
            "soft",
            json!({"spec": {"taints": [
            {"key": "spot", "effect": "PreferNoSchedule"}]}}),
        );
        let clean = node_json("clean", json!({}));
        let plain = pod_json(json!({}));
        let tolerant =
            pod_json(json!({"spec": {"tolerations": [{"key": "spot", "operator": "Exists"}]}}));
        let mut scores = vec![
            TaintToleration.score(&plain, &soft, &s),
            TaintToleration.score(&plain, &clean, &s),
        ];
        TaintToleration.normalize(&mut scores);
        assert_eq!(scores, vec![0, 100]);
        assert_eq!(TaintToleration.score(&tolerant, &soft, &s), 0);
    }
}
