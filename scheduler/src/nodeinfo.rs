//! One node as the scheduler sees it: the facts plugins read from the Node object plus the
//! running totals of the pods bound or assumed on it.

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_api::rules::quantity;
use k8s_openapi::api::core::v1::{Node, Taint};

use crate::podinfo::{HostPort, PodInfo, Resources};
use crate::{Error, Result};

/// What the plugins need from a Node object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFacts {
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
    pub allocatable: Resources,
}

impl NodeFacts {
    pub fn from_node(node: &Node) -> Result<NodeFacts> {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let list = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let err = |field: &str, source| Error::Quantity {
            object: format!("node \"{name}\""),
            field: format!("status.allocatable.{field}"),
            source,
        };
        let mut allocatable = Resources::default();
        if let Some(list) = list {
            if let Some(q) = list.get("cpu") {
                allocatable.cpu = quantity::cpu_millis(&q.0).map_err(|e| err("cpu", e))?;
            }
            if let Some(q) = list.get("memory") {
                allocatable.memory = quantity::value(&q.0).map_err(|e| err("memory", e))?;
            }
            if let Some(q) = list.get("pods") {
                allocatable.pods = quantity::value(&q.0).map_err(|e| err("pods", e))?;
            }
        }
        Ok(NodeFacts {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            ready,
            allocatable,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: Arc<str>,
    /// `None` while pods reference a node whose Node object is not (or no longer) known.
    pub facts: Option<NodeFacts>,
    pub requested: Resources,
    pub score_requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
}

impl NodeInfo {
    pub fn new(name: Arc<str>, facts: Option<NodeFacts>) -> Self {
        NodeInfo {
            name,
            facts,
            requested: Resources::default(),
            score_requested: Resources::default(),
            pods: Vec::new(),
            used_ports: Vec::new(),
        }
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.score_requested.add(&pod.score_requests);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.score_requested.sub(&pod.score_requests);
        for hp in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        Some(pod)
    }

    /// The facts plugins read; an empty default when the Node object is unknown.
    pub fn facts(&self) -> &NodeFacts {
        static EMPTY: std::sync::OnceLock<NodeFacts> = std::sync::OnceLock::new();
        self.facts
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(NodeFacts::default))
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use serde_json::json;

    /// A Ready node with 4 cpu, 8Gi, 110 pods, plus the given JSON merged in.
    pub fn node_json(name: &str, v: serde_json::Value) -> NodeInfo {
        let mut base = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        crate::podinfo::testing::merge(&mut base, v);
        let node: Node = serde_json::from_value(base).expect("test node decodes");
        NodeInfo::new(
            name.into(),
            Some(NodeFacts::from_node(&node).expect("test node is valid")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::node_json;
    use crate::podinfo::testing::pod_json;
    use serde_json::json;

    #[test]
    fn adding_and_removing_pods_keeps_totals() {
        let mut n = node_json("n1", json!({}));
        assert_eq!(n.facts().allocatable.cpu, 4000);
        assert!(n.facts().ready);
        let p = pod_json(json!({"spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "500m"}},
            "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}));
        n.add_pod(p.clone());
        assert_eq!(n.requested.cpu, 500);
        assert_eq!(n.requested.pods, 1);
        assert_eq!(n.used_ports.len(), 1);
        n.remove_pod(&p.uid).unwrap();
        assert_eq!(n.requested.cpu, 0);
        assert_eq!(n.requested.pods, 0);
        assert!(n.used_ports.is_empty());
    }
}
