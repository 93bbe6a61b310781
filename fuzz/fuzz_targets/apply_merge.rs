//! Apply's three-way merge (`controlplane/src/registry/apply.rs`) over arbitrary JSON.
//!
//! Input: a JSON array `[current, manifest, last]`: the live object, the manifest applied
//! now, and the annotation recorded by the previous apply (any JSON; a user can edit it).
//! The registry only merges objects (`kind_of` refuses anything else), so non-objects are
//! skipped. Invariants: the result is an object; it records the new manifest; it keeps the
//! live status; every value the manifest sets is in the result.
#![no_main]

use corral_controlplane::registry::apply::{annotate, last_applied_form, merge, LAST_APPLIED};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Every (path, value) the manifest sets, `path` as keys; objects are descended into.
fn leaves<'a>(v: &'a Value, path: &mut Vec<&'a str>, out: &mut Vec<(Vec<&'a str>, &'a Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(k);
                leaves(child, path, out);
                path.pop();
            }
        }
        other => out.push((path.clone(), other)),
    }
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |node, k| node.as_object()?.get(*k))
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Array(triple)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let [current, manifest, last] = <[Value; 3]>::try_from(triple).unwrap_or_else(|t| {
        let mut t = t.into_iter();
        [
            t.next().unwrap_or(Value::Null),
            t.next().unwrap_or(Value::Null),
            t.next().unwrap_or(Value::Null),
        ]
    });
    let (Value::Object(_), Value::Object(_)) = (&current, &manifest) else {
        return;
    };
    let mut current = current;
    if !last.is_null() {
        annotate(&mut current, &last);
    }
    let applied = last_applied_form(&manifest);
    let merged = merge(&current, &manifest, &applied);

    assert!(merged.is_object(), "{merged}");
    let recorded = merged
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .expect("the result records the applied manifest");
    assert_eq!(
        serde_json::from_str::<Value>(recorded).expect("the record is JSON"),
        applied
    );
    assert_eq!(
        merged.get("status"),
        current.get("status"),
        "status is the live one"
    );
    assert!(merged.pointer("/metadata/resourceVersion").is_none());
    assert!(applied.get("status").is_none());

    // What the manifest sets wins, except where the registry owns the field (metadata and
    // its annotations are made objects to hold the record).
    let mut out = Vec::new();
    leaves(&applied, &mut Vec::new(), &mut out);
    for (path, value) in out {
        let owned = matches!(path.as_slice(), ["metadata"] | ["metadata", "annotations"]);
        if owned {
            continue;
        }
        let got = at(&merged, &path);
        match value {
            Value::Object(_) => assert!(
                got.is_some_and(Value::is_object),
                "{path:?}: want an object, got {got:?}"
            ),
            v => assert_eq!(got, Some(v), "{path:?}"),
        }
    }

    // Applying the same manifest again changes nothing.
    let again = merge(&merged, &manifest, &applied);
    assert_eq!(
        again, merged,
        "a second apply of the same manifest is a no-op"
    );
});
