//! `fieldValidation` on REST writes (create, update, patch), as kube-apiserver applies it:
//! `Strict` refuses unknown and duplicate fields (BadRequest, "strict decoding error"), `Warn`
//! (the default since Kubernetes 1.23) writes the object without its unknown fields and says so
//! in `Warning` headers, `Ignore` drops them silently. Which fields are unknown or duplicate is
//! `corral_api::decode::fields`' rule; the gRPC API, which always refuses them, is unchanged.

use corral_api::decode::{self, FieldPath};
use corral_api::kinds::ResourceInfo;
use corral_api::status::StatusReason;
use http::HeaderValue;
use serde_json::Value;

use super::response::{self, Failure};

/// The request's `fieldValidation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ignore,
    Warn,
    Strict,
}

impl Mode {
    /// From the query parameter (absent or empty: `Warn`); another value is a BadRequest.
    pub fn parse(value: Option<&str>) -> Result<Mode, Failure> {
        match value.unwrap_or("") {
            "" | "Warn" => Ok(Mode::Warn),
            "Ignore" => Ok(Mode::Ignore),
            "Strict" => Ok(Mode::Strict),
            other => Err(response::failure(
                StatusReason::BadRequest,
                format!("fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Warn\", \"Strict\""),
            )),
        }
    }
}

/// What the mode made of a request's object: the JSON to write and the warnings to send.
#[derive(Debug)]
pub struct Checked {
    pub json: Vec<u8>,
    pub warnings: Vec<HeaderValue>,
}

/// Applies `mode` to `object` (of kind `info`); `duplicates` are the request body's (found by
/// [`decode::fields::duplicates`] on the bytes, since a parsed object keeps only the last). An
/// object that does not decode at all is passed on unchanged: the registry's validation
/// reports its type errors as the gRPC API does.
pub fn check(
    mode: Mode,
    info: &ResourceInfo,
    mut object: Value,
    duplicates: &[FieldPath],
) -> Result<Checked, Failure> {
    let unknown = match mode {
        Mode::Strict => decode::unknown_fields(info, &object),
        Mode::Warn | Mode::Ignore => decode::drop_unknown_fields(info, &mut object),
    }
    .unwrap_or_default();
    let problems: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field {:?}", p.to_string()))
        .chain(
            duplicates
                .iter()
                .map(|p| format!("duplicate field {:?}", p.to_string())),
        )
        .collect();
    let warnings = match mode {
        Mode::Strict if !problems.is_empty() => {
            return Err(response::failure(
                StatusReason::BadRequest,
                format!(
                    "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
                    problems.join(", "),
                    kind = info.kind,
                    version = info.version,
                ),
            ))
        }
        Mode::Warn => problems
            .iter()
            .filter_map(|p| HeaderValue::from_str(&corral_api::warning::header(p)).ok())
            .collect(),
        _ => Vec::new(),
    };
    Ok(Checked {
        json: serde_json::to_vec(&object).expect("JSON values serialize"),
        warnings,
    })
}

/// [`check`] with the request's mode and kind; `raw` is the body the duplicates are looked
/// for in (the object's, or the patch's).
pub(super) fn for_call(
    call: &super::Call<'_>,
    object: Value,
    raw: &[u8],
) -> Result<Checked, Failure> {
    let mode = Mode::parse(call.q("fieldValidation"))?;
    let duplicates = match mode {
        Mode::Ignore => Vec::new(),
        Mode::Warn | Mode::Strict => decode::fields::duplicates(raw),
    };
    check(mode, call.kind, object, &duplicates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::kinds;
    use serde_json::json;

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}]}})
    }

    #[test]
    fn modes_come_from_the_query_and_default_to_warn() {
        for (value, want) in [
            (None, Some(Mode::Warn)),
            (Some(""), Some(Mode::Warn)),
            (Some("Warn"), Some(Mode::Warn)),
            (Some("Strict"), Some(Mode::Strict)),
            (Some("Ignore"), Some(Mode::Ignore)),
            (Some("strict"), None),
        ] {
            assert_eq!(Mode::parse(value).ok(), want, "{value:?}");
        }
    }

    #[test]
    fn strict_refuses_unknown_and_duplicate_fields_in_kubernetes_words() {
        let dup = decode::fields::duplicates(br#"{"metadata":{"name":"a","name":"p"}}"#);
        let f = check(Mode::Strict, &kinds::PODS, pod(), &dup).unwrap_err();
        assert_eq!((f.code, f.reason.as_str()), (400, "BadRequest"));
        assert_eq!(
            f.message,
            "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].bogus\", duplicate field \"metadata.name\""
        );
    }

    #[test]
    fn warn_drops_unknown_fields_and_says_so_and_ignore_only_drops_them() {
        let warned = check(Mode::Warn, &kinds::PODS, pod(), &[]).unwrap();
        let written: Value = serde_json::from_slice(&warned.json).unwrap();
        assert_eq!(
            written["spec"]["containers"][0],
            json!({"name": "c", "image": "i"})
        );
        assert_eq!(
            warned.warnings,
            [r#"299 - "unknown field \"spec.containers[0].bogus\"""#]
        );
        let ignored = check(Mode::Ignore, &kinds::PODS, pod(), &[]).unwrap();
        assert_eq!(ignored.json, warned.json);
        assert!(ignored.warnings.is_empty());
    }

    #[test]
    fn objects_with_type_errors_pass_on_unchanged_to_the_registry() {
        let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "x"}});
        let checked = check(Mode::Strict, &kinds::PODS, bad.clone(), &[]).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&checked.json).unwrap(), bad);
    }
}
