//! Manifest decoding: YAML or JSON (several documents per file) into Kubernetes objects,
//! with errors that name the document, line and column, or the field path.
//!
//! The Kubernetes schema is k8s-openapi's: an object is checked by decoding it into the typed
//! struct (type errors carry the field path) and unknown fields are found by comparing the input
//! with the typed round-trip, since k8s-openapi's types accept and drop unknown keys.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::kinds::{self, ResourceInfo};

pub mod fields;
pub use fields::FieldPath;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{source_name}: invalid YAML at line {line}, column {column}: {message}")]
    Yaml {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{source_name}: invalid YAML: {message}")]
    YamlNoLocation {
        source_name: String,
        message: String,
    },
    #[error("{what}: {message}")]
    Shape { what: String, message: String },
    #[error("{what}: field {path}: {message}")]
    Field {
        what: String,
        path: String,
        message: String,
    },
    #[error("{what}: unknown field {}", .paths.join(", unknown field "))]
    UnknownFields { what: String, paths: Vec<String> },
}

/// Splits a YAML (or JSON) stream into its documents as JSON values; empty documents are skipped.
pub fn documents(source_name: &str, text: &str) -> Result<Vec<Value>, DecodeError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).map_err(|e| yaml_error(source_name, e))?;
        match value {
            Value::Null => {}
            // A `kind: List` holds its objects in `items`, as kubectl accepts.
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(Value::Array(items)) = m.get("items") {
                    out.extend(items.iter().cloned());
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

fn yaml_error(source_name: &str, e: serde_yaml::Error) -> DecodeError {
    match e.location() {
        Some(loc) => DecodeError::Yaml {
            source_name: source_name.to_string(),
            line: loc.line(),
            column: loc.column(),
            message: strip_location(&e.to_string()),
        },
        None => DecodeError::YamlNoLocation {
            source_name: source_name.to_string(),
            message: e.to_string(),
        },
    }
}

fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// How an object is named in messages: `deployment.apps "web"`, or the document when unnamed.
pub fn describe(object: &Value) -> String {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = kinds::by_kind_name(kind)
        .map(|r| r.qualified())
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    format!("{kind} {name:?}")
}

/// Resolves the kind of a manifest from `apiVersion` and `kind`.
pub fn kind_of(object: &Value) -> Result<&'static ResourceInfo, DecodeError> {
    let what = describe(object);
    let Value::Object(map) = object else {
        return Err(DecodeError::Shape {
            what,
            message: "a manifest must be a mapping with apiVersion, kind and metadata".into(),
        });
    };
    let kind = map
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| DecodeError::Field {
            what: what.clone(),
            path: "kind".into(),
            message: "required".into(),
        })?;
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| DecodeError::Field {
            what: what.clone(),
            path: "apiVersion".into(),
            message: "required".into(),
        })?;
    if let Some(info) = kinds::by_kind(api_version, kind) {
        return Ok(info);
    }
    let message = match kinds::by_kind_name(kind) {
        Some(r) => format!(
            "no kind {kind:?} in version {api_version:?}; use apiVersion: {}",
            r.api_version()
        ),
        None => format!("unknown kind {kind:?} (apiVersion {api_version:?})"),
    };
    Err(DecodeError::Field {
        what,
        path: "kind".into(),
        message,
    })
}

/// Decodes into a typed object, reporting the path of a field of the wrong type.
pub fn typed<K: DeserializeOwned>(what: &str, value: &Value) -> Result<K, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        DecodeError::Field {
            what: what.to_string(),
            path: if path == "." { "(root)".into() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

fn roundtrip_as<K: DeserializeOwned + Serialize>(
    what: &str,
    value: &Value,
) -> Result<Value, DecodeError> {
    let obj: K = typed(what, value)?;
    serde_json::to_value(&obj).map_err(|e| DecodeError::Shape {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// Checks an object against its kind's schema: types, and no unknown fields.
/// Returns the object in canonical form (typed round-trip).
pub fn check_schema(info: &ResourceInfo, object: &Value) -> Result<Value, DecodeError> {
    let (canonical, unknown) = canonical_and_unknown(info, object)?;
    if !unknown.is_empty() {
        return Err(DecodeError::UnknownFields {
            what: describe(object),
            paths: unknown.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(canonical)
}

/// The unknown fields of an object of kind `info` (checked for types first).
pub fn unknown_fields(info: &ResourceInfo, object: &Value) -> Result<Vec<FieldPath>, DecodeError> {
    Ok(canonical_and_unknown(info, object)?.1)
}

/// Removes the unknown fields of an object of kind `info`, returning their paths (the REST
/// API's `fieldValidation=Warn|Ignore`); the rest of the object is left as it came.
pub fn drop_unknown_fields(
    info: &ResourceInfo,
    object: &mut Value,
) -> Result<Vec<FieldPath>, DecodeError> {
    let unknown = unknown_fields(info, object)?;
    for path in &unknown {
        fields::remove(object, path);
    }
    Ok(unknown)
}

fn canonical_and_unknown(
    info: &ResourceInfo,
    object: &Value,
) -> Result<(Value, Vec<FieldPath>), DecodeError> {
    use k8s_openapi::api::{
        apps::v1 as apps, authorization::v1 as authz, coordination::v1 as coord, core::v1 as core,
        networking::v1 as net, rbac::v1 as rbac,
    };
    let what = describe(object);
    let canonical = match info.plural {
        "namespaces" => roundtrip_as::<core::Namespace>(&what, object)?,
        "nodes" => roundtrip_as::<core::Node>(&what, object)?,
        "pods" => roundtrip_as::<core::Pod>(&what, object)?,
        "services" => roundtrip_as::<core::Service>(&what, object)?,
        "endpoints" => roundtrip_as::<core::Endpoints>(&what, object)?,
        "persistentvolumeclaims" => roundtrip_as::<core::PersistentVolumeClaim>(&what, object)?,
        "persistentvolumes" => roundtrip_as::<core::PersistentVolume>(&what, object)?,
        "events" => roundtrip_as::<core::Event>(&what, object)?,
        "configmaps" => roundtrip_as::<core::ConfigMap>(&what, object)?,
        "secrets" => roundtrip_as::<core::Secret>(&what, object)?,
        "replicasets" => roundtrip_as::<apps::ReplicaSet>(&what, object)?,
        "deployments" => roundtrip_as::<apps::Deployment>(&what, object)?,
        "daemonsets" => roundtrip_as::<apps::DaemonSet>(&what, object)?,
        "statefulsets" => roundtrip_as::<apps::StatefulSet>(&what, object)?,
        "controllerrevisions" => roundtrip_as::<apps::ControllerRevision>(&what, object)?,
        "ingresses" => roundtrip_as::<net::Ingress>(&what, object)?,
        "ingressclasses" => roundtrip_as::<net::IngressClass>(&what, object)?,
        "leases" => roundtrip_as::<coord::Lease>(&what, object)?,
        "roles" => roundtrip_as::<rbac::Role>(&what, object)?,
        "clusterroles" => roundtrip_as::<rbac::ClusterRole>(&what, object)?,
        "rolebindings" => roundtrip_as::<rbac::RoleBinding>(&what, object)?,
        "clusterrolebindings" => roundtrip_as::<rbac::ClusterRoleBinding>(&what, object)?,
        "selfsubjectaccessreviews" => {
            roundtrip_as::<authz::SelfSubjectAccessReview>(&what, object)?
        }
        "subjectaccessreviews" => roundtrip_as::<authz::SubjectAccessReview>(&what, object)?,
        other => {
            return Err(DecodeError::Shape {
                what,
                message: format!("no schema for resource {other:?}"),
            })
        }
    };
    let unknown = fields::unknown(object, &canonical);
    Ok((canonical, unknown))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn several_documents_load_and_empty_ones_are_skipped() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n";
        let docs = documents("f.yaml", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["metadata"]["name"], "b");
    }

    #[test]
    fn invalid_yaml_names_line_and_column() {
        let err = documents("bad.yaml", "kind: Pod\nmetadata:\n  name: [x\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                DecodeError::Yaml { line: 4, .. } | DecodeError::Yaml { line: 3, .. }
            ),
            "{msg}"
        );
        assert!(msg.starts_with("bad.yaml: invalid YAML at line"), "{msg}");
    }

    #[test]
    fn unknown_fields_are_reported_with_their_path() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "creationTimestamp": null},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always", "imgae": "x"}], "restartPolicyy": "Never"}
        });
        let err = check_schema(&kinds::PODS, &pod).unwrap_err().to_string();
        assert!(err.contains("spec.containers[0].imgae"), "{err}");
        assert!(err.contains("spec.restartPolicyy"), "{err}");
        assert!(err.starts_with("pod \"p\""), "{err}");
    }

    #[test]
    fn int_or_string_and_quantities_load_unchanged() {
        let deploy = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"a": "b"}},
                     "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                        {"name": "c", "image": "i", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}]}}}
        });
        let canonical = check_schema(&kinds::DEPLOYMENTS, &deploy).unwrap();
        assert_eq!(
            canonical["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
            "25%"
        );
        assert_eq!(
            canonical["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
            1
        );
        assert_eq!(
            canonical["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "500m"
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"}, "spec": {"replicas": "three"}});
        let err = check_schema(&kinds::REPLICASETS, &rs)
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.replicas"), "{err}");
    }

    #[test]
    fn unknown_kinds_and_wrong_api_versions_are_explained() {
        let err =
            kind_of(&json!({"apiVersion": "v1", "kind": "Gadget", "metadata": {"name": "g"}}))
                .unwrap_err();
        assert!(err.to_string().contains("unknown kind \"Gadget\""), "{err}");
        let err = kind_of(&json!({"apiVersion": "v1", "kind": "Deployment"})).unwrap_err();
        assert!(err.to_string().contains("apiVersion: apps/v1"), "{err}");
    }
}
