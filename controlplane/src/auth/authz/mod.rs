//! Authorization: the chain every API request goes through (system:masters, then the Node
//! authorizer, then RBAC), Kubernetes' "cannot" wording for a denial, NodeRestriction, the
//! access reviews (`can-i`), and the default roles and bindings reconciled at start.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Attributes, Authorizer, Decision, MASTERS};
use crate::registry::Registry;

pub mod bootstrap;
pub mod node;
pub mod rbac;
pub mod restriction;
pub mod review;

#[cfg(test)]
mod tests;

/// Kubernetes' authorizer chain: members of system:masters are allowed before any authorizer
/// is asked (kube-apiserver's privileged group); then the Node authorizer, then RBAC. A node
/// authorizer's "no opinion" carries why (`no relationship found ...`), kept for the denial.
pub struct Chain {
    node: node::NodeAuthorizer,
    rbac: rbac::RbacAuthorizer,
}

impl Chain {
    /// The cluster's chain, over the registry's memory.
    pub fn for_registry(registry: Arc<Registry>) -> Self {
        Self {
            node: node::NodeAuthorizer::new(registry.clone()),
            rbac: rbac::RbacAuthorizer::new(registry),
        }
    }
}

#[async_trait]
impl Authorizer for Chain {
    async fn authorize(&self, attrs: &Attributes) -> Decision {
        if attrs.user.in_group(MASTERS) {
            return Decision::Allow;
        }
        let (decision, why) = self.node.evaluate(attrs).await;
        match decision {
            Decision::NoOpinion => {}
            other => return other,
        }
        match self.rbac.authorize(attrs).await {
            Decision::NoOpinion => Decision::Deny(why.unwrap_or_default()),
            other => other,
        }
    }
}

/// Kubernetes' `forbiddenMessage`: `User "x" cannot list resource "secrets" in API group ""
/// in the namespace "default"` (`... at the cluster scope`; `resource "pods/status"`).
pub fn cannot(attrs: &Attributes) -> String {
    if !attrs.path.is_empty() {
        return format!(
            "User {:?} cannot {} path {:?}",
            attrs.user.name, attrs.verb, attrs.path
        );
    }
    let resource = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", attrs.namespace)
    };
    format!(
        "User {:?} cannot {} resource {:?} in API group {:?} {scope}",
        attrs.user.name, attrs.verb, resource, attrs.api_group
    )
}

/// The whole denial as kube-apiserver words it: `pods "p" is forbidden: User ... : reason`
/// (`pods is forbidden: ...` without a name; `deployments.apps ...` for a named group).
pub fn forbidden_message(attrs: &Attributes, reason: &str) -> String {
    if !attrs.path.is_empty() {
        let reason = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        return format!("forbidden: {}{reason}", cannot(attrs));
    }
    let mut what = attrs.resource.clone();
    if !attrs.api_group.is_empty() {
        what = format!("{what}.{}", attrs.api_group);
    }
    if !attrs.name.is_empty() {
        what = format!("{what} {:?}", attrs.name);
    }
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    format!("{what} is forbidden: {}{reason}", cannot(attrs))
}
