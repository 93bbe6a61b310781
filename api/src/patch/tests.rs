//! Table tests of the entry point, JSON patch (RFC 6902 appendix A and Kubernetes' behaviours)
//! and merge patch (RFC 7386 appendix A).

use super::*;
use crate::kinds;
use serde_json::json;

fn json_patch(original: Value, ops: Value) -> Result<Value, PatchError> {
    apply(
        &kinds::CONFIGMAPS,
        &original,
        ops.to_string().as_bytes(),
        PatchType::Json,
    )
}

#[test]
fn content_types_name_the_three_patch_types_and_nothing_else() {
    for (ct, want) in [
        ("application/json-patch+json", Some(PatchType::Json)),
        ("application/merge-patch+json", Some(PatchType::Merge)),
        (
            "application/strategic-merge-patch+json",
            Some(PatchType::StrategicMerge),
        ),
        (
            "application/merge-patch+json; charset=utf-8",
            Some(PatchType::Merge),
        ),
        ("Application/JSON-Patch+JSON", Some(PatchType::Json)),
        ("application/apply-patch+yaml", None),
        ("application/json", None),
        ("", None),
    ] {
        assert_eq!(PatchType::from_content_type(ct), want, "{ct}");
        if let Some(t) = want {
            assert_eq!(PatchType::from_content_type(t.content_type()), want);
        }
    }
}

#[test]
fn rfc6902_appendix_a_examples_apply_as_written() {
    let ok = [
        // A.1 adding an object member
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux"}]),
            json!({"baz": "qux", "foo": "bar"}),
        ),
        // A.2 adding an array element
        (
            json!({"foo": ["bar", "baz"]}),
            json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
            json!({"foo": ["bar", "qux", "baz"]}),
        ),
        // A.3 removing an object member
        (
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "remove", "path": "/baz"}]),
            json!({"foo": "bar"}),
        ),
        // A.4 removing an array element
        (
            json!({"foo": ["bar", "qux", "baz"]}),
            json!([{"op": "remove", "path": "/foo/1"}]),
            json!({"foo": ["bar", "baz"]}),
        ),
        // A.5 replacing a value
        (
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
            json!({"baz": "boo", "foo": "bar"}),
        ),
        // A.6 moving a value
        (
            json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
            json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
            json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
        ),
        // A.7 moving an array element
        (
            json!({"foo": ["all", "grass", "cows", "eat"]}),
            json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
            json!({"foo": ["all", "cows", "eat", "grass"]}),
        ),
        // A.8 testing a value: success
        (
            json!({"baz": "qux", "foo": ["a", 2, "c"]}),
            json!([
                {"op": "test", "path": "/baz", "value": "qux"},
                {"op": "test", "path": "/foo/1", "value": 2}
            ]),
            json!({"baz": "qux", "foo": ["a", 2, "c"]}),
        ),
        // A.10 adding a nested member object
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
            json!({"foo": "bar", "child": {"grandchild": {}}}),
        ),
        // A.11 ignoring unrecognized elements
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}]),
            json!({"foo": "bar", "baz": "qux"}),
        ),
        // A.14 ~ escape ordering
        (
            json!({"/": 9, "~1": 10}),
            json!([{"op": "test", "path": "/~01", "value": 10}]),
            json!({"/": 9, "~1": 10}),
        ),
        // A.16 adding an array value
        (
            json!({"foo": ["bar"]}),
            json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
            json!({"foo": ["bar", ["abc", "def"]]}),
        ),
        // copy, and the numbers of `test` compared by value
        (
            json!({"a": {"b": [1]}, "n": 1}),
            json!([
                {"op": "copy", "from": "/a", "path": "/c"},
                {"op": "test", "path": "/n", "value": 1.0},
                {"op": "add", "path": "/c/b/0", "value": 0}
            ]),
            json!({"a": {"b": [1]}, "c": {"b": [0, 1]}, "n": 1}),
        ),
        // Kubernetes' negative indices count from the end
        (
            json!({"l": [1, 2, 3]}),
            json!([{"op": "remove", "path": "/l/-1"}]),
            json!({"l": [1, 2]}),
        ),
        // ~1 is a slash: the way to name an annotation key
        (
            json!({"metadata": {"annotations": {}}}),
            json!([{"op": "add", "path": "/metadata/annotations/example.com~1tier", "value": "a"}]),
            json!({"metadata": {"annotations": {"example.com/tier": "a"}}}),
        ),
    ];
    for (original, ops, want) in ok {
        assert_eq!(json_patch(original, ops.clone()).unwrap(), want, "{ops}");
    }
}

#[test]
fn failing_json_patch_operations_say_why_in_kubernetes_words() {
    use json::JsonPatchError as E;
    let cases = [
        // A.9 testing a value: error
        (
            json!({"baz": "qux"}),
            json!([{"op": "test", "path": "/baz", "value": "bar"}]),
            E::TestFailed {
                path: "/baz".into(),
            },
        ),
        // A.12 adding to a nonexistent target
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz/bat", "value": "qux"}]),
            E::MissingPath {
                op: "add",
                path: "/baz/bat".into(),
            },
        ),
        // A.15 comparing strings and numbers
        (
            json!({"/": 9, "~1": 10}),
            json!([{"op": "test", "path": "/~01", "value": "10"}]),
            E::TestFailed {
                path: "/~01".into(),
            },
        ),
        (
            json!({"a": 1}),
            json!([{"op": "remove", "path": "/b"}]),
            E::RemoveMissingKey {
                path: "/b".into(),
                key: "b".into(),
            },
        ),
        (
            json!({"a": 1}),
            json!([{"op": "replace", "path": "/b", "value": 2}]),
            E::MissingKey {
                op: "replace",
                path: "/b".into(),
            },
        ),
        (
            json!({"l": [1]}),
            json!([{"op": "add", "path": "/l/5", "value": 2}]),
            E::InvalidIndex {
                op: "add",
                path: "/l/5".into(),
                index: "5".into(),
            },
        ),
        (
            json!({"l": [1]}),
            json!([{"op": "remove", "path": "/l/x"}]),
            E::InvalidIndex {
                op: "remove",
                path: "/l/x".into(),
                index: "x".into(),
            },
        ),
        (
            json!({}),
            json!([{"op": "frobnicate", "path": "/a"}]),
            E::UnknownOp {
                op: "frobnicate".into(),
            },
        ),
        (
            json!({}),
            json!([{"path": "/a"}]),
            E::UnknownOp {
                op: "unknown".into(),
            },
        ),
        (
            json!({}),
            json!([{"op": "add", "value": 1}]),
            E::MissingField {
                op: "add",
                field: "path",
            },
        ),
        (
            json!({}),
            json!([{"op": "add", "path": "/a"}]),
            E::MissingField {
                op: "add",
                field: "value",
            },
        ),
        (
            json!({"a": {"b": 1}}),
            json!([{"op": "move", "from": "/a", "path": "/a/b/c"}]),
            E::MoveIntoChild {
                from: "/a".into(),
                path: "/a/b/c".into(),
            },
        ),
        (
            json!({"a": 1}),
            json!([{"op": "move", "from": "/b", "path": "/c"}]),
            E::MissingFrom {
                op: "move",
                from: "/b".into(),
            },
        ),
        (
            json!({"a": [1]}),
            json!([{"op": "copy", "from": "/a/3", "path": "/c"}]),
            E::MissingFrom {
                op: "copy",
                from: "/a/3".into(),
            },
        ),
        (
            json!({}),
            json!([{"op": "add", "path": "a", "value": 1}]),
            E::BadPointer {
                op: "add",
                pointer: "a".into(),
                why: "a pointer is empty or starts with /",
            },
        ),
    ];
    for (original, ops, want) in cases {
        match json_patch(original, ops.clone()) {
            Err(PatchError::Json(e)) => {
                assert_eq!(e, want, "{ops}");
                assert_eq!(PatchError::Json(e).reason(), StatusReason::Invalid);
            }
            other => panic!("{ops}: {other:?}"),
        }
    }
    let err = json_patch(
        json!({"a": 1}),
        json!([{"op": "test", "path": "/a", "value": 2}]),
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        "testing value /a failed: test failed"
    );
}

#[test]
fn a_json_patch_of_more_than_ten_thousand_operations_is_refused() {
    let op = json!({"op": "test", "path": "/a", "value": 1});
    let ok = Value::Array(vec![op.clone(); MAX_OPERATIONS]);
    assert!(json_patch(json!({"a": 1}), ok).is_ok());
    let too_many = Value::Array(vec![op; MAX_OPERATIONS + 1]);
    let err = json_patch(json!({"a": 1}), too_many).unwrap_err();
    assert_eq!(
        err.to_string(),
        "The allowed maximum operations in a JSON patch is 10000, got 10001"
    );
    assert_eq!(err.reason(), StatusReason::RequestEntityTooLarge);
}

#[test]
fn a_json_patch_body_that_is_not_a_list_of_operations_is_a_bad_request() {
    for body in [&b"{}"[..], b"[1]", b"not json", b""] {
        let err = apply(&kinds::PODS, &json!({}), body, PatchType::Json).unwrap_err();
        assert_eq!(err.reason(), StatusReason::BadRequest, "{err}");
    }
}

#[test]
fn copies_that_would_double_the_object_again_and_again_are_stopped() {
    let big = "x".repeat(64 * 1024);
    let mut ops = Vec::new();
    for i in 0..64 {
        ops.push(json!({"op": "copy", "from": "", "path": format!("/c{i}")}));
    }
    let err = json_patch(json!({ "a": big }), Value::Array(ops)).unwrap_err();
    assert!(
        matches!(
            err,
            PatchError::Json(json::JsonPatchError::CopyTooLarge { .. })
        ),
        "{err}"
    );
}

#[test]
fn json_patches_cannot_build_objects_deeper_than_the_limit() {
    // Each add nests one level deeper than the last: bounded, not a stack overflow later.
    let mut ops = Vec::new();
    let mut path = String::new();
    for _ in 0..MAX_DEPTH + 5 {
        path.push_str("/a");
        ops.push(json!({"op": "add", "path": path, "value": {}}));
    }
    let err = json_patch(json!({}), Value::Array(ops)).unwrap_err();
    assert!(
        matches!(
            err,
            PatchError::Json(json::JsonPatchError::TooDeep { .. })
                | PatchError::Json(json::JsonPatchError::BadPointer { .. })
        ),
        "{err}"
    );
}

#[test]
fn patches_nested_deeper_than_the_limit_are_refused_for_every_type() {
    let deep = format!("{}{}", "{\"a\":".repeat(MAX_DEPTH + 1), "1") + &"}".repeat(MAX_DEPTH + 1);
    for t in [PatchType::Merge, PatchType::StrategicMerge] {
        let err = apply(&kinds::PODS, &json!({}), deep.as_bytes(), t).unwrap_err();
        assert!(matches!(err, PatchError::TooDeep { .. }), "{t:?}: {err}");
        assert_eq!(err.reason(), StatusReason::BadRequest);
    }
    let ok = format!("{}{}", "{\"a\":".repeat(MAX_DEPTH - 1), "1") + &"}".repeat(MAX_DEPTH - 1);
    assert!(apply(&kinds::PODS, &json!({}), ok.as_bytes(), PatchType::Merge).is_ok());
}

#[test]
fn rfc7386_appendix_a_examples_apply_as_written() {
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ];
    for (original, patch, want) in cases {
        let got = apply(
            &kinds::PODS,
            &original,
            patch.to_string().as_bytes(),
            PatchType::Merge,
        )
        .unwrap();
        assert_eq!(got, want, "{original} + {patch}");
    }
}

#[test]
fn depth_counts_nesting_without_recursion() {
    assert_eq!(depth(&json!(1)), 0);
    assert_eq!(depth(&json!({})), 1);
    assert_eq!(depth(&json!([[], {"a": [1]}])), 3);
}

#[test]
fn ten_thousand_inserts_at_the_head_of_a_long_list_are_stopped() {
    let long: Vec<Value> = (0..100_000).map(|i| json!(i)).collect();
    let ops = vec![json!({"op": "add", "path": "/l/0", "value": 0}); MAX_OPERATIONS];
    let err = json_patch(json!({ "l": long }), Value::Array(ops)).unwrap_err();
    assert!(
        matches!(
            err,
            PatchError::Json(json::JsonPatchError::TooExpensive { .. })
        ),
        "{err}"
    );
    assert_eq!(err.reason(), StatusReason::RequestEntityTooLarge);
}
