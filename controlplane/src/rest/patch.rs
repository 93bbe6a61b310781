//! PATCH: read the object, apply the patch, write it back through the gRPC service's update
//! at the revision read (a conflict re-reads and re-applies, a few times). The patch engines
//! (JSON patch, merge patch, strategic merge patch) are `corral_api::patch`'s.

use corral_api::patch::PatchType;
use corral_api::status::StatusReason;
use corral_proto as pb;
use corral_proto::api_server::Api;
use http::StatusCode;
use serde_json::Value;

use super::response::{self, Failure};
use super::verbs::{self, Answer};
use super::{validation, Call};

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
    if content_type(call).split(';').next().map(str::trim) == Some(APPLY_PATCH) {
        return server_side_apply(call).await;
    }
    patch_object(call, pb::Subresource::Main).await
}

/// Server-side apply's media type.
const APPLY_PATCH: &str = "application/apply-patch+yaml";

fn content_type<'a>(call: &'a Call<'_>) -> &'a str {
    call.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `kubectl apply --server-side`, approximated for one manager at a time: a new object is
/// created; over a live one the manifest is merged (RFC 7386: the fields it sets win, the rest
/// stay) and written at the revision read. Field managers, their conflicts and the removal of
/// fields a manager stopped setting are not tracked yet. kubectl's second request (manager
/// `kubectl-last-applied`, only the last-applied annotation) merges just that annotation.
async fn server_side_apply(call: &Call<'_>) -> Answer {
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
    let json = serde_json::to_vec(&manifest).expect("JSON values serialize");
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let live = match verbs::fetch(call).await {
            Ok(live) => live,
            Err(f) if f.code == 404 => return create(call, json).await,
            Err(f) => return Err(f),
        };
        let merged = corral_api::patch::merge::apply(&live, &manifest);
        let bytes = serde_json::to_vec(&merged).expect("JSON values serialize");
        match verbs::update_bytes(call, bytes, pb::Subresource::Main).await {
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
