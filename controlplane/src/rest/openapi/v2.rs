//! `/openapi/v2` for older kubectl (v1.20 reads only this, as protobuf): gnostic's
//! `openapi_v2.Document` with the definitions of every kind Corral serves, converted from the v3
//! component schemas (`#/definitions/...` references, Quantity and IntOrString as strings, the
//! `x-kubernetes-*` extensions as YAML), so `kubectl explain` and kubectl's client-side
//! validation work. Only the messages and fields needed here are written out (field numbers as
//! in gnostic's OpenAPIv2.proto).

use std::sync::OnceLock;

use bytes::Bytes;
use corral_api::kinds;
use prost::Message;
use serde_json::Value;

use super::schemas;

#[derive(Clone, PartialEq, Message)]
pub struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

/// Only each kind's PATCH: kubectl v1.20 finds a kind's definition by the definitions' own
/// `x-kubernetes-group-version-kind`, and asks the PATCH operation whether the kind takes
/// `dryRun` (`--dry-run=server`).
#[derive(Clone, PartialEq, Message)]
pub struct Paths {
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PathItem {
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Operation {
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

/// gnostic's `ParametersItem` and `Parameter` (oneofs), with only the query parameter case.
#[derive(Clone, PartialEq, Message)]
pub struct ParametersItem {
    #[prost(message, optional, tag = "1")]
    pub parameter: Option<Parameter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Parameter {
    #[prost(message, optional, tag = "2")]
    pub non_body_parameter: Option<NonBodyParameter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NonBodyParameter {
    #[prost(message, optional, tag = "3")]
    pub query_parameter_sub_schema: Option<QueryParameter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct QueryParameter {
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub r#type: String,
}

/// The PATCH path of every stored kind, tagged with its kind and taking its query parameters.
fn patch_paths() -> Paths {
    let query = |name: &str, ty: &str| ParametersItem {
        parameter: Some(Parameter {
            non_body_parameter: Some(NonBodyParameter {
                query_parameter_sub_schema: Some(QueryParameter {
                    r#in: "query".into(),
                    name: name.into(),
                    r#type: ty.into(),
                }),
            }),
        }),
    };
    let path = kinds::ALL
        .iter()
        .filter(|k| !k.is_virtual())
        .map(|k| {
            let scope = if k.namespaced {
                "/namespaces/{namespace}"
            } else {
                ""
            };
            let gvk = schemas::gvk(k);
            NamedPathItem {
                name: format!("/{}{scope}/{}/{{name}}", super::group_version(k), k.plural),
                value: Some(PathItem {
                    patch: Some(Operation {
                        operation_id: format!("patch{}", k.kind),
                        parameters: vec![
                            query("dryRun", "string"),
                            query("fieldManager", "string"),
                            query("fieldValidation", "string"),
                            query("force", "boolean"),
                        ],
                        vendor_extension: vec![NamedAny {
                            name: "x-kubernetes-group-version-kind".into(),
                            value: Some(Any {
                                yaml: serde_yaml::to_string(&gvk).unwrap_or_default(),
                            }),
                        }],
                    }),
                }),
            }
        })
        .collect();
    Paths { path }
}

#[derive(Clone, PartialEq, Message)]
pub struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Schema {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, optional, tag = "21")]
    pub additional_properties: Option<AdditionalProperties>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

/// gnostic's `AdditionalPropertiesItem` (a oneof of a schema and a boolean).
#[derive(Clone, PartialEq, Message)]
pub struct AdditionalProperties {
    #[prost(message, optional, tag = "1")]
    pub schema: Option<Box<Schema>>,
    #[prost(bool, optional, tag = "2")]
    pub boolean: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Any {
    #[prost(string, tag = "2")]
    pub yaml: String,
}

/// A v3 component schema (as `schemas::components` makes it) as a v2 schema.
pub fn convert(v: &Value) -> Schema {
    let mut s = Schema::default();
    let reference = v
        .get("$ref")
        .or_else(|| match v.get("allOf").and_then(Value::as_array) {
            Some(all) if all.len() == 1 => all[0].get("$ref"),
            _ => None,
        })
        .and_then(Value::as_str);
    if let Some(r) = reference {
        let name = r.strip_prefix(schemas::PREFIX).unwrap_or(r);
        s.r#ref = format!("#/definitions/{name}");
    }
    let text = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    s.format = text("format");
    s.description = text("description");
    if let Some(t) = v.get("type").and_then(Value::as_str) {
        s.r#type = Some(TypeItem {
            value: vec![t.to_string()],
        });
    }
    if let Some(Value::Array(required)) = v.get("required") {
        s.required = required
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
    }
    if let Some(items) = v.get("items") {
        s.items = Some(ItemsItem {
            schema: vec![convert(items)],
        });
    }
    match v.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            s.additional_properties = Some(AdditionalProperties {
                schema: None,
                boolean: Some(*b),
            })
        }
        Some(a @ Value::Object(_)) => {
            s.additional_properties = Some(AdditionalProperties {
                schema: Some(Box::new(convert(a))),
                boolean: None,
            })
        }
        _ => {}
    }
    if let Some(Value::Object(props)) = v.get("properties") {
        s.properties = Some(Properties {
            additional_properties: props
                .iter()
                .map(|(name, p)| NamedSchema {
                    name: name.clone(),
                    value: Some(convert(p)),
                })
                .collect(),
        });
    }
    if let Value::Object(m) = v {
        s.vendor_extension = m
            .iter()
            .filter(|(k, _)| k.starts_with("x-kubernetes-"))
            .map(|(k, x)| NamedAny {
                name: k.clone(),
                value: Some(Any {
                    yaml: serde_yaml::to_string(x).unwrap_or_default(),
                }),
            })
            .collect();
    }
    s
}

/// The v2 document of every kind, built once on first use.
pub fn document() -> Bytes {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    DOC.get_or_init(|| {
        let started = std::time::Instant::now();
        let all: Vec<_> = kinds::ALL.iter().collect();
        let (mut components, _) = schemas::components(&all);
        // Swagger 2.0 has no oneOf: both are strings there, as in Kubernetes' swagger.json.
        for (name, format) in [
            (schemas::QUANTITY, ""),
            (schemas::INT_OR_STRING, "int-or-string"),
        ] {
            if let Some(Value::Object(s)) = components.get_mut(name) {
                s.remove("oneOf");
                s.insert("type".into(), "string".into());
                if !format.is_empty() {
                    s.insert("format".into(), format.into());
                }
            }
        }
        let doc = Document {
            swagger: "2.0".into(),
            info: Some(Info {
                title: "Kubernetes".into(),
                version: format!("v1.{}.0", super::super::discovery::KUBE_MINOR),
            }),
            paths: Some(patch_paths()),
            definitions: Some(Definitions {
                additional_properties: components
                    .iter()
                    .map(|(name, s)| NamedSchema {
                        name: name.clone(),
                        value: Some(convert(s)),
                    })
                    .collect(),
            }),
        };
        let bytes = doc.encode_to_vec();
        tracing::info!(
            bytes = bytes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "openapi v2 document generated"
        );
        bytes.into()
    })
    .clone()
}
