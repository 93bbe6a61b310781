//! PATCH: read the object, apply the patch, write it back through the gRPC service's update
//! at the revision read (a conflict re-reads and re-applies, a few times). The patch engines
//! (JSON patch, merge patch, strategic merge patch, server-side apply) are
//! `corral_api::patch`'s.

use corral_api::patch::apply as patch_apply;
use corral_api::patch::PatchType;
use corral_api::status::{ApiStatus, CauseType, StatusCause, StatusDetails, StatusReason};
use corral_proto as pb;
use corral_proto::api_server::Api;
use http::StatusCode;
use serde_json::Value;

use super::response::{self, Failure};
use super::verbs::{self, Answer};
use super::{validation, Call};
use crate::registry;

/// Tries a read-patch-write this many times when the object changes in between.
const ATTEMPTS: usize = 5;

/// `original` (an object of the request's kind, or its Scale) with the request's patch applied
/// by `corral_api::patch`; a patch type it does not know is 415 (server-side apply is
/// [`server_side_apply`], on the object itself only).
pub(super) fn apply(call: &Call<'_>, original: &Value) -> Result<Value, Failure> {
    let ct = content_type(call);
    let Some(patch_type) = PatchType::from_content_type(ct) else {
        return Err(response::failure(
            StatusReason::UnsupportedMediaType,
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {ct:?})"),
        ));
    };
    corral_api::patch::apply(call.kind, original, &call.body, patch_type)
        .map_err(|e| response::failure(e.reason(), e.to_string()))
}

/// Whether a failure is a write conflict worth retrying.
fn conflict(f: &Failure) -> bool {
    f.code == i32::from(StatusCode::CONFLICT.as_u16())
}

pub(super) async fn serve(call: &Call<'_>) -> Answer {
    if is_apply(call) {
        return server_side_apply(call).await;
    }
    patch_object(call, pb::Subresource::Main).await
}

/// Server-side apply's media type.
const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// Whether the request is a server-side apply (a PATCH in apply's media type).
pub(super) fn is_apply(call: &Call<'_>) -> bool {
    call.info.verb == "patch"
        && content_type(call)
            .split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(APPLY_PATCH))
}

fn content_type<'a>(call: &'a Call<'_>) -> &'a str {
    call.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// PatchOptions the API server refuses, in its words (422, `PatchOptions.meta.k8s.io`).
fn invalid_options(field: &str, kind: CauseType, detail: &str) -> Failure {
    let what = match kind {
        CauseType::FieldValueRequired => "Required value",
        _ => "Forbidden",
    };
    Box::new(
        ApiStatus::new(
            StatusReason::Invalid,
            format!("PatchOptions.meta.k8s.io \"\" is invalid: {field}: {what}: {detail}"),
        )
        .with_details(StatusDetails {
            group: "meta.k8s.io".into(),
            kind: "PatchOptions".into(),
            causes: vec![StatusCause {
                kind,
                message: format!("{what}: {detail}"),
                field: field.into(),
            }],
            ..Default::default()
        }),
    )
}

/// `kubectl apply --server-side`: the manifest applied for its field manager by
/// `corral_api::patch::apply` (conflicts with other managers are a 409 unless `force`;
/// fields the manager dropped are removed), then created, or written at the revision read
/// (a conflict re-reads and re-applies). kubectl's second request (manager
/// `kubectl-last-applied`, only the last-applied annotation) is one more applier.
async fn server_side_apply(call: &Call<'_>) -> Answer {
    let Some(manager) = call.q("fieldManager") else {
        return Err(invalid_options(
            "fieldManager",
            CauseType::FieldValueRequired,
            "is required for apply patch",
        ));
    };
    let force = call.q("force").is_some_and(|f| f == "true");
    let manifest: Value = serde_yaml::from_slice(&call.body).map_err(|e| {
        response::failure(
            StatusReason::BadRequest,
            format!("error decoding YAML: {e}"),
        )
    })?;
    let name = corral_api::object::name(&manifest);
    if name != call.info.name {
        return Err(response::failure(
            StatusReason::BadRequest,
            format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                call.info.name
            ),
        ));
    }
    let now = registry::managed::now();
    let writer = patch_apply::Writer {
        kind: call.kind,
        manager,
        now: &now,
    };
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let live = match verbs::fetch(call).await {
            Ok(live) => Some(live),
            Err(f) if f.code == 404 => None,
            Err(f) => return Err(f),
        };
        let applied = patch_apply::apply(&writer, live.as_ref(), &manifest, force)
            .map_err(|e| Box::new(e.status()))?;
        let bytes = serde_json::to_vec(&applied).expect("JSON values serialize");
        let written = match live {
            None => create(call, bytes).await,
            Some(_) => verbs::update_bytes(call, bytes, pb::Subresource::Main).await,
        };
        match written {
            Err(f) if conflict(&f) => last = Some(f),
            other => return other,
        }
    }
    Err(last.expect("at least one attempt"))
}

async fn create(call: &Call<'_>, json: Vec<u8>) -> Answer {
    let created = call
        .api
        .create(call.req(pb::CreateRequest {
            resource: call.kind.plural.to_string(),
            namespace: call.info.namespace.clone(),
            json,
            dry_run: call.dry_run(),
        }))
        .await
        .map_err(|s| response::grpc_failure(&s))?;
    let warnings = verbs::warning_headers(created.metadata());
    let obj = verbs::parse(&created.into_inner().json)?;
    Ok(verbs::with_warnings(
        verbs::object(call, StatusCode::CREATED, &obj),
        warnings,
    ))
}

pub(super) async fn patch_object(call: &Call<'_>, sub: pb::Subresource) -> Answer {
    if call.query.contains_key("force") {
        return Err(invalid_options(
            "force",
            CauseType::FieldValueForbidden,
            "may not be specified for non-apply patch",
        ));
    }
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let original = verbs::fetch(call).await?;
        let patched = apply(call, &original)?;
        let checked = validation::for_call(call, patched, &call.body)?;
        match verbs::update_bytes(call, checked.json, sub).await {
            Err(r) if conflict(&r) && !mentions_resource_version(&call.body) => last = Some(r),
            other => return other.map(|r| verbs::with_warnings(r, checked.warnings)),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// A patch that sets a resourceVersion is a precondition: its conflict is the answer.
fn mentions_resource_version(patch: &[u8]) -> bool {
    patch
        .windows(b"resourceVersion".len())
        .any(|w| w == b"resourceVersion")
}
