//! The Node authorizer, as Kubernetes': a node identity (`system:node:<name>` in
//! `system:nodes`) reads the Secrets, ConfigMaps, claims and volumes of the pods bound to it,
//! reads what its agent and proxy follow (nodes, pods, services, endpoints, ingresses), and
//! writes its own Node and Leases (heartbeat, proxy report), the status and deletion of its pods, and events; its proxy
//! (the ingress controller, with the node's credentials) writes Ingress status.

use std::sync::Arc;

use corral_api::kinds;
use corral_api::selector::{FieldSelector, LabelSelectorExpr};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodSpec};
use tracing::warn;

use crate::auth::{Attributes, Decision};
use crate::registry::{ApiError, Registry};

/// The namespace of node heartbeat Leases (and of the proxies' reports).
pub const NODE_LEASE_NAMESPACE: &str = corral_api::rules::programmed::NAMESPACE;

/// The Leases a node writes: its kubelet heartbeat and its proxy's report.
pub fn own_lease(name: &str, node: &str) -> bool {
    name == node || corral_api::rules::programmed::node_of(name) == Some(node)
}

/// What the decision needs read from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Nothing,
    /// The node's pods in `namespace` that may use the object `name` of `resource` (one
    /// that does is enough).
    PodsUsing {
        namespace: String,
        resource: String,
        name: String,
    },
    /// One pod (is it bound to the node?).
    Pod {
        namespace: String,
        name: String,
    },
    /// The node's pods everywhere and the claims they use (is a volume theirs?).
    Claims,
}

/// What was read for a [`Lookup`]: pods are the node's own (or the one pod asked about).
#[derive(Debug, Clone, Default)]
pub struct Related {
    pub pods: Vec<Pod>,
    pub claims: Vec<PersistentVolumeClaim>,
}

fn graph_kind(a: &Attributes) -> bool {
    a.api_group.is_empty()
        && matches!(
            a.resource.as_str(),
            "secrets" | "configmaps" | "persistentvolumeclaims" | "persistentvolumes"
        )
}

/// A get, or a list/watch narrowed to one name (`metadata.name=` field selector).
fn named_read(a: &Attributes) -> bool {
    a.subresource.is_empty()
        && !a.name.is_empty()
        && matches!(a.verb.as_str(), "get" | "list" | "watch")
}

/// What to read before deciding on `a` for node `node`.
pub fn lookup(a: &Attributes) -> Lookup {
    if graph_kind(a) && named_read(a) {
        return if a.resource == "persistentvolumes" {
            Lookup::Claims
        } else {
            Lookup::PodsUsing {
                namespace: a.namespace.clone(),
                resource: a.resource.clone(),
                name: a.name.clone(),
            }
        };
    }
    let pod_write = a.api_group.is_empty()
        && a.resource == "pods"
        && ((a.subresource.is_empty() && a.verb == "delete")
            || (a.subresource == "status" && matches!(a.verb.as_str(), "update" | "patch")));
    if pod_write {
        return Lookup::Pod {
            namespace: a.namespace.clone(),
            name: a.name.clone(),
        };
    }
    Lookup::Nothing
}

/// Names of the objects of `resource` a pod spec uses: volumes (projected too), env and
/// envFrom of every container, image pull Secrets.
pub fn references(spec: &PodSpec, resource: &str) -> Vec<String> {
    let mut out = Vec::new();
    let secrets = resource == "secrets";
    let configmaps = resource == "configmaps";
    for v in spec.volumes.iter().flatten() {
        if secrets {
            out.extend(v.secret.as_ref().and_then(|s| s.secret_name.clone()));
        }
        if configmaps {
            out.extend(v.config_map.as_ref().map(|c| c.name.clone()));
        }
        if resource == "persistentvolumeclaims" {
            out.extend(
                v.persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.clone()),
            );
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if secrets {
                out.extend(p.secret.as_ref().map(|s| s.name.clone()));
            }
            if configmaps {
                out.extend(p.config_map.as_ref().map(|c| c.name.clone()));
            }
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for e in c.env.iter().flatten() {
            let from = e.value_from.as_ref();
            if secrets {
                out.extend(
                    from.and_then(|f| f.secret_key_ref.as_ref())
                        .map(|r| r.name.clone()),
                );
            }
            if configmaps {
                out.extend(
                    from.and_then(|f| f.config_map_key_ref.as_ref())
                        .map(|r| r.name.clone()),
                );
            }
        }
        for e in c.env_from.iter().flatten() {
            if secrets {
                out.extend(e.secret_ref.as_ref().map(|r| r.name.clone()));
            }
            if configmaps {
                out.extend(e.config_map_ref.as_ref().map(|r| r.name.clone()));
            }
        }
    }
    if secrets {
        out.extend(
            spec.image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone()),
        );
    }
    out
}

fn bound_to(pod: &Pod, node: &str) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
}

fn no_relationship(node: &str) -> (Decision, Option<String>) {
    (
        Decision::NoOpinion,
        Some(format!(
            "no relationship found between node '{node}' and this object"
        )),
    )
}

fn allow_if(ok: bool, node: &str) -> (Decision, Option<String>) {
    if ok {
        (Decision::Allow, None)
    } else {
        no_relationship(node)
    }
}

/// The Node authorizer's answer for node `node`, with the reason of a "no opinion" (kept in
/// the denial when RBAC does not allow either).
pub fn decide(node: &str, a: &Attributes, related: &Related) -> (Decision, Option<String>) {
    let verb = a.verb.as_str();
    let read = matches!(verb, "get" | "list" | "watch");
    if graph_kind(a) {
        if !named_read(a) {
            return (
                Decision::NoOpinion,
                Some("can only get individual resources of this type".into()),
            );
        }
        if a.resource == "persistentvolumes" {
            let ours = related.claims.iter().any(|c| {
                c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(a.name.as_str())
            });
            return allow_if(ours, node);
        }
        let used = related.pods.iter().any(|p| {
            bound_to(p, node)
                && p.metadata.namespace.as_deref() == Some(a.namespace.as_str())
                && p.spec
                    .as_ref()
                    .is_some_and(|s| references(s, &a.resource).contains(&a.name))
        });
        return allow_if(used, node);
    }
    let allow = match (
        a.api_group.as_str(),
        a.resource.as_str(),
        a.subresource.as_str(),
    ) {
        ("", "nodes", "") if read || verb == "create" => true,
        ("", "nodes", "" | "status") if matches!(verb, "update" | "patch") => a.name == node,
        ("", "pods", "") if read => true,
        ("", "pods", "") if verb == "delete" => {
            // A pod already gone is not found, not forbidden.
            return allow_if(
                related.pods.is_empty() || related.pods.iter().all(|p| bound_to(p, node)),
                node,
            );
        }
        ("", "pods", "status") if matches!(verb, "update" | "patch") => {
            return allow_if(related.pods.iter().any(|p| bound_to(p, node)), node);
        }
        ("", "services" | "endpoints", "") if read => true,
        ("networking.k8s.io", "ingresses" | "ingressclasses", "") if read => true,
        // The node's proxy is the cluster's ingress controller: it publishes the addresses it
        // serves an Ingress on, and creates the default IngressClass (NodeRestriction: only it).
        ("networking.k8s.io", "ingresses", "status") => matches!(verb, "update" | "patch"),
        ("networking.k8s.io", "ingressclasses", "") => verb == "create",
        ("", "events", "") => matches!(verb, "create" | "update" | "patch"),
        // Heartbeats and the proxies' programmed-endpoints reports: every node reads them all
        // (an agent waits for every proxy), and writes its own kubelet and proxy Leases.
        ("coordination.k8s.io", "leases", "") if a.namespace == NODE_LEASE_NAMESPACE => {
            read || verb == "create"
                || (matches!(verb, "update" | "patch" | "delete") && own_lease(&a.name, node))
        }
        _ => false,
    };
    if allow {
        (Decision::Allow, None)
    } else {
        (Decision::NoOpinion, None)
    }
}

/// The Node authorizer over the registry's memory.
pub struct NodeAuthorizer {
    registry: Arc<Registry>,
}

impl NodeAuthorizer {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// The node's pods in `namespace` (all namespaces for ""), as stored JSON.
    async fn pods_on_raw(&self, node: &str, namespace: &str) -> Result<Vec<Vec<u8>>, ApiError> {
        let fields = FieldSelector::parse(&format!("spec.nodeName={node}"))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let everything = LabelSelectorExpr::parse("").expect("the empty selector parses");
        let page = self
            .registry
            .list_raw(
                &kinds::PODS,
                namespace,
                &everything,
                &fields,
                &Default::default(),
            )
            .await?;
        Ok(page.items)
    }

    async fn pods_on(&self, node: &str, namespace: &str) -> Result<Vec<Pod>, ApiError> {
        Ok(self
            .pods_on_raw(node, namespace)
            .await?
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect())
    }

    async fn read(&self, node: &str, lookup: &Lookup) -> Result<Related, ApiError> {
        let mut related = Related::default();
        match lookup {
            Lookup::Nothing => {}
            Lookup::PodsUsing {
                namespace,
                resource,
                name,
            } => {
                // A pod that uses the object holds its name as a JSON string: the others are
                // not parsed (a node's pods in a namespace can be many), and the first pod
                // that uses it settles the question.
                let needle = serde_json::to_vec(name).expect("strings serialize");
                for raw in self.pods_on_raw(node, namespace).await? {
                    if !raw.windows(needle.len()).any(|w| w == needle.as_slice()) {
                        continue;
                    }
                    let Ok(pod) = serde_json::from_slice::<Pod>(&raw) else {
                        continue;
                    };
                    let uses = pod
                        .spec
                        .as_ref()
                        .is_some_and(|s| references(s, resource).contains(name));
                    if uses {
                        related.pods.push(pod);
                        break;
                    }
                }
            }
            Lookup::Pod { namespace, name } => {
                match self.registry.get(&kinds::PODS, namespace, name).await {
                    Ok(v) => related.pods.extend(serde_json::from_value(v).ok()),
                    Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Lookup::Claims => {
                for pod in self.pods_on(node, "").await? {
                    let ns = pod.metadata.namespace.clone().unwrap_or_default();
                    let Some(spec) = pod.spec.as_ref() else {
                        continue;
                    };
                    for claim in references(spec, "persistentvolumeclaims") {
                        if let Ok(v) = self.registry.get(&kinds::PVCS, &ns, &claim).await {
                            related.claims.extend(serde_json::from_value(v).ok());
                        }
                    }
                }
            }
        }
        Ok(related)
    }

    /// The decision and, for a "no opinion", why.
    pub async fn evaluate(&self, a: &Attributes) -> (Decision, Option<String>) {
        let Some(node) = a.user.node_name() else {
            return (Decision::NoOpinion, None);
        };
        let lookup = lookup(a);
        match self.read(node, &lookup).await {
            Ok(related) => decide(node, a, &related),
            Err(e) => {
                warn!(node, error = %e, "node authorizer could not read the cluster");
                (Decision::NoOpinion, Some(e.to_string()))
            }
        }
    }
}
