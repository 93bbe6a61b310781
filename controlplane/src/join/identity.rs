//! Node identity records: which key holds a node name (k3s's node password, with the key of
//! the node's CSR instead of a password). A Secret `kube-system/corral-node-<name>` keeps the
//! SHA-256 of the node's public key; the planner decides whether a join may take the name.

use base64::Engine;
use serde_json::{json, Value};

pub const NAMESPACE: &str = "kube-system";
pub const SECRET_TYPE: &str = "corral.io/node-identity";
pub const SECRET_PREFIX: &str = "corral-node-";
const KEY_FIELD: &str = "public-key-sha256";

pub fn secret_name(node: &str) -> String {
    format!("{SECRET_PREFIX}{node}")
}

/// What a join does with the identity record of the name it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// No record: create one for this key.
    Create,
    /// The record names this key already (the same host joining again).
    Keep,
    /// Another key holds the record but its Node is gone: the name is free again.
    Replace,
    /// Another key holds the name and the Node exists: refuse.
    Refuse,
}

/// Pure: `recorded` is the key hash in the record (if any), `node_exists` whether the Node
/// object exists, `presented` the key hash of the joining CSR.
pub fn plan(recorded: Option<&str>, node_exists: bool, presented: &str) -> Plan {
    match recorded {
        None => Plan::Create,
        Some(r) if r == presented => Plan::Keep,
        Some(_) if node_exists => Plan::Refuse,
        Some(_) => Plan::Replace,
    }
}

/// The record's Secret.
pub fn to_secret(node: &str, key_hash: &str) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD.encode(key_hash);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(node), "namespace": NAMESPACE},
        "type": SECRET_TYPE,
        "data": {KEY_FIELD: b64},
    })
}

/// The key hash a record names; `None` when the Secret is not a readable record (treated as
/// absent only by `plan`'s caller, which then overwrites it).
pub fn key_hash(secret: &Value) -> Option<String> {
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return None;
    }
    let b64 = secret.pointer(&format!("/data/{KEY_FIELD}"))?.as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_taken_only_while_its_node_exists() {
        let table = [
            (None, false, "k1", Plan::Create),
            (None, true, "k1", Plan::Create),
            (Some("k1"), true, "k1", Plan::Keep),
            (Some("k1"), false, "k1", Plan::Keep),
            (Some("k1"), true, "k2", Plan::Refuse),
            (Some("k1"), false, "k2", Plan::Replace),
        ];
        for (recorded, node_exists, presented, want) in table {
            assert_eq!(
                plan(recorded, node_exists, presented),
                want,
                "{recorded:?} {node_exists} {presented}"
            );
        }
    }

    #[test]
    fn records_round_trip_through_their_secret() {
        let s = to_secret("n1", "abc");
        assert_eq!(s["metadata"]["name"], "corral-node-n1");
        assert_eq!(key_hash(&s).as_deref(), Some("abc"));
        assert_eq!(key_hash(&json!({"type": "Opaque"})), None);
    }
}
