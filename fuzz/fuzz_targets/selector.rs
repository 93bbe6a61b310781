//! Label and field selectors (`api/src/selector.rs`): parsing never panics, a parsed label
//! selector prints to a string that parses back to the same selector (and so matches the same
//! labels), and a parsed field selector keeps to the path limits and matches any object.
#![no_main]

use std::collections::BTreeMap;

use corral_api::selector::{FieldSelector, LabelSelectorExpr, Op, MAX_FIELD_DEPTH, MAX_FIELD_PATH};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// Label sets built from the selector's own keys and values, so matching is exercised.
fn label_sets(sel: &LabelSelectorExpr) -> Vec<BTreeMap<String, String>> {
    let mut sets = vec![BTreeMap::new()];
    let mut all = BTreeMap::new();
    for r in &sel.requirements {
        let values = match &r.op {
            Op::In(v) | Op::NotIn(v) => v.clone(),
            Op::Exists | Op::DoesNotExist => vec![String::new()],
        };
        for v in values {
            sets.push(BTreeMap::from([(r.key.clone(), v.clone())]));
            all.insert(r.key.clone(), v);
        }
    }
    sets.push(all);
    sets
}

fn object_with(labels: &BTreeMap<String, String>) -> Value {
    json!({"metadata": {"name": "n", "labels": labels}, "spec": {"nodeName": "n1", "x": [1, {"y": null}]}, "status": {"phase": "Running"}})
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sel) = LabelSelectorExpr::parse(s) {
        assert!(!sel.matches_nothing);
        let printed = sel.to_string();
        let reparsed = LabelSelectorExpr::parse(&printed)
            .unwrap_or_else(|e| panic!("{s:?} printed as {printed:?}, which fails: {e}"));
        assert_eq!(sel, reparsed, "{s:?} printed as {printed:?}");
        assert_eq!(sel.is_everything(), sel.requirements.is_empty());
        for labels in label_sets(&sel) {
            let object = object_with(&labels);
            assert_eq!(
                sel.matches(&labels),
                sel.matches_object(&object),
                "{s:?} on {labels:?}"
            );
        }
    }
    if let Ok(fields) = FieldSelector::parse(s) {
        for (path, _, _) in &fields.terms {
            assert!(!path.is_empty() && path.len() <= MAX_FIELD_PATH, "{path:?}");
            assert!(path.split('.').count() <= MAX_FIELD_DEPTH, "{path:?}");
            assert!(path.split('.').all(|seg| !seg.is_empty()), "{path:?}");
            assert_eq!(path.trim(), path);
        }
        for (path, _, equal) in &fields.terms {
            if *equal {
                assert!(fields.required(path).is_some(), "{s:?}: {path:?}");
            }
        }
        // Matching never panics, on any shape of object.
        for object in [
            object_with(&BTreeMap::new()),
            json!(null),
            json!([1]),
            json!("x"),
            json!({"metadata": 1}),
        ] {
            let _ = fields.matches(&object);
        }
        // A selector made only of equalities matches an object built to satisfy them.
        // (`/` and `~` are JSON-pointer syntax in a path, digits index arrays: left out here.)
        let plain = |p: &str| !p.contains(['/', '~']);
        if fields.terms.iter().all(|(p, _, eq)| *eq && plain(p)) {
            let mut object = json!({});
            let mut consistent = true;
            for (path, value, _) in &fields.terms {
                let pointer = format!("/{}", path.replace('.', "/"));
                match object.pointer(&pointer) {
                    Some(Value::String(v)) if v == value => {}
                    Some(_) => consistent = false,
                    None => consistent &= set_path(&mut object, path, value),
                }
            }
            if consistent {
                assert!(fields.matches(&object), "{s:?} on {object}");
            }
        }
    }
});

/// Sets `a.b.c` to a string in an object tree; false when a prefix is not an object.
fn set_path(object: &mut Value, path: &str, value: &str) -> bool {
    let mut node = object;
    let segments: Vec<&str> = path.split('.').collect();
    for (i, seg) in segments.iter().enumerate() {
        let Value::Object(map) = node else {
            return false;
        };
        if i + 1 == segments.len() {
            map.insert(seg.to_string(), Value::from(value));
            return true;
        }
        node = map.entry(seg.to_string()).or_insert_with(|| json!({}));
    }
    false
}
