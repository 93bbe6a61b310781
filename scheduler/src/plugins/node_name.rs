//! A pod that names its node (`spec.nodeName`) fits only there.

use crate::framework::{CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Status {
        match pod.node_name.as_deref() {
            Some(n) if n != &*node.name => {
                Status::unresolvable("node(s) didn't match the requested node name")
            }
            _ => Status::Success,
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
    fn only_the_named_node_fits() {
        let s = CycleState::default();
        let named = pod_json(json!({"spec": {"nodeName": "a"}}));
        let free = pod_json(json!({}));
        for (pod, node, ok) in [
            (&named, "a", true),
            (&named, "b", false),
            (&free, "b", true),
        ] {
            let st = NodeName.filter(pod, &node_json(node, json!({})), &s);
            assert_eq!(st.is_success(), ok, "{node}");
        }
    }
}
