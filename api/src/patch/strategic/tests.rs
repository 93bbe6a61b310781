//! Strategic merge patch tests. `Shape` is a schema shaped like apimachinery's test type
//! (`mergingList` by `name`, `mergingIntList` a set, `nonMergingList` replaced, ...), so cases
//! read from Kubernetes' own suite apply here; `kubernetes.rs` covers Corral's real kinds.

use super::*;
use serde_json::json;

mod cases;
mod kubernetes;
mod random;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Item,
    RetainKeys,
    Unknown,
}

impl Schema for Shape {
    fn field(self, name: &str) -> FieldMeta<Shape> {
        let plain = |ty| FieldMeta {
            ty,
            strategy: Strategy::Default,
            merge_key: "",
        };
        let by = |merge_key, ty| FieldMeta {
            ty,
            strategy: Strategy::Merge,
            merge_key,
        };
        match (self, name) {
            (Shape::Item | Shape::RetainKeys, "mergingList") => by("name", Shape::Item),
            (Shape::Item, "retainKeysMergingList") => by("name", Shape::Item),
            (Shape::Item | Shape::RetainKeys, "nonMergingList") => plain(Shape::Item),
            (Shape::Item | Shape::RetainKeys, "mergingIntList") => by("", Shape::Unknown),
            (Shape::Item, "mergeItemPtr") => by("name", Shape::Item),
            (Shape::Item, "retainKeysMap") => plain(Shape::RetainKeys),
            (Shape::Item, "replacingItem") => FieldMeta {
                ty: Shape::Unknown,
                strategy: Strategy::Replace,
                merge_key: "",
            },
            _ => plain(Shape::Unknown),
        }
    }
}

fn run(original: &Value, patch: &Value) -> Result<Value> {
    let Value::Object(p) = patch.clone() else {
        panic!("patch {patch} is not an object")
    };
    apply(Shape::Item, original.clone(), p)
}

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn cases_from_the_kubernetes_suite_give_kubernetes_results() {
    let mut failed = Vec::new();
    for case in cases::CASES {
        let got = run(&parse(case.original), &parse(case.patch));
        let ok = match (&got, case.want) {
            (Ok(v), Ok(want)) => *v == parse(want),
            (Err(e), Err(words)) => e.to_string().contains(words),
            _ => false,
        };
        if !ok {
            failed.push(format!("{}: got {got:?}", case.what));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn directives_apply_as_documented() {
    let cases = [
        (
            "$patch: replace makes a map the patch's",
            json!({"simpleMap": {"a": "1", "b": "2"}}),
            json!({"simpleMap": {"$patch": "replace", "c": "3"}}),
            json!({"simpleMap": {"c": "3"}}),
        ),
        (
            "$patch: delete empties a map",
            json!({"simpleMap": {"a": "1"}, "name": "x"}),
            json!({"simpleMap": {"$patch": "delete"}}),
            json!({"simpleMap": {}, "name": "x"}),
        ),
        (
            "$patch: replace as a list item makes the list the patch's",
            json!({"mergingList": [{"name": "a"}, {"name": "b"}]}),
            json!({"mergingList": [{"name": "c"}, {"$patch": "replace"}]}),
            json!({"mergingList": [{"name": "c"}]}),
        ),
        (
            "$patch: delete as a list item removes every item with its key",
            json!({"mergingList": [{"name": "a"}, {"name": "b"}, {"name": "a", "value": "2"}]}),
            json!({"mergingList": [{"name": "a", "$patch": "delete"}]}),
            json!({"mergingList": [{"name": "b"}]}),
        ),
        (
            "null deletes a key, and is dropped from new content",
            json!({"name": "x", "value": "v"}),
            json!({"value": null, "other": null, "simpleMap": {"a": "1", "b": null}}),
            json!({"name": "x", "simpleMap": {"a": "1"}}),
        ),
        (
            "primitive lists with strategy merge are sets, in the original's order",
            json!({"mergingIntList": [1, 2]}),
            json!({"mergingIntList": [2, 3]}),
            json!({"mergingIntList": [1, 2, 3]}),
        ),
        (
            "items new to a merging list come before the original's (Kubernetes' order)",
            json!({"mergingIntList": [1, 2], "mergingList": [{"name": "a"}]}),
            json!({"mergingIntList": [3], "mergingList": [{"name": "b"}]}),
            json!({"mergingIntList": [3, 1, 2], "mergingList": [{"name": "b"}, {"name": "a"}]}),
        ),
        (
            "lists without strategy are replaced",
            json!({"nonMergingIntList": [1, 2], "nonMergingList": [{"name": "a"}]}),
            json!({"nonMergingIntList": [3], "nonMergingList": [{"name": "b"}]}),
            json!({"nonMergingIntList": [3], "nonMergingList": [{"name": "b"}]}),
        ),
        (
            "$deleteFromPrimitiveList removes items and adds none",
            json!({"mergingIntList": [1, 2, 3, 2]}),
            json!({"$deleteFromPrimitiveList/mergingIntList": [2, 9]}),
            json!({"mergingIntList": [1, 3]}),
        ),
        (
            "a deletion and an addition of one item in one patch keep the item",
            json!({"mergingIntList": [1, 2]}),
            json!({"$deleteFromPrimitiveList/mergingIntList": [2], "mergingIntList": [2]}),
            json!({"mergingIntList": [2, 1]}),
        ),
        (
            "$setElementOrder reorders a list the patch does not otherwise touch",
            json!({"mergingList": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
            json!({"$setElementOrder/mergingList": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}),
            json!({"mergingList": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}),
        ),
        (
            "$retainKeys clears the original's keys it does not list",
            json!({"retainKeysMap": {"name": "a", "value": "b", "other": "c"}}),
            json!({"retainKeysMap": {"$retainKeys": ["name", "other"], "other": "d"}}),
            json!({"retainKeysMap": {"name": "a", "other": "d"}}),
        ),
        (
            "directives inside new content do not reach the result",
            json!({}),
            json!({"mergingList": [{"name": "a", "$setElementOrder/mergingList": [], "$retainKeys": ["name"]},
                                   {"name": "b", "$patch": "delete"}],
                   "retainKeysMap": {"$patch": "replace", "name": "n"}}),
            json!({"mergingList": [{"name": "a"}], "retainKeysMap": {"name": "n"}}),
        ),
        (
            "a replace strategy takes the patch's map",
            json!({"replacingItem": {"a": 1, "b": 2}}),
            json!({"replacingItem": {"c": 3}}),
            json!({"replacingItem": {"c": 3}}),
        ),
    ];
    for (what, original, patch, want) in cases {
        assert_eq!(run(&original, &patch).unwrap(), want, "{what}");
    }
}

#[test]
fn malformed_strategic_patches_name_the_field_and_what_is_wrong() {
    let cases = [
        (
            json!({"mergingList": [{"name": "a"}]}),
            json!({"mergingList": [{"value": "b"}]}),
            "mergingList: map does not contain declared merge key: name",
        ),
        (
            json!({"mergingList": [{"name": "a"}]}),
            json!({"mergingList": [{"name": "a", "$patch": "merge"}]}),
            "mergingList: merging lists cannot yet be specified in the patch",
        ),
        (
            json!({"mergingList": [{"name": "a"}]}),
            json!({"mergingList": [{"name": "a", "$patch": "frob"}]}),
            "mergingList: unknown patch type: \"frob\"",
        ),
        (
            json!({"simpleMap": {}}),
            json!({"simpleMap": {"$patch": "merge"}}),
            "simpleMap: unknown patch type: \"merge\"",
        ),
        (
            json!({}),
            json!({"$deleteFromPrimitiveListmergingIntList": [1]}),
            "$deleteFromPrimitiveListmergingIntList: invalid patch format of primitive list",
        ),
        (
            json!({"retainKeysMap": {}}),
            json!({"retainKeysMap": {"$retainKeys": ["name"], "value": "v"}}),
            "retainKeysMap.$retainKeys: invalid patch format of retainKeys",
        ),
        (
            json!({"retainKeysMap": {}}),
            json!({"retainKeysMap": {"$retainKeys": "name"}}),
            "retainKeysMap.$retainKeys: invalid patch format of retainKeys",
        ),
        (
            json!({"mergingList": [{"name": 1}, {"name": 2}]}),
            json!({"$setElementOrder/mergingList": [{"name": 1}], "mergingList": [{"name": 2}]}),
            "mergingList: the order in the patch list doesn't match the $setElementOrder list",
        ),
        (
            json!({}),
            json!({"$setElementOrder": []}),
            "$setElementOrder: invalid patch format of setElementOrder list",
        ),
        (
            json!({"mergingIntList": [[1]]}),
            json!({"mergingIntList": [[2]]}),
            "mergingIntList: lists of lists are not supported",
        ),
        (
            json!({"mergingIntList": [1]}),
            json!({"mergingIntList": ["a"]}),
            "mergingIntList: list element types are not identical",
        ),
        (
            json!({"mergingList": [{"name": "a", "mergingList": [{"name": "x"}]}]}),
            json!({"mergingList": [{"name": "a", "mergingList": [{"value": "y"}]}]}),
            "mergingList[name=\"a\"].mergingList: map does not contain declared merge key: name",
        ),
        (
            json!({"simpleMap": {"l": [{"a": 1}]}}),
            json!({"simpleMap": {"l": [{"a": 2}], "$patch": "delete"}}),
            "",
        ),
    ];
    for (original, patch, words) in cases {
        match run(&original, &patch) {
            Err(e) => assert_eq!(e.to_string(), words, "{patch}"),
            Ok(v) if words.is_empty() => assert_eq!(v, json!({"simpleMap": {}})),
            Ok(v) => panic!("{patch}: no error, got {v}"),
        }
    }
    let lists = StrategicError::ListOfLists { path: "x".into() };
    assert_eq!(lists.reason(), StatusReason::Invalid);
    let key = StrategicError::NoMergeKey {
        path: "x".into(),
        key: "name".into(),
    };
    assert_eq!(key.reason(), StatusReason::BadRequest);
}

#[test]
fn long_merge_lists_merge_in_linear_time() {
    // 20,000 items on each side: a quadratic merge would take minutes.
    let n = 20_000;
    let original: Vec<Value> = (0..n).map(|i| json!({"name": i, "value": "o"})).collect();
    let patch: Vec<Value> = (0..n)
        .map(|i| json!({"name": i + n / 2, "value": "p"}))
        .collect();
    let ints: Vec<Value> = (0..n).map(|i| json!(i)).collect();
    let got = run(
        &json!({"mergingList": original, "mergingIntList": ints}),
        &json!({"mergingList": patch, "mergingIntList": ints}),
    )
    .unwrap();
    assert_eq!(got["mergingList"].as_array().unwrap().len(), n + n / 2);
    assert_eq!(got["mergingIntList"].as_array().unwrap().len(), n);
}

#[test]
fn merging_one_long_list_once_per_patch_item_is_stopped() {
    // Each patch item names the same item and merges into its 1,000-item list again.
    let long: Vec<Value> = (0..1000).map(|i| json!({"name": i})).collect();
    let original = json!({"mergingList": [{"name": "web", "mergingList": long}]});
    let item = json!({"name": "web", "mergingList": [{"name": "x"}]});
    let patch = json!({"mergingList": vec![item; 100]});
    let Value::Object(patch) = patch else {
        unreachable!()
    };
    let err = apply_within(Shape::Item, original.clone(), patch.clone(), 50_000).unwrap_err();
    assert!(
        matches!(&err, StrategicError::TooExpensive { path } if path.starts_with("mergingList[name=\"web\"]")),
        "{err}"
    );
    assert_eq!(err.reason(), StatusReason::RequestEntityTooLarge);
    assert!(apply_within(Shape::Item, original, patch, 200_000).is_ok());
}
