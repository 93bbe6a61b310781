//! The node IPAM planner, pure: which Node without `spec.podCIDR` gets which free subnet of
//! the cluster CIDR. Used subnets are derived from the Nodes alone (no side table), so a
//! deleted Node's subnet is free again as soon as it is gone.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

/// The cluster CIDR cut into per-node subnets of one mask size (Kubernetes'
/// `--cluster-cidr` and `--node-cidr-mask-size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    cluster: Ipv4Net,
    mask: u8,
}

/// The most subnets one range is cut into (kube-controller-manager's limit: 16 bits).
pub const MAX_MASK_BITS: u8 = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("--cluster-cidr {value:?}: not an IPv4 CIDR such as 10.42.0.0/16")]
    Cidr { value: String },
    #[error("--cluster-cidr {value:?}: host bits are set (the network is {network})")]
    HostBits { value: String, network: Ipv4Net },
    #[error("--node-cidr-mask-size {mask}: must be at least the prefix length of --cluster-cidr {cluster} and at most 30")]
    Mask { mask: u8, cluster: Ipv4Net },
    #[error("--node-cidr-mask-size {mask}: cuts --cluster-cidr {cluster} into more than 2^{MAX_MASK_BITS} subnets")]
    TooMany { mask: u8, cluster: Ipv4Net },
}

impl Range {
    pub fn new(cluster: &str, mask: u8) -> Result<Range, RangeError> {
        let net = Ipv4Net::from_str(cluster).map_err(|_| RangeError::Cidr {
            value: cluster.into(),
        })?;
        if net.trunc() != net {
            return Err(RangeError::HostBits {
                value: cluster.into(),
                network: net.trunc(),
            });
        }
        if mask < net.prefix_len() || mask > 30 {
            return Err(RangeError::Mask { mask, cluster: net });
        }
        if mask - net.prefix_len() > MAX_MASK_BITS {
            return Err(RangeError::TooMany { mask, cluster: net });
        }
        Ok(Range { cluster: net, mask })
    }

    pub fn cluster(&self) -> Ipv4Net {
        self.cluster
    }

    pub fn mask(&self) -> u8 {
        self.mask
    }

    fn count(&self) -> u32 {
        1u32 << (self.mask - self.cluster.prefix_len())
    }

    fn subnet(&self, index: u32) -> Ipv4Net {
        let base = u32::from(self.cluster.network());
        let step = 1u64 << (32 - self.mask);
        let addr = Ipv4Addr::from((base as u64 + index as u64 * step) as u32);
        Ipv4Net::new(addr, self.mask).expect("mask checked in Range::new")
    }

    /// The indices of the subnets `cidr` overlaps (none when it lies outside the range).
    fn overlapped(&self, cidr: Ipv4Net) -> std::ops::Range<u32> {
        let (lo, hi) = (u32::from(cidr.network()), u32::from(cidr.broadcast()));
        let (clo, chi) = (
            u32::from(self.cluster.network()),
            u32::from(self.cluster.broadcast()),
        );
        if hi < clo || lo > chi {
            return 0..0;
        }
        let shift = 32 - self.mask as u32;
        let first = (lo.max(clo) - clo) >> shift;
        let last = (hi.min(chi) - clo) >> shift;
        first..last + 1
    }
}

impl Default for Range {
    fn default() -> Self {
        Range::new("10.42.0.0/16", 24).expect("valid default")
    }
}

/// What the planner needs of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    /// `spec.podCIDRs`, or `spec.podCIDR` when the list is empty.
    pub pod_cidrs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set `spec.podCIDR` and `spec.podCIDRs` of the node.
    Assign { node: String, cidr: Ipv4Net },
    /// No subnet is free for the node: it waits (an event says why).
    RangeFull { node: String },
}

/// Gives each node without a pod CIDR the lowest free subnet, nodes in name order. Subnets
/// held by any node (also ones outside the mask size, as hollow nodes or `--pod-cidr` may
/// set) are never handed out; unparsable CIDRs hold nothing.
pub fn plan(range: &Range, nodes: &[NodeView]) -> Vec<Action> {
    let mut used = BTreeSet::new();
    for n in nodes {
        for c in &n.pod_cidrs {
            if let Ok(net) = Ipv4Net::from_str(c) {
                used.extend(range.overlapped(net.trunc()));
            }
        }
    }
    let mut waiting: Vec<&NodeView> = nodes.iter().filter(|n| n.pod_cidrs.is_empty()).collect();
    waiting.sort_by(|a, b| a.name.cmp(&b.name));
    let mut free = (0..range.count()).filter(|i| !used.contains(i));
    waiting
        .into_iter()
        .map(|n| match free.next() {
            Some(i) => Action::Assign {
                node: n.name.clone(),
                cidr: range.subnet(i),
            },
            None => Action::RangeFull {
                node: n.name.clone(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidrs: &[&str]) -> NodeView {
        NodeView {
            name: name.into(),
            pod_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn assign(node: &str, cidr: &str) -> Action {
        Action::Assign {
            node: node.into(),
            cidr: cidr.parse().unwrap(),
        }
    }

    #[test]
    fn nodes_without_a_pod_cidr_get_the_lowest_free_subnets() {
        let r = Range::default();
        let small = Range::new("10.61.0.0/30", 31).unwrap_err();
        assert!(matches!(small, RangeError::Mask { .. }));
        let two = Range::new("10.61.0.0/23", 24).unwrap();
        let cases: Vec<(&str, Range, Vec<NodeView>, Vec<Action>)> = vec![
            ("no nodes", r, vec![], vec![]),
            (
                "two new nodes, in name order",
                r,
                vec![node("b", &[]), node("a", &[])],
                vec![assign("a", "10.42.0.0/24"), assign("b", "10.42.1.0/24")],
            ),
            (
                "kept subnets are skipped, a gap is filled first",
                r,
                vec![
                    node("a", &["10.42.0.0/24"]),
                    node("c", &["10.42.2.0/24"]),
                    node("new", &[]),
                    node("newer", &[]),
                ],
                vec![
                    assign("new", "10.42.1.0/24"),
                    assign("newer", "10.42.3.0/24"),
                ],
            ),
            (
                "a deleted node's subnet (absent from the list) is free again",
                r,
                vec![node("b", &["10.42.1.0/24"]), node("c", &[])],
                vec![assign("c", "10.42.0.0/24")],
            ),
            (
                "nodes with a pod CIDR are left alone, also outside the range",
                r,
                vec![node("a", &["10.88.0.0/24"]), node("b", &["10.42.5.0/24"])],
                vec![],
            ),
            (
                "a wider CIDR on one node holds every subnet it overlaps",
                r,
                vec![node("a", &["10.42.0.0/23"]), node("b", &[])],
                vec![assign("b", "10.42.2.0/24")],
            ),
            (
                "garbage holds nothing",
                r,
                vec![node("a", &["nonsense"]), node("b", &[])],
                vec![assign("b", "10.42.0.0/24")],
            ),
            (
                "a full range makes the rest wait",
                two,
                vec![node("a", &[]), node("b", &["10.61.1.0/24"]), node("c", &[])],
                vec![
                    assign("a", "10.61.0.0/24"),
                    Action::RangeFull { node: "c".into() },
                ],
            ),
        ];
        for (name, range, nodes, want) in cases {
            assert_eq!(plan(&range, &nodes), want, "{name}");
        }
    }

    #[test]
    fn bad_flags_are_refused_naming_the_flag() {
        for (cidr, mask, want) in [
            (
                "10.42.0.0",
                24,
                "--cluster-cidr \"10.42.0.0\": not an IPv4 CIDR",
            ),
            (
                "fd00::/64",
                80,
                "--cluster-cidr \"fd00::/64\": not an IPv4 CIDR",
            ),
            (
                "10.42.1.0/16",
                24,
                "host bits are set (the network is 10.42.0.0/16)",
            ),
            (
                "10.42.0.0/16",
                8,
                "--node-cidr-mask-size 8: must be at least the prefix length",
            ),
            ("10.42.0.0/16", 31, "--node-cidr-mask-size 31"),
            ("10.0.0.0/8", 30, "into more than 2^16 subnets"),
        ] {
            let e = Range::new(cidr, mask).unwrap_err().to_string();
            assert!(e.contains(want), "{cidr} /{mask}: {e}");
        }
        let r = Range::new("10.61.0.0/16", 16).unwrap();
        assert_eq!(r.count(), 1);
        assert_eq!(r.subnet(0).to_string(), "10.61.0.0/16");
        assert_eq!(Range::default().subnet(255).to_string(), "10.42.255.0/24");
    }
}
