//! The plugin interface: filters decide whether a node can take a pod, scores rank the nodes
//! that can. Modelled on kube-scheduler's framework, reduced to what Corral's plugins need.

use std::collections::BTreeMap;
use std::fmt;

use crate::cache::Cache;
use crate::nodeinfo::NodeInfo;
use crate::plugins::{self, anti_affinity::AntiAffinityState, pod_affinity::AffinityState};
use crate::podinfo::PodInfo;

/// A filter's verdict on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Success,
    /// The node cannot take the pod now but could after the cluster changes (pods leave).
    Unschedulable(Vec<String>),
    /// Nothing short of changing the node or the pod makes it fit (taints, selectors).
    Unresolvable(Vec<String>),
    /// The plugin could not decide.
    Error(String),
}

impl Status {
    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Status::Unschedulable(vec![reason.into()])
    }
    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Status::Unresolvable(vec![reason.into()])
    }
    pub fn is_success(&self) -> bool {
        matches!(self, Status::Success)
    }
    pub fn reasons(&self) -> Vec<String> {
        match self {
            Status::Success => Vec::new(),
            Status::Unschedulable(r) | Status::Unresolvable(r) => r.clone(),
            Status::Error(e) => vec![e.clone()],
        }
    }
}

/// Per-pod data computed once per scheduling attempt, before nodes are visited, for plugins
/// that need a cluster-wide view.
#[derive(Debug, Default)]
pub struct CycleState {
    pub anti_affinity: AntiAffinityState,
    pub affinity: AffinityState,
}

pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Status;
}

pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn weight(&self) -> i64;
    /// False when the plugin has nothing to say about this pod (its scores would all be equal).
    fn applies(&self, _pod: &PodInfo) -> bool {
        true
    }
    /// The raw score of one feasible node.
    fn score(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> i64;
    /// Brings the raw scores of all feasible nodes into 0..=100. By default they already are.
    fn normalize(&self, _scores: &mut [i64]) {}
}

pub struct Framework {
    pub filters: Vec<Box<dyn FilterPlugin>>,
    pub scores: Vec<Box<dyn ScorePlugin>>,
}

impl Default for Framework {
    fn default() -> Self {
        plugins::default_framework()
    }
}

impl Framework {
    pub fn prepare(&self, pod: &PodInfo, cache: &Cache) -> CycleState {
        CycleState {
            anti_affinity: AntiAffinityState::compute(pod, cache),
            affinity: AffinityState::compute(pod, cache),
        }
    }

    /// Runs filters in order, stopping at the first that rejects the node (as kube-scheduler).
    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Status {
        for f in &self.filters {
            let s = f.filter(pod, node, state);
            if !s.is_success() {
                return s;
            }
        }
        Status::Success
    }
}

/// Why a pod fits nowhere: how many nodes gave each reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub num_nodes: usize,
    pub reasons: BTreeMap<String, usize>,
    /// True when no node failed for a reason that freeing resources could fix.
    pub unresolvable: bool,
}

impl FitError {
    pub fn new(num_nodes: usize) -> Self {
        FitError {
            num_nodes,
            reasons: BTreeMap::new(),
            unresolvable: true,
        }
    }

    pub fn record(&mut self, status: &Status) {
        if !matches!(status, Status::Unresolvable(_)) {
            self.unresolvable = false;
        }
        for r in status.reasons() {
            *self.reasons.entry(r).or_default() += 1;
        }
    }
}

impl fmt::Display for FitError {
    /// kube-scheduler's wording: counts and reasons, sorted as strings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num_nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        parts.sort();
        write!(
            f,
            "0/{} nodes are available: {}.",
            self.num_nodes,
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_errors_read_like_kube_scheduler() {
        let mut e = FitError::new(4);
        for _ in 0..3 {
            e.record(&Status::unschedulable("Insufficient cpu"));
        }
        e.record(&Status::unresolvable(
            "node(s) had untolerated taint {node.kubernetes.io/unreachable: }",
        ));
        assert_eq!(
            e.to_string(),
            "0/4 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 3 Insufficient cpu."
        );
        assert!(!e.unresolvable);
    }

    #[test]
    fn an_empty_cluster_says_so() {
        assert_eq!(
            FitError::new(0).to_string(),
            "no nodes available to schedule pods"
        );
    }
}
