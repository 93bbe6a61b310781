//! PATCH: read the object, apply the patch, write it back through the gRPC service's update
//! at the revision read (a conflict re-reads and re-applies, a few times). The patch engines
//! are `corral_api::patch`'s; until they land, a local RFC 7386 merge patch serves
//! `application/merge-patch+json` and the other types get 415.

use corral_api::status::StatusReason;
use corral_proto as pb;
use http::{Response, StatusCode};
use serde_json::Value;

use super::response::{self, Body};
use super::verbs::{self, Answer};
use super::Call;

/// Tries a read-patch-write this many times when the object changes in between.
const ATTEMPTS: usize = 5;

/// The patch type of a request's content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

pub fn patch_kind(content_type: &str) -> Option<PatchKind> {
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/json-patch+json" => Some(PatchKind::Json),
        "application/merge-patch+json" => Some(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Some(PatchKind::StrategicMerge),
        "application/apply-patch+yaml" => Some(PatchKind::Apply),
        _ => None,
    }
}

/// RFC 7386: objects merge member by member, `null` removes, anything else replaces.
pub fn merge(target: &Value, patch: &Value) -> Value {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            let mut out = t.clone();
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge(out.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        (_, Value::Object(_)) => merge(&Value::Object(Default::default()), patch),
        _ => patch.clone(),
    }
}

/// `original` with the request's patch applied.
pub(super) fn apply(call: &Call<'_>, original: &Value) -> Result<Value, Response<Body>> {
    let ct = call
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let unsupported = || {
        response::fail(
            StatusReason::UnsupportedMediaType,
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {ct:?})"),
        )
    };
    match patch_kind(ct) {
        Some(PatchKind::Merge) => {
            let patch: Value = serde_json::from_slice(&call.body).map_err(|e| {
                response::fail(
                    StatusReason::BadRequest,
                    format!("the patch is not valid JSON: {e}"),
                )
            })?;
            Ok(merge(original, &patch))
        }
        _ => Err(unsupported()),
    }
}

/// Whether a response is a write conflict worth retrying.
fn conflict(r: &Response<Body>) -> bool {
    r.status() == StatusCode::CONFLICT
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, want) in cases {
            assert_eq!(merge(&target, &patch), want, "{target} + {patch}");
        }
    }

    #[test]
    fn content_types_name_the_patch_kind() {
        assert_eq!(
            patch_kind("application/merge-patch+json"),
            Some(PatchKind::Merge)
        );
        assert_eq!(
            patch_kind("application/strategic-merge-patch+json; charset=utf-8"),
            Some(PatchKind::StrategicMerge)
        );
        assert_eq!(
            patch_kind("application/json-patch+json"),
            Some(PatchKind::Json)
        );
        assert_eq!(patch_kind("application/json"), None);
    }
}
