//! Access reviews (authorization.k8s.io/v1): `SelfSubjectAccessReview` asks "may I?", and
//! `SubjectAccessReview` asks it for another user. Answered on create, never stored; this is
//! what `corral auth can-i` (and kubectl's) sends.

use corral_api::kinds::{self, ResourceInfo};
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, ResourceAttributes};
use serde_json::{json, Value};

use crate::auth::{Attributes, Authorizer, Decision, UserInfo};
use crate::registry::{ApiError, Subject};
use crate::validate::FieldError;

fn invalid(info: &ResourceInfo, path: &str, detail: &str) -> ApiError {
    ApiError::Invalid {
        what: Subject::kind(info, ""),
        errors: vec![FieldError {
            path: path.into(),
            detail: detail.into(),
        }],
    }
}

/// The attributes a review asks about, for the user it is about.
pub fn attributes(
    info: &ResourceInfo,
    requester: &UserInfo,
    review: &Value,
) -> Result<Attributes, ApiError> {
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let (ra, nra) = (
        spec.get("resourceAttributes"),
        spec.get("nonResourceAttributes"),
    );
    if ra.is_some() == nra.is_some() {
        return Err(invalid(
            info,
            "spec.resourceAttributes",
            "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    let ra: ResourceAttributes = match ra {
        Some(ra) => serde_json::from_value(ra.clone())
            .map_err(|e| ApiError::BadRequest(format!("spec.resourceAttributes: {e}")))?,
        None => Default::default(),
    };
    let nra: NonResourceAttributes = match nra {
        Some(n) => serde_json::from_value(n.clone())
            .map_err(|e| ApiError::BadRequest(format!("spec.nonResourceAttributes: {e}")))?,
        None => Default::default(),
    };
    let user = if info.plural == kinds::SUBJECTACCESSREVIEWS.plural {
        let name = spec.get("user").and_then(Value::as_str).unwrap_or("");
        let groups: Vec<String> = spec
            .get("groups")
            .and_then(|g| serde_json::from_value(g.clone()).ok())
            .unwrap_or_default();
        if name.is_empty() && groups.is_empty() {
            return Err(invalid(
                info,
                "spec.user",
                "Invalid value: \"\": at least one of user or group must be specified",
            ));
        }
        UserInfo {
            name: name.to_string(),
            groups,
        }
    } else {
        requester.clone()
    };
    if let Some(path) = nra.path.filter(|p| !p.is_empty()) {
        return Ok(Attributes {
            user,
            verb: nra.verb.unwrap_or_default(),
            path,
            api_group: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
        });
    }
    Ok(Attributes {
        path: String::new(),
        user,
        verb: ra.verb.unwrap_or_default(),
        api_group: ra.group.unwrap_or_default(),
        resource: ra.resource.unwrap_or_default(),
        subresource: ra.subresource.unwrap_or_default(),
        namespace: ra.namespace.unwrap_or_default(),
        name: ra.name.unwrap_or_default(),
    })
}

/// The review with its `status` filled in (Kubernetes answers 201 with the object).
pub async fn answer(
    authorizer: &dyn Authorizer,
    info: &ResourceInfo,
    requester: &UserInfo,
    mut review: Value,
) -> Result<Value, ApiError> {
    let attrs = attributes(info, requester, &review)?;
    let status = match authorizer.authorize(&attrs).await {
        Decision::Allow => json!({"allowed": true}),
        Decision::Deny(reason) if reason.is_empty() => json!({"allowed": false}),
        Decision::Deny(reason) => json!({"allowed": false, "reason": reason}),
        Decision::NoOpinion => json!({"allowed": false}),
    };
    review["status"] = status;
    Ok(review)
}
