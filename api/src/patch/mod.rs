//! The PATCH verb's engines, pure (JSON in, JSON out, no I/O): RFC 6902 JSON patch
//! (`json.rs`), RFC 7386 merge patch (`merge.rs`) and Kubernetes' strategic merge patch
//! (`strategic.rs`, merge keys and strategies from `strategic/schema.rs`), behind one entry
//! point, [`apply`], with errors in Kubernetes' words and the status reason it answers with.

pub mod apply;
pub mod json;
pub mod merge;
pub mod strategic;

use crate::kinds::ResourceInfo;
use crate::status::StatusReason;
use serde_json::Value;

/// The most operations a JSON patch may hold (the API server's `maxJSONPatchOperations`).
pub const MAX_OPERATIONS: usize = 10_000;

/// The deepest nesting a patch (or, for JSON patch, the patched object) may have. Kubernetes
/// objects are far shallower; the bound keeps every recursion here short.
pub const MAX_DEPTH: usize = 100;

/// The most work one patch may cost, in list items shifted, merged or visited: far above any
/// real patch, it stops patches built to be slow (10,000 inserts at the head of a long list, or
/// one long list merged once per item of another).
pub const MAX_WORK: usize = 64 << 20;

/// The patch formats of the PATCH verb, by content type. Server-side apply
/// (`application/apply-patch+yaml`) is [`apply`], with field managers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`, RFC 6902.
    Json,
    /// `application/merge-patch+json`, RFC 7386.
    Merge,
    /// `application/strategic-merge-patch+json`, Kubernetes' own.
    StrategicMerge,
}

impl PatchType {
    /// The patch type of a request's content type (parameters such as `; charset=utf-8` are
    /// ignored); `None` for any other, which the server answers with 415.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            _ => None,
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON (or not a JSON object where the patch type needs one).
    #[error("error decoding {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A JSON patch must be an array of operations.
    #[error("json patch: {0}")]
    NotAnOperationList(&'static str),
    /// A strategic merge patch must be a JSON object (a merge patch may be any JSON value).
    #[error("a strategic merge patch must be a JSON object")]
    NotAnObject,
    #[error(
        "The allowed maximum operations in a JSON patch is {max}, got {count}",
        max = MAX_OPERATIONS
    )]
    TooManyOperations { count: usize },
    #[error("{what} is nested deeper than {max} levels", max = MAX_DEPTH)]
    TooDeep { what: &'static str },
    /// One operation of a JSON patch failed (a test, a missing path, a bad index).
    #[error(transparent)]
    Json(#[from] json::JsonPatchError),
    /// A strategic merge patch is malformed for the object's schema.
    #[error(transparent)]
    Strategic(#[from] strategic::StrategicError),
}

impl PatchError {
    /// The reason (and so the HTTP code) the API server answers with, as Kubernetes' patch
    /// handler chooses it.
    pub fn reason(&self) -> StatusReason {
        match self {
            PatchError::Decode { .. }
            | PatchError::NotAnOperationList(_)
            | PatchError::NotAnObject
            | PatchError::TooDeep { .. } => StatusReason::BadRequest,
            PatchError::TooManyOperations { .. } => StatusReason::RequestEntityTooLarge,
            PatchError::Json(e) => e.reason(),
            PatchError::Strategic(e) => e.reason(),
        }
    }
}

/// Applies `patch` (the request body) of `patch_type` to `original`, an object of `kind` in its
/// JSON form, and returns the patched object. The caller bounds the body's size
/// (`rules::limits::MAX_REQUEST_BODY`) and decodes and validates the result as for an update.
pub fn apply(
    kind: &ResourceInfo,
    original: &Value,
    patch: &[u8],
    patch_type: PatchType,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => json::apply(original, patch),
        PatchType::Merge => {
            let patch = decode(patch, "patch")?;
            Ok(merge::apply(original, &patch))
        }
        PatchType::StrategicMerge => {
            let patch = decode(patch, "patch")?;
            let Value::Object(patch) = patch else {
                return Err(PatchError::NotAnObject);
            };
            let result = strategic::apply(
                strategic::schema::Ty::of_kind(kind),
                original.clone(),
                patch,
            )?;
            Ok(result)
        }
    }
}

/// Parses a patch body and refuses one nested deeper than [`MAX_DEPTH`].
pub(crate) fn decode(body: &[u8], what: &'static str) -> Result<Value, PatchError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|source| PatchError::Decode { what, source })?;
    if depth(&value) > MAX_DEPTH {
        return Err(PatchError::TooDeep { what });
    }
    Ok(value)
}

/// The nesting depth of a value (a scalar is 0, `{}` and `[]` are 1), without recursion.
pub(crate) fn depth(value: &Value) -> usize {
    measure(value).0
}

/// The nesting depth of a value and how many values it holds (itself included).
pub(crate) fn measure(value: &Value) -> (usize, usize) {
    let mut deepest = 0;
    let mut nodes = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        nodes += 1;
        deepest = deepest.max(d);
        match v {
            Value::Array(items) => {
                deepest = deepest.max(d + 1);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(d + 1);
                stack.extend(map.values().map(|i| (i, d + 1)));
            }
            _ => {}
        }
    }
    (deepest, nodes)
}

#[cfg(test)]
mod tests;
