//! The built-in filter and score plugins and the default set kube-scheduler would run.

use crate::framework::Framework;
use crate::nodeinfo::NodeInfo;

pub mod anti_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_state;
pub mod pod_affinity;
pub mod ports;
pub mod resources;
pub mod spread;
pub mod taints;

pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Filters cheapest and most selective first; scores weighted as kube-scheduler's defaults.
pub fn default_framework() -> Framework {
    Framework {
        filters: vec![
            Box::new(node_state::NodeUnschedulable),
            Box::new(node_state::NodeReady),
            Box::new(node_name::NodeName),
            Box::new(taints::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(ports::NodePorts),
            Box::new(resources::NodeResourcesFit),
            Box::new(anti_affinity::PodAntiAffinity),
            Box::new(pod_affinity::PodAffinity),
        ],
        scores: vec![
            Box::new(resources::LeastAllocated),
            Box::new(spread::OwnerSpread),
            Box::new(taints::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(anti_affinity::PodAntiAffinity),
            Box::new(pod_affinity::PodAffinity),
        ],
    }
}

/// The node's value for a topology key. Nodes without a hostname label are their own domain.
pub fn topology_value<'a>(node: &'a NodeInfo, key: &str) -> Option<&'a str> {
    match node.facts().labels.get(key) {
        Some(v) => Some(v),
        None if key == HOSTNAME_LABEL => Some(&node.name),
        None => None,
    }
}

/// Summed weights of preferred pod (anti-)affinity terms by topology key, then domain value.
#[derive(Debug, Default)]
pub struct DomainWeights(std::collections::HashMap<String, std::collections::HashMap<String, i64>>);

impl DomainWeights {
    /// Adds the weight of each of `terms` that matches `other`, running on `node`, to the
    /// node's domain for that term's topology key.
    pub fn add(
        &mut self,
        terms: &[(i32, crate::podinfo::AffinityTerm)],
        other: &crate::podinfo::PodInfo,
        node: &NodeInfo,
    ) {
        for (weight, term) in terms.iter().filter(|(_, t)| t.matches(other)) {
            if let Some(v) = topology_value(node, &term.topology_key) {
                *self
                    .0
                    .entry(term.topology_key.clone())
                    .or_default()
                    .entry(v.to_string())
                    .or_default() += i64::from(*weight);
            }
        }
    }

    /// The summed weight of every domain `node` belongs to.
    pub fn of(&self, node: &NodeInfo) -> i64 {
        self.0
            .iter()
            .filter_map(|(k, by_value)| by_value.get(topology_value(node, k)?))
            .sum()
    }
}

/// Scales raw scores into 0..=100 between their minimum and maximum (all 0 when equal).
pub fn min_max_normalize(scores: &mut [i64]) {
    let (min, max) = scores
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 { 100 * (*s - min) / diff } else { 0 };
    }
}

/// kube-scheduler's `DefaultNormalizeScore`: scales to 0..=100 by the maximum, optionally
/// reversed (fewer is better).
pub fn normalize_by_max(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = 100);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = 100 * *s / max;
        *s = if reverse { 100 - v } else { v };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_scales_to_a_hundred() {
        let mut s = vec![0, 5, 10];
        normalize_by_max(&mut s, false);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 5, 10];
        normalize_by_max(&mut s, true);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        normalize_by_max(&mut s, true);
        assert_eq!(s, vec![100, 100]);
    }
}
