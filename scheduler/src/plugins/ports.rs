//! Host ports: two pods cannot both take the same port and protocol on one node.

use crate::framework::{CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Status {
        let conflict = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| want.conflicts(used)));
        if conflict {
            Status::unschedulable("node(s) didn't have free ports for the requested pod ports")
        } else {
            Status::Success
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::testing::node_json;
    use crate::podinfo::testing::pod_json;
    use serde_json::json;

    fn with_port(uid: &str, port: i32, protocol: &str) -> std::sync::Arc<PodInfo> {
        pod_json(
            json!({"metadata": {"uid": uid}, "spec": {"containers": [{"name": "c",
            "image": "i", "ports": [{"containerPort": 80, "hostPort": port, "protocol": protocol}]}]}}),
        )
    }

    #[test]
    fn taken_host_ports_are_refused() {
        let s = CycleState::default();
        let mut node = node_json("a", json!({}));
        node.add_pod(with_port("x", 8080, "TCP"));
        for (p, ok) in [
            (with_port("same", 8080, "TCP"), false),
            (with_port("udp", 8080, "UDP"), true),
            (with_port("other", 9090, "TCP"), true),
            (pod_json(json!({})), true),
        ] {
            assert_eq!(
                NodePorts.filter(&p, &node, &s).is_success(),
                ok,
                "{}",
                p.uid
            );
        }
    }
}
