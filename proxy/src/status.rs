//! Ingress status: `status.loadBalancer.ingress[].ip` lists the InternalIP of every Ready
//! node (each node serves the Ingress port), written only when it changes. Pure helpers.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::networking::v1::{
    Ingress, IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus,
};

/// InternalIPs of the Ready nodes, sorted.
pub fn node_addresses(nodes: &[Arc<Node>]) -> Vec<String> {
    let mut out: Vec<String> = nodes
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .flat_map(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.addresses.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|a| a.type_ == "InternalIP")
                .map(|a| a.address)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The Ingress with its status set to `addresses`, or `None` when it already says so.
pub fn with_addresses(ingress: &Ingress, addresses: &[String]) -> Option<Ingress> {
    let current: Vec<String> = ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|l| l.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default();
    if current == addresses {
        return None;
    }
    let mut updated = ingress.clone();
    updated.status = Some(IngressStatus {
        load_balancer: Some(IngressLoadBalancerStatus {
            ingress: (!addresses.is_empty()).then(|| {
                addresses
                    .iter()
                    .map(|ip| IngressLoadBalancerIngress {
                        ip: Some(ip.clone()),
                        ..Default::default()
                    })
                    .collect()
            }),
        }),
    });
    Some(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeCondition, NodeStatus};

    fn node(ip: &str, ready: bool) -> Arc<Node> {
        Arc::new(Node {
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: "n".into(),
                    },
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.into(),
                    },
                ]),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "Unknown" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn addresses_are_ready_nodes_internal_ips_written_only_on_change() {
        let addrs = node_addresses(&[
            node("192.168.48.3", true),
            node("192.168.48.2", true),
            node("192.168.48.9", false),
        ]);
        assert_eq!(addrs, vec!["192.168.48.2", "192.168.48.3"]);
        let ing = Ingress::default();
        let updated = with_addresses(&ing, &addrs).expect("first write");
        assert_eq!(with_addresses(&updated, &addrs), None, "unchanged");
        let fewer = with_addresses(&updated, &addrs[..1]).expect("a node went away");
        assert_eq!(
            fewer
                .status
                .unwrap()
                .load_balancer
                .unwrap()
                .ingress
                .unwrap()
                .len(),
            1
        );
        assert_eq!(with_addresses(&ing, &[]), None);
    }
}
