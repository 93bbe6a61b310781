//! `nodeSelector` and node affinity. Required terms (ORed, each an AND of label expressions and
//! `metadata.name` fields) filter; preferred terms add their weight to the nodes they match.
//! `matchFields` on `metadata.name` is how the DaemonSet controller pins a pod to its node.

use corral_api::rules::node_selector::{selector_matches, term_matches};

use super::normalize_by_max;
use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub struct NodeAffinity;

const MISMATCH: &str = "node(s) didn't match Pod's node affinity/selector";

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Status {
        let labels = &node.facts().labels;
        let selector_ok = selector_matches(&pod.node_selector, labels);
        let affinity_ok = pod
            .required_terms
            .as_ref()
            .is_none_or(|terms| terms.iter().any(|t| term_matches(t, labels, &node.name)));
        if selector_ok && affinity_ok {
            Status::Success
        } else {
            Status::unresolvable(MISMATCH)
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn weight(&self) -> i64 {
        2
    }
    fn applies(&self, pod: &PodInfo) -> bool {
        !pod.preferred_terms.is_empty()
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> i64 {
        let labels = &node.facts().labels;
        pod.preferred_terms
            .iter()
            .filter(|p| p.weight != 0 && term_matches(&p.preference, labels, &node.name))
            .map(|p| p.weight as i64)
            .sum()
    }
    fn normalize(&self, scores: &mut [i64]) {
        normalize_by_max(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::testing::node_json;
    use crate::podinfo::testing::pod_json;
    use serde_json::json;

    fn required(terms: serde_json::Value) -> std::sync::Arc<PodInfo> {
        pod_json(json!({"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}}))
    }

    #[test]
    fn selectors_and_required_terms_filter() {
        let s = CycleState::default();
        let ssd = node_json(
            "n1",
            json!({"metadata": {"labels": {"disk": "ssd", "gen": "5"}}}),
        );
        let hdd = node_json(
            "n2",
            json!({"metadata": {"labels": {"disk": "hdd", "gen": "3"}}}),
        );
        let cases = [
            ("no constraint", pod_json(json!({})), true, true),
            (
                "nodeSelector",
                pod_json(json!({"spec": {"nodeSelector": {"disk": "ssd"}}})),
                true,
                false,
            ),
            (
                "In",
                required(
                    json!([{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]),
                ),
                true,
                false,
            ),
            (
                "NotIn",
                required(
                    json!([{"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}]),
                ),
                false,
                true,
            ),
            (
                "Gt",
                required(
                    json!([{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}]),
                ),
                true,
                false,
            ),
            (
                "DoesNotExist",
                required(
                    json!([{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]),
                ),
                true,
                true,
            ),
            (
                "terms are ORed",
                required(json!([
                    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["nvme"]}]},
                    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}
                ])),
                false,
                true,
            ),
            (
                "matchFields pins by name (DaemonSet)",
                required(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]),
                ),
                false,
                true,
            ),
            (
                "empty term matches nothing",
                required(json!([{}])),
                false,
                false,
            ),
        ];
        for (why, pod, on_ssd, on_hdd) in cases {
            assert_eq!(
                NodeAffinity.filter(&pod, &ssd, &s).is_success(),
                on_ssd,
                "{why} on n1"
            );
            assert_eq!(
                NodeAffinity.filter(&pod, &hdd, &s).is_success(),
                on_hdd,
                "{why} on n2"
            );
        }
        assert_eq!(
            NodeAffinity.filter(
                &pod_json(json!({"spec": {"nodeSelector": {"x": "y"}}})),
                &ssd,
                &s
            ),
            Status::unresolvable(MISMATCH)
        );
    }

    #[test]
    fn preferred_terms_add_their_weight() {
        let s = CycleState::default();
        let ssd = node_json(
            "n1",
            json!({"metadata": {"labels": {"disk": "ssd", "zone": "a"}}}),
        );
        let hdd = node_json(
            "n2",
            json!({"metadata": {"labels": {"disk": "hdd", "zone": "a"}}}),
        );
        let pod = pod_json(json!({"spec": {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 80, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 20, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}
        ]}}}}));
        let mut scores = vec![
            NodeAffinity.score(&pod, &ssd, &s),
            NodeAffinity.score(&pod, &hdd, &s),
        ];
        assert_eq!(scores, vec![100, 20]);
        NodeAffinity.normalize(&mut scores);
        assert_eq!(scores, vec![100, 20]);
        assert!(!NodeAffinity.applies(&pod_json(json!({}))));
    }
}
