//! The scheduling cache: every node with the pods bound or assumed on it, kept from the watch
//! (no re-list per pod). A pod is assumed on its node as soon as the scheduler picks it, before
//! the bind returns, and forgotten if the bind fails.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::nodeinfo::{NodeFacts, NodeInfo};
use crate::podinfo::PodInfo;

#[derive(Debug, Clone)]
struct PodEntry {
    node: Arc<str>,
    assumed: bool,
}

/// How a node event changed what the scheduler can place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeChange {
    Added,
    /// Labels, taints, readiness, cordon or allocatable changed: pending pods may fit now.
    Relevant,
    /// Only fields the plugins do not read (heartbeats, images).
    Irrelevant,
}

/// Nodes live in a slab so the scheduling loop walks them by index, without hashing names.
#[derive(Debug, Default)]
pub struct Cache {
    slots: Vec<Option<NodeInfo>>,
    free: Vec<usize>,
    by_name: HashMap<Arc<str>, usize>,
    /// Slots of nodes that have a Node object, in a stable order for sampling.
    order: Vec<usize>,
    /// Position of each slot in `order` (`usize::MAX`: not a candidate).
    order_pos: Vec<usize>,
    pods: HashMap<String, PodEntry>,
    /// Pods with required anti-affinity terms, which every placement must respect.
    anti_affinity_pods: HashSet<String>,
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of schedulable candidates (nodes with a Node object).
    pub fn num_nodes(&self) -> usize {
        self.order.len()
    }

    pub fn num_pods(&self) -> usize {
        self.pods.len()
    }

    /// The `i`-th node of the sampling order.
    pub fn node_at(&self, i: usize) -> &NodeInfo {
        self.slots[self.order[i]]
            .as_ref()
            .expect("ordered slots are occupied")
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.slots[*self.by_name.get(name)?].as_ref()
    }

    fn node_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        let i = *self.by_name.get(name)?;
        self.slots[i].as_mut()
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    pub fn node_of(&self, uid: &str) -> Option<&str> {
        self.pods.get(uid).map(|p| &*p.node)
    }

    /// Pods with required anti-affinity and the node each is on.
    pub fn anti_affinity_pods(&self) -> impl Iterator<Item = (&NodeInfo, &Arc<PodInfo>)> {
        self.anti_affinity_pods.iter().filter_map(|uid| {
            let node = self.node(&self.pods.get(uid)?.node)?;
            let pod = node.pods.iter().find(|p| p.uid == *uid)?;
            Some((node, pod))
        })
    }

    /// Every node holding pods, with or without a Node object.
    pub fn all_nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.slots.iter().flatten()
    }

    fn insert_slot(&mut self, info: NodeInfo) -> usize {
        let name = info.name.clone();
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(info);
                i
            }
            None => {
                self.slots.push(Some(info));
                self.order_pos.push(usize::MAX);
                self.slots.len() - 1
            }
        };
        self.by_name.insert(name, i);
        i
    }

    fn remove_slot(&mut self, name: &str) {
        if let Some(i) = self.by_name.remove(name) {
            self.unorder(i);
            self.slots[i] = None;
            self.free.push(i);
        }
    }

    fn push_order(&mut self, slot: usize) {
        if self.order_pos[slot] == usize::MAX {
            self.order_pos[slot] = self.order.len();
            self.order.push(slot);
        }
    }

    fn unorder(&mut self, slot: usize) {
        let pos = std::mem::replace(&mut self.order_pos[slot], usize::MAX);
        if pos == usize::MAX {
            return;
        }
        self.order.swap_remove(pos);
        if let Some(&moved) = self.order.get(pos) {
            self.order_pos[moved] = pos;
        }
    }

    pub fn upsert_node(&mut self, facts: NodeFacts, name: &str) -> NodeChange {
        if let Some(&i) = self.by_name.get(name) {
            let n = self.slots[i].as_mut().expect("named slots are occupied");
            let change = match &n.facts {
                None => NodeChange::Added,
                Some(old) if *old == facts => NodeChange::Irrelevant,
                Some(_) => NodeChange::Relevant,
            };
            n.facts = Some(facts);
            self.push_order(i);
            return change;
        }
        let i = self.insert_slot(NodeInfo::new(name.into(), Some(facts)));
        self.push_order(i);
        NodeChange::Added
    }

    /// Applies a Node object; an invalid one is logged and leaves the cache as it was.
    pub fn apply_node(&mut self, node: &Node) -> Option<NodeChange> {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        match NodeFacts::from_node(node) {
            Ok(facts) => Some(self.upsert_node(facts, name)),
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "ignoring node");
                None
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(&i) = self.by_name.get(name) else {
            return;
        };
        self.unorder(i);
        let n = self.slots[i].as_mut().expect("named slots are occupied");
        n.facts = None;
        if n.pods.is_empty() {
            self.remove_slot(name);
        }
    }

    /// Replaces all nodes with a fresh list (after a re-list).
    pub fn replace_nodes(&mut self, nodes: &[Node]) {
        let keep: HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        let gone: Vec<Arc<str>> = self
            .order
            .iter()
            .filter_map(|&i| self.slots[i].as_ref())
            .filter(|n| !keep.contains(&*n.name))
            .map(|n| n.name.clone())
            .collect();
        for n in gone {
            self.remove_node(&n);
        }
        for n in nodes {
            self.apply_node(n);
        }
    }

    /// Records a pod bound to a node (from the watch). Confirms an assumed pod. Returns true
    /// when resources were freed somewhere (the pod moved off a node).
    pub fn upsert_pod(&mut self, pod: Arc<PodInfo>) -> bool {
        let Some(node) = pod.node_name.clone() else {
            return false;
        };
        if pod.terminal {
            return self.remove_pod(&pod.uid);
        }
        let mut freed = false;
        if let Some(entry) = self.pods.get(&pod.uid) {
            freed = *entry.node != *node;
            let old = entry.node.clone();
            self.detach(&old, &pod.uid);
        }
        self.attach(pod, &node, false);
        freed
    }

    /// Removes a pod (deleted, finished or forgotten). Returns true when it held resources.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(entry) = self.pods.remove(uid) else {
            return false;
        };
        self.anti_affinity_pods.remove(uid);
        self.detach(&entry.node, uid);
        true
    }

    /// Puts a pod on a node before its bind is confirmed, so the next pods see it.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        if let Some(entry) = self.pods.get(&pod.uid) {
            let old = entry.node.clone();
            self.detach(&old, &pod.uid);
        }
        self.attach(pod, node, true);
    }

    /// Undoes `assume` after a failed bind; a pod the watch already confirmed stays.
    pub fn forget(&mut self, uid: &str) -> bool {
        if self.is_assumed(uid) {
            self.remove_pod(uid)
        } else {
            false
        }
    }

    /// Replaces all bound pods with a fresh list (after a re-list), keeping assumed pods whose
    /// bind is still in flight.
    pub fn replace_pods(&mut self, pods: Vec<Arc<PodInfo>>) {
        let listed: HashSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, e)| !e.assumed && !listed.contains(uid.as_str()))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.remove_pod(&uid);
        }
        for p in pods {
            self.upsert_pod(p);
        }
    }

    fn attach(&mut self, pod: Arc<PodInfo>, node: &str, assumed: bool) {
        let i = match self.by_name.get(node) {
            Some(&i) => i,
            None => self.insert_slot(NodeInfo::new(node.into(), None)),
        };
        let n = self.slots[i].as_mut().expect("named slots are occupied");
        if !pod.anti_affinity_required.is_empty() {
            self.anti_affinity_pods.insert(pod.uid.clone());
        } else {
            self.anti_affinity_pods.remove(&pod.uid);
        }
        self.pods.insert(
            pod.uid.clone(),
            PodEntry {
                node: n.name.clone(),
                assumed,
            },
        );
        n.add_pod(pod);
    }

    fn detach(&mut self, node: &str, uid: &str) {
        if let Some(n) = self.node_mut(node) {
            n.remove_pod(uid);
            if n.facts.is_none() && n.pods.is_empty() {
                self.remove_slot(node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::testing::node_json;
    use crate::podinfo::testing::pod_json;
    use serde_json::json;

    fn cache_with(nodes: &[&str]) -> Cache {
        let mut c = Cache::new();
        for n in nodes {
            let info = node_json(n, json!({}));
            c.upsert_node(info.facts.unwrap(), n);
        }
        c
    }

    fn pod(uid: &str, node: Option<&str>) -> Arc<PodInfo> {
        pod_json(json!({"metadata": {"uid": uid, "name": uid},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": "1"}}}]}}))
    }

    #[test]
    fn an_assumed_pod_counts_until_forgotten() {
        let mut c = cache_with(&["a", "b"]);
        c.assume(pod("p1", None), "a");
        assert_eq!(c.node("a").unwrap().requested.cpu, 1000);
        assert!(c.is_assumed("p1"));
        assert!(c.forget("p1"));
        assert_eq!(c.node("a").unwrap().requested.cpu, 0);
        assert_eq!(c.num_pods(), 0);
    }

    #[test]
    fn the_watch_confirms_an_assumed_pod_and_forget_then_keeps_it() {
        let mut c = cache_with(&["a"]);
        c.assume(pod("p1", None), "a");
        c.upsert_pod(pod("p1", Some("a")));
        assert!(!c.is_assumed("p1"));
        assert!(!c.forget("p1"));
        assert_eq!(c.node("a").unwrap().requested.cpu, 1000);
        assert_eq!(c.node("a").unwrap().pods.len(), 1);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_the_node_without_being_candidates() {
        let mut c = cache_with(&[]);
        c.upsert_pod(pod("p1", Some("later")));
        assert_eq!(c.num_nodes(), 0);
        let info = node_json("later", json!({}));
        assert_eq!(
            c.upsert_node(info.facts.unwrap(), "later"),
            NodeChange::Added
        );
        assert_eq!(c.num_nodes(), 1);
        assert_eq!(c.node_at(0).requested.cpu, 1000);
    }

    #[test]
    fn node_changes_are_classified() {
        let mut c = cache_with(&["a"]);
        let same = node_json("a", json!({}));
        assert_eq!(
            c.upsert_node(same.facts.unwrap(), "a"),
            NodeChange::Irrelevant
        );
        let cordoned = node_json("a", json!({"spec": {"unschedulable": true}}));
        assert_eq!(
            c.upsert_node(cordoned.facts.unwrap(), "a"),
            NodeChange::Relevant
        );
    }

    #[test]
    fn removing_nodes_keeps_the_sampling_order_dense() {
        let mut c = cache_with(&["a", "b", "c"]);
        c.remove_node("a");
        assert_eq!(c.num_nodes(), 2);
        let names: HashSet<String> = (0..2).map(|i| c.node_at(i).name.to_string()).collect();
        assert_eq!(names, HashSet::from(["b".to_string(), "c".to_string()]));
        c.remove_node("c");
        assert_eq!(&*c.node_at(0).name, "b");
    }

    #[test]
    fn a_relist_drops_vanished_pods_but_keeps_assumed_ones() {
        let mut c = cache_with(&["a"]);
        c.upsert_pod(pod("gone", Some("a")));
        c.assume(pod("flying", None), "a");
        c.replace_pods(vec![pod("new", Some("a"))]);
        assert!(c.node_of("gone").is_none());
        assert!(c.is_assumed("flying"));
        assert_eq!(c.node_of("new"), Some("a"));
        assert_eq!(c.node("a").unwrap().requested.cpu, 2000);
    }

    #[test]
    fn finished_pods_release_their_node() {
        let mut c = cache_with(&["a"]);
        c.upsert_pod(pod("p", Some("a")));
        let done = pod_json(json!({"metadata": {"uid": "p"}, "spec": {"nodeName": "a"},
            "status": {"phase": "Succeeded"}}));
        assert!(c.upsert_pod(done));
        assert_eq!(c.node("a").unwrap().requested.pods, 0);
    }
}
