//! RFC 7386 JSON merge patch: objects merge member by member, `null` deletes a member, and
//! anything else (arrays included) replaces the target's value whole. Recursion follows the
//! patch, whose depth `super::decode` has bounded.

use serde_json::{Map, Value};

/// Applies the merge patch `patch` to `original` (RFC 7386 section 2).
pub fn apply(original: &Value, patch: &Value) -> Value {
    merge(original.clone(), patch)
}

fn merge(target: Value, patch: &Value) -> Value {
    let Value::Object(members) = patch else {
        return patch.clone();
    };
    let mut target = match target {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for (name, value) in members {
        if value.is_null() {
            target.remove(name);
        } else {
            let current = target.remove(name).unwrap_or(Value::Null);
            target.insert(name.clone(), merge(current, value));
        }
    }
    Value::Object(target)
}
