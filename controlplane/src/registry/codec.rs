//! The stored form of objects: JSON without its resourceVersion (the store's revision is it),
//! stamped back on the way out, by splicing bytes where it can; comparisons that ignore it;
//! and the selector filter that reads only the fields it needs.

use corral_api::kinds::ResourceInfo;
use corral_api::object;
use corral_api::rules::limits;
use corral_api::selector::{FieldSelector, LabelSelectorExpr};
use serde_json::Value;

use super::error::{ApiError, Subject};
use super::raw;
use crate::store::KeyValue;

/// Decodes a stored value and stamps its resourceVersion. Bytes that are not a JSON object
/// (never written by the registry) read as an object with only its resourceVersion.
pub fn decode_kv(kv: &KeyValue) -> Value {
    let mut v = object_or_null(serde_json::from_slice(&kv.value).ok());
    object::set_meta(
        &mut v,
        "resourceVersion",
        Value::from(kv.mod_revision.to_string()),
    );
    v
}

/// Label and field selectors over stored objects: only the fields they read are parsed.
#[derive(Debug, Clone)]
pub struct Filter {
    labels: LabelSelectorExpr,
    fields: FieldSelector,
    paths: raw::Paths,
}

impl Filter {
    pub fn new(labels: &LabelSelectorExpr, fields: &FieldSelector) -> Self {
        let mut paths = raw::Paths::default();
        if !labels.is_everything() {
            paths.add(["metadata", "labels"]);
        }
        for (path, _, _) in &fields.terms {
            // The keys of the JSON pointer `FieldSelector::matches` builds from the path.
            let pointer = path.replace('.', "/");
            paths.add(
                pointer
                    .split('/')
                    .map(|token| token.replace("~1", "/").replace("~0", "~")),
            );
        }
        Self {
            labels: labels.clone(),
            fields: fields.clone(),
            paths,
        }
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_everything() && self.fields.is_everything()
    }

    pub fn matches(&self, kv: &KeyValue) -> bool {
        if self.is_everything() {
            return true;
        }
        let mut v = object_or_null(self.paths.project(&kv.value).ok());
        object::set_meta(
            &mut v,
            "resourceVersion",
            Value::from(kv.mod_revision.to_string()),
        );
        self.labels.matches_object(&v) && self.fields.matches(&v)
    }
}

/// Only an object can be stamped with metadata (serde_json's index panics on anything else).
fn object_or_null(v: Option<Value>) -> Value {
    v.filter(Value::is_object).unwrap_or(Value::Null)
}

/// The stored form: the object without its resourceVersion (the store's revision is it),
/// refused when over the stored-object limit.
pub(super) fn encode(info: &ResourceInfo, object: &mut Value) -> Result<Vec<u8>, ApiError> {
    object::set_meta(object, "resourceVersion", Value::Null);
    let bytes = serde_json::to_vec(object).expect("JSON values serialize");
    limits::check(bytes.len(), limits::MAX_STORED_OBJECT).map_err(|size| {
        let name = object::str_at(object, "/metadata/name").unwrap_or_default();
        ApiError::TooLarge {
            what: Subject::kind(info, name).to_string(),
            size,
        }
    })?;
    Ok(bytes)
}

/// Stamps the store's revision on an object that was just written.
pub(super) fn stamped(mut object: Value, kv: &KeyValue) -> Value {
    object::set_meta(
        &mut object,
        "resourceVersion",
        Value::from(kv.mod_revision.to_string()),
    );
    object
}

/// A stored value as Kubernetes JSON with its resourceVersion, without parsing it: the field
/// is spliced in after the top-level `"metadata":{`. Falls back to a parse when the bytes do
/// not have that shape.
pub fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    match metadata_body_offset(&kv.value) {
        Some(at) => {
            let field = format!("\"resourceVersion\":\"{}\"", kv.mod_revision);
            let empty = kv.value.get(at) == Some(&b'}');
            let mut out = Vec::with_capacity(kv.value.len() + field.len() + 1);
            out.extend_from_slice(&kv.value[..at]);
            out.extend_from_slice(field.as_bytes());
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(&kv.value[at..]);
            out
        }
        None => serde_json::to_vec(&decode_kv(kv)).expect("JSON values serialize"),
    }
}

/// Offset just past the `{` that opens the top-level `metadata` object of compact JSON.
fn metadata_body_offset(json: &[u8]) -> Option<usize> {
    let (mut depth, mut in_str, mut escaped, mut start) = (0usize, false, false, 0usize);
    let mut i = 0;
    while i < json.len() {
        let c = json[i];
        if in_str {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
                if depth == 1 && &json[start..i] == b"metadata" && json.get(i + 1) == Some(&b':') {
                    return (json.get(i + 2) == Some(&b'{')).then_some(i + 3);
                }
            }
        } else {
            match c {
                b'"' => {
                    in_str = true;
                    start = i + 1;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.checked_sub(1)?,
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Equal apart from the top-level fields in `skip` and `metadata.resourceVersion`, without
/// copying either object.
pub(super) fn same_except(a: &Value, b: &Value, skip: &[&str]) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let keys = a
        .keys()
        .chain(b.keys())
        .filter(|k| !skip.contains(&k.as_str()));
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        let equal = if k == "metadata" {
            same_except(
                x.unwrap_or(&Value::Null),
                y.unwrap_or(&Value::Null),
                &["resourceVersion"],
            )
        } else {
            x == y
        };
        if !equal {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_resource_version_is_spliced_into_stored_json() {
        let cases = [
            (
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{}}"#,
                7,
            ),
            (r#"{"metadata":{},"kind":"X"}"#, 12),
            (
                r#"{"a":{"metadata":{"x":1}},"s":"\"metadata\":{","metadata":{"name":"q"}}"#,
                3,
            ),
        ];
        for (json, rev) in cases {
            let kv = KeyValue {
                key: "/k".into(),
                value: json.as_bytes().into(),
                create_revision: 1,
                mod_revision: rev,
            };
            let spliced: Value = serde_json::from_slice(&encode_kv(&kv)).expect("valid JSON");
            assert_eq!(spliced, decode_kv(&kv), "{json}");
        }
    }

    #[test]
    fn stored_bytes_that_are_not_an_object_decode_like_unreadable_ones() {
        // Found by fuzzing: stamping the resourceVersion on `[]` panicked (serde_json's index).
        let labels = LabelSelectorExpr::parse("app=web").expect("a selector");
        let fields = FieldSelector::parse("spec.nodeName=n1").expect("a selector");
        for stored in ["[]", "[1]", "1", "\"x\"", "true", "null", "{not json"] {
            let kv = KeyValue {
                key: "/k".into(),
                value: stored.as_bytes().into(),
                create_revision: 1,
                mod_revision: 7,
            };
            let want = json!({"metadata": {"resourceVersion": "7"}});
            assert_eq!(decode_kv(&kv), want, "{stored}");
            let json: Value = serde_json::from_slice(&encode_kv(&kv)).expect("valid JSON");
            assert_eq!(json, want, "{stored}");
            assert!(!Filter::new(&labels, &fields).matches(&kv), "{stored}");
        }
    }

    #[test]
    fn comparisons_ignore_only_the_resource_version_and_skipped_fields() {
        let a = json!({"metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"x": 1}, "status": {"y": 1}});
        let b = json!({"metadata": {"name": "a", "resourceVersion": "2"}, "spec": {"x": 1}, "status": {"y": 2}});
        assert!(!same_except(&a, &b, &[]));
        assert!(same_except(&a, &b, &["status"]));
        assert!(!same_except(
            &a,
            &json!({"metadata": {"name": "b"}, "spec": {"x": 1}}),
            &["status"]
        ));
    }
}
