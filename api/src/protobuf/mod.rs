//! Kubernetes' protobuf wire form (`application/vnd.kubernetes.protobuf`: the `k8s\0` magic and
//! a `runtime.Unknown` envelope) read into the JSON form of the same object, so a protobuf body
//! (kubectl's typed clients send one on create) goes through the same decoding, admission and
//! validation as a JSON one. The schema is Kubernetes' own, vendored in corral-proto.

mod json;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde_json::Value;

use crate::kinds::ResourceInfo;

/// The media type of Kubernetes' protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What every protobuf-encoded object starts with.
const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the protobuf body does not start with Kubernetes' magic prefix \"k8s\\x00\"")]
    Magic,
    #[error("the protobuf envelope (runtime.Unknown) is malformed: {0}")]
    Envelope(#[source] prost::DecodeError),
    #[error("the protobuf envelope has content encoding {0:?}; only unencoded bodies are read")]
    ContentEncoding(String),
    #[error("the protobuf envelope has content type {0:?}; only {MEDIA_TYPE} is read")]
    ContentType(String),
    #[error(
        "the protobuf body is a {body_kind} ({body_api_version}), but the request is for a {kind} ({api_version})"
    )]
    KindMismatch {
        body_kind: String,
        body_api_version: String,
        kind: String,
        api_version: String,
    },
    #[error("the protobuf body's kind {kind} ({api_version}) is not one Corral reads as protobuf")]
    UnknownKind { kind: String, api_version: String },
    #[error("the {kind} in the protobuf body is malformed: {source}")]
    Object {
        kind: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("the {kind} in the protobuf body: field {path}: {message}")]
    Field {
        kind: String,
        path: String,
        message: String,
    },
}

/// `runtime.Unknown`, the envelope after the magic prefix.
#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
    #[prost(string, optional, tag = "4")]
    content_type: Option<String>,
}

/// `runtime.TypeMeta`.
#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

/// The vendored schema and the JSON facts it does not carry.
struct Schema {
    pool: DescriptorPool,
    /// `message.field` of fields whose message JSON flattens into its parent.
    inline: HashSet<String>,
    /// `message.field` of scalars whose zero value JSON still carries.
    keep: HashSet<String>,
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let pool = DescriptorPool::decode(corral_proto::k8s::DESCRIPTOR_SET)
            .expect("the descriptor set built from the vendored protos decodes");
        let (mut inline, mut keep) = (HashSet::new(), HashSet::new());
        for line in corral_proto::k8s::JSON_RULES.lines() {
            match line.split_once(' ') {
                Some(("inline", field)) => inline.insert(field.to_string()),
                Some(("keep", field)) => keep.insert(field.to_string()),
                _ => false,
            };
        }
        Schema { pool, inline, keep }
    })
}

/// The protobuf message of a kind: Kubernetes' package is the group's first label
/// (`rbac.authorization.k8s.io` -> `rbac`), `core` for the legacy group.
fn descriptor(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = match group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    schema()
        .pool
        .get_message_by_name(&format!("k8s.io.api.{package}.{version}.{kind}"))
}

/// The envelope of a protobuf body: its type and the object's own bytes.
fn envelope(body: &[u8]) -> Result<(String, String, Vec<u8>), ProtobufError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtobufError::Magic)?;
    let unknown = Unknown::decode(rest).map_err(ProtobufError::Envelope)?;
    if let Some(enc) = unknown.content_encoding.filter(|e| !e.is_empty()) {
        return Err(ProtobufError::ContentEncoding(enc));
    }
    if let Some(ct) = unknown
        .content_type
        .filter(|c| !c.is_empty() && c != MEDIA_TYPE)
    {
        return Err(ProtobufError::ContentType(ct));
    }
    let tm = unknown.type_meta.unwrap_or_default();
    Ok((
        tm.api_version.unwrap_or_default(),
        tm.kind.unwrap_or_default(),
        unknown.raw.unwrap_or_default(),
    ))
}

/// A protobuf body of a request for `expected` as the JSON object it encodes (with its
/// `apiVersion` and `kind`); a body of another kind is refused.
pub fn to_json(body: &[u8], expected: &ResourceInfo) -> Result<Value, ProtobufError> {
    to_json_as(body, &expected.api_version(), expected.kind)
}

/// [`to_json`] for a body whose kind is not a resource's own (a subresource's: `Eviction`,
/// `Scale`, `Binding`).
pub fn to_json_as(
    body: &[u8],
    expected_api_version: &str,
    expected_kind: &str,
) -> Result<Value, ProtobufError> {
    let (api_version, kind, raw) = envelope(body)?;
    if kind != expected_kind || api_version != expected_api_version {
        return Err(ProtobufError::KindMismatch {
            body_kind: kind,
            body_api_version: api_version,
            kind: expected_kind.to_string(),
            api_version: expected_api_version.to_string(),
        });
    }
    object(api_version, kind, &raw, 0)
}

/// A protobuf-encoded object of any kind the schema has (the envelope names it): what a
/// `RawExtension` holds when its object was written as protobuf.
fn any_to_json(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let (api_version, kind, raw) = envelope(body)?;
    object(api_version, kind, &raw, depth)
}

/// Objects inside `RawExtension`s inside objects: a bound, as prost bounds message nesting.
const MAX_EMBEDDED_DEPTH: usize = 4;

fn object(
    api_version: String,
    kind: String,
    raw: &[u8],
    depth: usize,
) -> Result<Value, ProtobufError> {
    let Some(desc) = descriptor(&api_version, &kind) else {
        return Err(ProtobufError::UnknownKind { kind, api_version });
    };
    let msg = DynamicMessage::decode(desc, raw).map_err(|source| ProtobufError::Object {
        kind: kind.clone(),
        source,
    })?;
    let walker = json::Walker {
        schema: schema(),
        kind: &kind,
        depth,
    };
    let mut value = walker.message(&msg, "")?;
    if let Value::Object(map) = &mut value {
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(kind));
    }
    Ok(value)
}
