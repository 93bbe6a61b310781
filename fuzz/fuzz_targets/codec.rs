//! The registry's byte codec (`controlplane/src/registry/codec.rs`, `raw.rs`): whatever bytes
//! the store holds, decoding, the resourceVersion splice and the selector filter never panic;
//! for bytes in the stored form (compact JSON objects without a resourceVersion) the splice
//! gives the parsed object and the projecting filter agrees with matching the whole object.
//!
//! Input: a label selector line, a field selector line, then the stored bytes.
#![no_main]

use corral_api::selector::{FieldSelector, LabelSelectorExpr};
use corral_controlplane::registry::{decode_kv, encode_kv, raw, Filter};
use corral_controlplane::store::KeyValue;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn kv(value: &[u8], rev: i64) -> KeyValue {
    KeyValue {
        key: "/registry/pods/default/p".into(),
        value: value.into(),
        create_revision: 1,
        mod_revision: rev,
    }
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (labels, rest) = split_line(data);
    let (fields, stored) = split_line(rest);
    let labels = std::str::from_utf8(labels)
        .ok()
        .and_then(|s| LabelSelectorExpr::parse(s).ok())
        .unwrap_or_default();
    let fields = std::str::from_utf8(fields)
        .ok()
        .and_then(|s| FieldSelector::parse(s).ok())
        .unwrap_or_default();
    let filter = Filter::new(&labels, &fields);
    let rev = 1 + stored.len() as i64 * 7919;

    // Any bytes: no panic.
    let raw_kv = kv(stored, rev);
    let _ = decode_kv(&raw_kv);
    let _ = encode_kv(&raw_kv);
    let _ = filter.matches(&raw_kv);
    let _ = raw::members(stored);
    if let Some(edit) = raw::Edit::new(stored) {
        let _ = edit.finish();
    }

    // The stored form of an object, as the registry writes it.
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(stored) else {
        return;
    };
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        meta.remove("resourceVersion");
    }
    let object = Value::Object(object);
    let bytes = serde_json::to_vec(&object).expect("JSON values serialize");
    let stored_kv = kv(&bytes, rev);

    let decoded = decode_kv(&stored_kv);
    let spliced: Value = serde_json::from_slice(&encode_kv(&stored_kv)).unwrap_or_else(|e| {
        panic!(
            "the splice of {} is not JSON: {e}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(spliced, decoded, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(
        decoded.pointer("/metadata/resourceVersion"),
        Some(&Value::from(rev.to_string()))
    );
    let whole = labels.matches_object(&decoded) && fields.matches(&decoded);
    assert_eq!(
        filter.matches(&stored_kv),
        whole,
        "filter on {}: labels {labels}, fields {:?}",
        String::from_utf8_lossy(&bytes),
        fields.terms
    );
    // Editing nothing gives the same bytes (serde_json writes sorted, unique keys).
    let edit = raw::Edit::new(&bytes).expect("stored bytes are one object");
    assert_eq!(edit.finish(), bytes);
});
