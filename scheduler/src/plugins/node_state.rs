//! Cordoned (`spec.unschedulable`) and not-Ready nodes take no new pods, unless the pod
//! tolerates the matching taint (as DaemonSet pods do).

use corral_api::rules::taints::{tolerated, unschedulable_taint, NOT_READY_KEY};
use k8s_openapi::api::core::v1::Taint;

use crate::framework::{CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Status {
        if !node.facts().unschedulable {
            return Status::Success;
        }
        if tolerated(&pod.tolerations, &unschedulable_taint()) {
            Status::Success
        } else {
            Status::unresolvable("node(s) were unschedulable")
        }
    }
}

pub struct NodeReady;

impl FilterPlugin for NodeReady {
    fn name(&self) -> &'static str {
        "NodeReady"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Status {
        if node.facts().ready {
            return Status::Success;
        }
        let tolerates_not_ready = ["NoSchedule", "NoExecute"].iter().all(|effect| {
            let taint = Taint {
                key: NOT_READY_KEY.into(),
                effect: effect.to_string(),
                ..Default::default()
            };
            tolerated(&pod.tolerations, &taint)
        });
        if tolerates_not_ready {
            Status::Success
        } else {
            Status::unresolvable("node(s) were not ready")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::testing::node_json;
    use crate::podinfo::testing::pod_json;
    use serde_json::json;

    #[test]
    fn cordoned_and_unready_nodes_are_filtered() {
        let state = CycleState::default();
        let plain = pod_json(json!({}));
        let daemon = pod_json(json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists"}
        ]}}));
        let ready = node_json("a", json!({}));
        let cordoned = node_json("b", json!({"spec": {"unschedulable": true}}));
        let unready = node_json(
            "c",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        );
        for (pod, node, plugin, want) in [
            (
                &plain,
                &ready,
                &NodeUnschedulable as &dyn FilterPlugin,
                Status::Success,
            ),
            (
                &plain,
                &cordoned,
                &NodeUnschedulable,
                Status::unresolvable("node(s) were unschedulable"),
            ),
            (&daemon, &cordoned, &NodeUnschedulable, Status::Success),
            (&plain, &ready, &NodeReady, Status::Success),
            (
                &plain,
                &unready,
                &NodeReady,
                Status::unresolvable("node(s) were not ready"),
            ),
            (&daemon, &unready, &NodeReady, Status::Success),
        ] {
            assert_eq!(
                plugin.filter(pod, node, &state),
                want,
                "{} on {}",
                plugin.name(),
                node.name
            );
        }
    }
}
