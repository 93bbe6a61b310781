//! NodeRestriction, as Kubernetes' admission plugin: a node identity writes only its own Node
//! (never the `node-restriction.kubernetes.io/` labels, never its taints once registered) and
//! only its own Lease. Pod writes are limited by the Node authorizer (its own pods only).

use corral_api::kinds::ResourceInfo;
use serde_json::Value;

use super::node::{own_lease, NODE_LEASE_NAMESPACE};

/// The IngressClass a node's proxy creates (`corral-proxy`'s `ingress::class::CLASS_NAME`).
pub const PROXY_INGRESS_CLASS: &str = "corral";

/// Labels only an administrator may set on a Node (workload isolation relies on them).
pub const RESTRICTED_LABEL_DOMAIN: &str = "node-restriction.kubernetes.io";

fn name(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn restricted(key: &str) -> bool {
    key.split_once('/').is_some_and(|(domain, _)| {
        domain == RESTRICTED_LABEL_DOMAIN
            || domain.ends_with(&format!(".{RESTRICTED_LABEL_DOMAIN}"))
    })
}

fn restricted_labels(v: Option<&Value>) -> Vec<(String, Value)> {
    v.and_then(|v| v.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| restricted(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Why NodeRestriction refuses a node's write, in Kubernetes' words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Restricted {
    #[error("node {node:?} is not allowed to modify node {target:?}")]
    OtherNode { node: String, target: String },
    #[error("node {node:?} is not allowed to {verb} the following labels: {}", keys.join(", "))]
    Labels {
        node: String,
        verb: &'static str,
        keys: Vec<String>,
    },
    #[error("node {node:?} is not allowed to modify taints")]
    Taints { node: String },
    #[error("can only access node lease with the same name as the requesting node")]
    OtherLease,
    #[error(
        "node {node:?} may only create the IngressClass {PROXY_INGRESS_CLASS:?}, not {target:?}"
    )]
    IngressClass { node: String, target: String },
}

/// Whether node `node` may write `new` (replacing `old`, if it exists) of kind `info` in
/// `namespace`.
pub fn admit(
    node: &str,
    info: &ResourceInfo,
    namespace: &str,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), Restricted> {
    match (info.group, info.plural) {
        ("", "nodes") => {
            let target = name(new);
            if target != node {
                return Err(Restricted::OtherNode {
                    node: node.into(),
                    target: target.into(),
                });
            }
            let (before, after) = (restricted_labels(old), restricted_labels(Some(new)));
            if before != after {
                let mut keys: Vec<String> = after
                    .iter()
                    .filter(|l| !before.contains(l))
                    .chain(before.iter().filter(|l| !after.contains(l)))
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.dedup();
                let verb = if old.is_some() { "modify" } else { "set" };
                return Err(Restricted::Labels {
                    node: node.into(),
                    verb,
                    keys,
                });
            }
            if let Some(old) = old {
                if old.pointer("/spec/taints") != new.pointer("/spec/taints") {
                    return Err(Restricted::Taints { node: node.into() });
                }
            }
            Ok(())
        }
        ("coordination.k8s.io", "leases") => {
            if namespace != NODE_LEASE_NAMESPACE || !own_lease(name(new), node) {
                return Err(Restricted::OtherLease);
            }
            Ok(())
        }
        ("networking.k8s.io", "ingressclasses") => {
            let target = name(new);
            if target != PROXY_INGRESS_CLASS {
                return Err(Restricted::IngressClass {
                    node: node.into(),
                    target: target.into(),
                });
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
