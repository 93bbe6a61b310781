//! RBAC as Kubernetes evaluates it: a request is allowed when a rule of a role bound to the
//! user (directly or through a group) covers its verb, API group, resource (`*`,
//! `resource/subresource`, `*/subresource`) and name. The policy is read from the registry's
//! memory and re-parsed only when a role or binding changed.

use std::sync::Arc;

use async_trait::async_trait;
use corral_api::kinds::{self, ResourceInfo};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::auth::{Attributes, Authorizer, Decision, UserInfo};
use crate::registry::{decode_kv, prefix, Registry};
use crate::store::Revision;

/// Every role and binding of the cluster, parsed.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    pub cluster_roles: Vec<ClusterRole>,
    pub roles: Vec<Role>,
    pub cluster_bindings: Vec<ClusterRoleBinding>,
    pub bindings: Vec<RoleBinding>,
}

/// Whether one rule covers the request.
pub fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    let any = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
    if !any(&rule.verbs, &a.verb) {
        return false;
    }
    if !a.path.is_empty() {
        // A non-resource request: only `nonResourceURLs` cover it (exact, or a prefix
        // ending in `*`).
        return rule
            .non_resource_urls
            .iter()
            .flatten()
            .any(|u| *u == a.path || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p)));
    }
    if !any(rule.api_groups.as_deref().unwrap_or_default(), &a.api_group) {
        return false;
    }
    let resources = rule.resources.as_deref().unwrap_or_default();
    let resource_ok = if a.subresource.is_empty() {
        any(resources, &a.resource)
    } else {
        let full = format!("{}/{}", a.resource, a.subresource);
        let any_with = format!("*/{}", a.subresource);
        resources
            .iter()
            .any(|r| r == "*" || *r == full || *r == any_with)
    };
    if !resource_ok {
        return false;
    }
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => !a.name.is_empty() && names.contains(&a.name),
    }
}

fn subject_is(s: &Subject, user: &UserInfo, binding_namespace: &str) -> bool {
    match s.kind.as_str() {
        "User" => s.name == user.name,
        "Group" => user.in_group(&s.name),
        "ServiceAccount" => {
            let ns = s.namespace.as_deref().unwrap_or(binding_namespace);
            user.name == format!("system:serviceaccount:{ns}:{}", s.name)
        }
        _ => false,
    }
}

fn binds(subjects: &Option<Vec<Subject>>, user: &UserInfo, namespace: &str) -> bool {
    subjects
        .iter()
        .flatten()
        .any(|s| subject_is(s, user, namespace))
}

impl Policy {
    fn cluster_role(&self, name: &str) -> Option<&[PolicyRule]> {
        self.cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .map(|r| r.rules.as_deref().unwrap_or_default())
    }

    fn role(&self, namespace: &str, name: &str) -> Option<&[PolicyRule]> {
        self.roles
            .iter()
            .find(|r| {
                r.metadata.name.as_deref() == Some(name)
                    && r.metadata.namespace.as_deref() == Some(namespace)
            })
            .map(|r| r.rules.as_deref().unwrap_or_default())
    }

    fn rules_of(&self, r: &RoleRef, namespace: &str) -> &[PolicyRule] {
        match r.kind.as_str() {
            "ClusterRole" => self.cluster_role(&r.name),
            "Role" => self.role(namespace, &r.name),
            _ => None,
        }
        .unwrap_or_default()
    }

    /// Whether a binding gives the user a rule covering the request: cluster bindings
    /// everywhere, a namespace's bindings (to a Role or a ClusterRole) only in it.
    pub fn allows(&self, a: &Attributes) -> bool {
        let cluster = self
            .cluster_bindings
            .iter()
            .filter(|b| binds(&b.subjects, &a.user, ""))
            .flat_map(|b| self.rules_of(&b.role_ref, ""));
        let local = self
            .bindings
            .iter()
            .filter(|b| {
                !a.namespace.is_empty() && b.metadata.namespace.as_deref() == Some(&a.namespace)
            })
            .filter(|b| binds(&b.subjects, &a.user, &a.namespace))
            .flat_map(|b| self.rules_of(&b.role_ref, &a.namespace));
        cluster.chain(local).any(|rule| rule_allows(rule, a))
    }
}

const POLICY_KINDS: [&ResourceInfo; 4] = [
    &kinds::CLUSTERROLES,
    &kinds::ROLES,
    &kinds::CLUSTERROLEBINDINGS,
    &kinds::ROLEBINDINGS,
];

/// What a parsed policy was read from: per kind, the number of objects and the newest
/// revision. Revisions only grow, so any create, update or delete changes it.
type Fingerprint = [(usize, Revision); 4];

/// RBAC over the registry's in-memory store.
pub struct RbacAuthorizer {
    registry: Arc<Registry>,
    cache: Mutex<Option<(Fingerprint, Arc<Policy>)>>,
}

fn parse<T: DeserializeOwned>(kvs: &[crate::store::KeyValue]) -> Vec<T> {
    kvs.iter()
        .filter_map(|kv| match serde_json::from_value(decode_kv(kv)) {
            Ok(t) => Some(t),
            Err(e) => {
                warn!(key = %kv.key, error = %e, "unreadable RBAC object ignored");
                None
            }
        })
        .collect()
}

impl RbacAuthorizer {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            cache: Mutex::new(None),
        }
    }

    /// The current policy: the cached one while no role or binding changed.
    pub async fn policy(&self) -> Arc<Policy> {
        let mut lists = Vec::with_capacity(4);
        for info in POLICY_KINDS {
            let kvs = match self.registry.store().list(&prefix(info, "")).await {
                Ok((kvs, _)) => kvs,
                Err(e) => {
                    warn!(resource = info.plural, error = %e, "reading RBAC objects failed");
                    Vec::new()
                }
            };
            lists.push(kvs);
        }
        let print: Fingerprint = std::array::from_fn(|i| {
            let l = &lists[i];
            (
                l.len(),
                l.iter().map(|kv| kv.mod_revision).max().unwrap_or(0),
            )
        });
        if let Some((p, policy)) = self.cache.lock().as_ref() {
            if *p == print {
                return policy.clone();
            }
        }
        let policy = Arc::new(Policy {
            cluster_roles: parse(&lists[0]),
            roles: parse(&lists[1]),
            cluster_bindings: parse(&lists[2]),
            bindings: parse(&lists[3]),
        });
        *self.cache.lock() = Some((print, policy.clone()));
        policy
    }
}

#[async_trait]
impl Authorizer for RbacAuthorizer {
    async fn authorize(&self, attrs: &Attributes) -> Decision {
        if self.policy().await.allows(attrs) {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }
}

/// Ad-hoc rules by name, for tests and the default roles: `rule(&["get"], &[""], &["pods"])`.
pub fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PolicyRule {
        verbs: owned(verbs),
        api_groups: Some(owned(groups)),
        resources: Some(owned(resources)),
        ..Default::default()
    }
}
