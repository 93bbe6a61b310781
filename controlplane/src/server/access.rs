//! Who may make each call: the request's identity (put into its extensions by the listener),
//! the call in Kubernetes' authorization terms, the authorizer's answer as a Forbidden
//! `Status` in Kubernetes' words, and NodeRestriction on node identities' writes.

use corral_api::kinds::ResourceInfo;
use serde_json::Value;
use tonic::{Request, Status};
use tracing::debug;

use crate::auth::authz::{forbidden_message, restriction};
use crate::auth::{Attributes, Authorizer, Decision, UserInfo};
use crate::registry::{ApiError, Subject};

/// The Kubernetes verb and subresource a gRPC call stands for when the REST layer makes it:
/// a PATCH is a get and an update of the gRPC API but one `patch` in Kubernetes' terms, an
/// eviction a delete of the pod but `create` on `pods/eviction`, a watch's first list a `watch`.
/// Only the REST layer sets it, in the request's extensions (which no client can send).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorizeAs {
    pub verb: &'static str,
    pub subresource: &'static str,
}

/// The verb and subresource to authorize a call by: the REST request's, else the RPC's own.
pub(super) fn verb_of<T>(
    req: &Request<T>,
    verb: &'static str,
    subresource: &'static str,
) -> (&'static str, &'static str) {
    req.extensions()
        .get::<AuthorizeAs>()
        .map_or((verb, subresource), |a| (a.verb, a.subresource))
}

/// The identity authentication attached to the request.
pub(super) fn user_of<T>(req: &Request<T>) -> Result<UserInfo, Status> {
    req.extensions().get::<UserInfo>().cloned().ok_or_else(|| {
        ApiError::Unauthenticated(
            "Unauthorized: the request carries no credentials (a client certificate or a bearer \
             token): use the kubeconfig the control plane wrote, or `corral token create`"
                .into(),
        )
        .into()
    })
}

/// One call on `info` in authorization's terms. A namespace object is its own namespace, as
/// in Kubernetes (a RoleBinding in `x` may grant `get namespace x`).
pub(super) fn attributes(
    user: &UserInfo,
    verb: &str,
    info: &ResourceInfo,
    subresource: &str,
    namespace: &str,
    name: &str,
) -> Attributes {
    let namespace = if info.plural == "namespaces" {
        name
    } else if info.namespaced {
        namespace
    } else {
        ""
    };
    Attributes {
        path: String::new(),
        user: user.clone(),
        verb: verb.to_string(),
        api_group: info.group.to_string(),
        resource: info.plural.to_string(),
        subresource: subresource.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// Asks the authorizer; a denial is Kubernetes' Forbidden.
pub(super) async fn check(authorizer: &dyn Authorizer, attrs: Attributes) -> Result<(), Status> {
    match authorizer.authorize(&attrs).await {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(denied(&attrs, &reason)),
        Decision::NoOpinion => Err(denied(&attrs, "")),
    }
}

fn denied(attrs: &Attributes, reason: &str) -> Status {
    let message = forbidden_message(attrs, reason);
    debug!(user = %attrs.user.name, verb = %attrs.verb, resource = %attrs.resource, namespace = %attrs.namespace, name = %attrs.name, "forbidden");
    ApiError::Denied {
        what: Subject {
            group: attrs.api_group.clone(),
            kind: attrs.resource.clone(),
            name: attrs.name.clone(),
        },
        message,
    }
    .into()
}

/// The name a list or watch narrows to with a `metadata.name=x` field selector: Kubernetes
/// authorizes such a request as a request for that one object.
pub(super) fn selected_name(field_selector: &str) -> &str {
    let terms: Vec<&str> = field_selector
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .collect();
    terms
        .iter()
        .find_map(|t| {
            let t = t.trim();
            t.strip_prefix("metadata.name==")
                .or_else(|| t.strip_prefix("metadata.name="))
        })
        .unwrap_or("")
}

/// NodeRestriction: a node identity's write of `new` (over `old`) must stay within its own
/// Node and Lease.
pub(super) fn restrict(
    user: &UserInfo,
    info: &ResourceInfo,
    namespace: &str,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), Status> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    restriction::admit(node, info, namespace, new, old).map_err(|reason| {
        let name = corral_api::object::name(new);
        ApiError::Forbidden {
            what: Subject::resource(info, name),
            reason: reason.to_string(),
            causes: Vec::new(),
        }
        .into()
    })
}
