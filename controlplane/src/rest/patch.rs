//! PATCH: read the object, apply the patch, write it back through the gRPC service's update
//! at the revision read (a conflict re-reads and re-applies, a few times). The patch engines
//! (JSON patch, merge patch, strategic merge patch) are `corral_api::patch`'s.

use corral_api::patch::PatchType;
use corral_api::status::StatusReason;
use corral_proto as pb;
use http::StatusCode;
use serde_json::Value;

use super::response::{self, Failure};
use super::verbs::{self, Answer};
use super::Call;

/// Tries a read-patch-write this many times when the object changes in between.
const ATTEMPTS: usize = 5;

/// `original` (an object of the request's kind, or its Scale) with the request's patch applied
/// by `corral_api::patch`; a patch type it does not know (server-side apply's
/// `application/apply-patch+yaml` included) is 415.
pub(super) fn apply(call: &Call<'_>, original: &Value) -> Result<Value, Failure> {
    let ct = call
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
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
    patch_object(call, pb::Subresource::Main).await
}

pub(super) async fn patch_object(call: &Call<'_>, sub: pb::Subresource) -> Answer {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let original = verbs::fetch(call).await?;
        let patched = apply(call, &original)?;
        let json = serde_json::to_vec(&patched).expect("JSON values serialize");
        match verbs::update_bytes(call, json, sub).await {
            Err(r) if conflict(&r) && !mentions_resource_version(&call.body) => last = Some(r),
            other => return other,
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
