//! Table tests of server-side apply, after structured-merge-diff's cases (multiple appliers,
//! conflicts and force, shared ownership, removal of dropped fields, updaters taking fields).

use serde_json::{json, Value};

use super::*;
use crate::kinds;

const T0: &str = "2026-12-06T18:00:00Z";

fn w<'a>(manager: &'a str) -> Writer<'a> {
    Writer {
        kind: &kinds::DEPLOYMENTS,
        manager,
        now: T0,
    }
}

fn deploy(replicas: i64, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx",
                    "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

/// A deployment as client-side apply writes it: the manifest, and itself in the annotation.
fn client_side(replicas: i64) -> Value {
    let mut d = deploy(replicas, json!({}));
    let text = serde_json::to_string(&d).unwrap();
    d["metadata"]["annotations"] = json!({ csa::LAST_APPLIED: text });
    d
}

fn set_of(kind: &ResourceInfo, v: &Value) -> Value {
    let mut s = FieldSet::default();
    walk::set_of(Node::root(Ty::of_kind(kind)), v, &mut s);
    s.remove_subtrees(&stripped(kind));
    s.normalize();
    s.to_fields_v1()
}

#[test]
fn an_applied_configuration_owns_its_leaves_and_keyed_items_in_fields_v1_form() {
    for (kind, config, want) in [
        (
            &kinds::DEPLOYMENTS,
            deploy(2, json!({"app": "web"})),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {"f:matchLabels": {"f:app": {}}},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                            ".": {}, "f:image": {}, "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                ".": {}, "f:containerPort": {}}}
                        }}}
                    }
                }
            }),
        ),
        (
            &kinds::PODS,
            json!({"metadata": {"name": "p", "finalizers": ["a/b"]},
                   "spec": {"tolerations": [{"key": "k"}], "nodeSelector": {}},
                   "status": {"phase": "Running"}}),
            json!({
                "f:metadata": {"f:finalizers": {"v:\"a/b\"": {}}},
                "f:spec": {"f:tolerations": {}, "f:nodeSelector": {}}
            }),
        ),
        (
            &kinds::CONFIGMAPS,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
                   "resourceVersion": "4"}, "data": {"k": "v"}}),
            json!({"f:data": {"f:k": {}}}),
        ),
    ] {
        assert_eq!(set_of(kind, &config), want, "{config}");
    }
}

#[test]
fn fields_v1_reads_back_what_it_writes_and_paths_print_as_the_api_server_prints_them() {
    let v = json!({"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}},
                   "f:metadata": {"f:finalizers": {"v:\"x\"": {}}, "f:labels": {".": {}, "f:a": {}}}});
    let set = FieldSet::from_fields_v1(&v).unwrap();
    assert_eq!(set.to_fields_v1(), v);
    let printed: Vec<String> = set.paths().iter().map(|p| fieldset::display(p)).collect();
    assert_eq!(
        printed,
        [
            ".metadata.finalizers[=\"x\"]",
            ".metadata.labels",
            ".metadata.labels.a",
            ".spec.containers[name=\"web\"]",
            ".spec.containers[name=\"web\"].image",
        ]
    );
    assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
    assert!(FieldSet::from_fields_v1(&json!({"f:y": 1})).is_err());
}

/// One write of a scenario.
enum Step {
    Apply(&'static str, Value, bool),
    Update(&'static str, Value),
}

/// What a step should give: the error message, or checks on the object written.
enum Want {
    Fails(&'static str),
    Ok(fn(&Value)),
}

fn managers(v: &Value) -> Vec<(String, String)> {
    v["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_string(),
                        e["operation"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn owns(v: &Value, manager: &str, path: &[&str]) -> bool {
    v["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["manager"] == manager)
        .any(|e| {
            FieldSet::from_fields_v1(&e["fieldsV1"])
                .unwrap()
                .contains(path)
        })
}

const REPLICAS: &[&str] = &["f:spec", "f:replicas"];

#[test]
fn scenarios_of_appliers_and_updaters_end_as_kubernetes_ends_them() {
    use Step::*;
    use Want::*;
    let scenarios: Vec<(&str, Vec<(Step, Want)>)> = vec![
        (
            "a second applier setting another value conflicts",
            vec![
                (Apply("a", deploy(2, json!({"app": "web"})), false), Ok(|_| {})),
                (
                    Apply("b", deploy(3, json!({"app": "web"})), false),
                    Fails("Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"),
                ),
            ],
        ),
        (
            "equal values are shared, and each keeps the field",
            vec![
                (Apply("a", deploy(2, json!({"app": "web"})), false), Ok(|_| {})),
                (
                    Apply("b", deploy(2, json!({"app": "web"})), false),
                    Ok(|v| {
                        assert!(owns(v, "a", REPLICAS) && owns(v, "b", REPLICAS));
                    }),
                ),
                (
                    Apply("a", json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web"}}), false),
                    Ok(|v| {
                        assert_eq!(v["spec"]["replicas"], 2, "b still owns it");
                        assert!(!owns(v, "a", REPLICAS));
                    }),
                ),
            ],
        ),
        (
            "force takes the field over",
            vec![
                (Apply("a", deploy(2, json!({})), false), Ok(|_| {})),
                (
                    Apply("b", deploy(3, json!({})), true),
                    Ok(|v| {
                        assert_eq!(v["spec"]["replicas"], 3);
                        assert!(owns(v, "b", REPLICAS) && !owns(v, "a", REPLICAS));
                        assert!(owns(v, "a", &["f:spec", "f:template", "f:metadata", "f:labels", "f:app"]));
                    }),
                ),
            ],
        ),
        (
            "a field the applier drops is removed",
            vec![
                (Apply("a", deploy(2, json!({"app": "web", "tier": "x"})), false), Ok(|_| {})),
                (
                    Apply("a", deploy(2, json!({"app": "web"})), false),
                    Ok(|v| {
                        assert_eq!(v["metadata"]["labels"], json!({"app": "web"}));
                    }),
                ),
            ],
        ),
        (
            "a dropped field another manager also owns stays",
            vec![
                (Apply("a", deploy(2, json!({"app": "web", "tier": "x"})), false), Ok(|_| {})),
                (Apply("b", deploy(2, json!({"tier": "x"})), false), Ok(|_| {})),
                (
                    Apply("a", deploy(2, json!({"app": "web"})), false),
                    Ok(|v| assert_eq!(v["metadata"]["labels"]["tier"], "x")),
                ),
            ],
        ),
        (
            "a dropped container goes, with all its fields",
            vec![
                (Apply("a", json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [
                        {"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}}), false),
                 Ok(|_| {})),
                (
                    Apply("a", json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [
                            {"name": "b", "image": "y"}]}}}}), false),
                    Ok(|v| assert_eq!(v["spec"]["template"]["spec"]["containers"],
                        json!([{"name": "b", "image": "y"}]))),
                ),
            ],
        ),
        (
            "an updater that changes a field takes it, and the applier then conflicts",
            vec![
                (Apply("kubectl", deploy(2, json!({})), false), Ok(|_| {})),
                (
                    Update("kubectl-edit", deploy(5, json!({}))),
                    Ok(|v| {
                        assert!(owns(v, "kubectl-edit", REPLICAS) && !owns(v, "kubectl", REPLICAS));
                        assert_eq!(managers(v), [
                            ("kubectl".to_string(), "Apply".to_string()),
                            ("kubectl-edit".to_string(), "Update".to_string()),
                        ]);
                    }),
                ),
                (
                    Apply("kubectl", deploy(2, json!({})), false),
                    Fails("Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1 at 2026-12-06T18:00:00Z: .spec.replicas"),
                ),
                (
                    Apply("kubectl", deploy(5, json!({})), false),
                    Ok(|v| assert!(owns(v, "kubectl", REPLICAS) && owns(v, "kubectl-edit", REPLICAS))),
                ),
            ],
        ),
        (
            "conflicts with several managers are listed by manager",
            vec![
                (Apply("a", deploy(2, json!({"x": "1"})), false), Ok(|_| {})),
                (Apply("b", json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "labels": {"y": "1"}}}), false), Ok(|_| {})),
                (
                    Apply("c", deploy(3, json!({"x": "2", "y": "2"})), false),
                    Fails("Apply failed with 3 conflicts: conflicts with \"a\":\n- .metadata.labels.x\n- .spec.replicas\nconflicts with \"b\":\n- .metadata.labels.y"),
                ),
            ],
        ),
        (
            "kubectl moves from client-side apply without conflicts on what it last applied",
            vec![
                (Update("kubectl-client-side-apply", client_side(2)), Ok(|_| {})),
                (
                    Apply("other", deploy(3, json!({})), false),
                    Fails("Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1 at 2026-12-06T18:00:00Z: .spec.replicas"),
                ),
                (
                    Apply("kubectl", deploy(3, json!({})), false),
                    Ok(|v| {
                        assert_eq!(v["spec"]["replicas"], 3);
                        assert!(owns(v, "kubectl", REPLICAS));
                        assert!(!owns(v, "kubectl-client-side-apply", REPLICAS));
                        let text = v["metadata"]["annotations"][csa::LAST_APPLIED].as_str().unwrap();
                        let last: Value = serde_json::from_str(text).unwrap();
                        assert_eq!(last["spec"]["replicas"], 3, "the annotation follows");
                    }),
                ),
            ],
        ),
        (
            "a field edited since the last client-side apply still conflicts for kubectl",
            vec![
                (Update("kubectl-client-side-apply", client_side(2)), Ok(|_| {})),
                (Update("kubectl-edit", { let mut d = client_side(2); d["spec"]["replicas"] = json!(5); d }), Ok(|_| {})),
                (
                    Apply("kubectl", deploy(3, json!({})), false),
                    Fails("Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1 at 2026-12-06T18:00:00Z: .spec.replicas"),
                ),
            ],
        ),
        (
            "an update that removes a field takes it from its owner",
            vec![
                (Apply("a", deploy(2, json!({"tier": "x"})), false), Ok(|_| {})),
                (
                    Update("ctl", deploy(2, json!({}))),
                    Ok(|v| {
                        assert!(!owns(v, "a", &["f:metadata", "f:labels", "f:tier"]));
                        assert_eq!(managers(v).len(), 1, "ctl changed nothing it would own");
                    }),
                ),
            ],
        ),
    ];
    for (name, steps) in scenarios {
        let mut live: Option<Value> = None;
        for (i, (step, want)) in steps.into_iter().enumerate() {
            let got = match step {
                Apply(m, config, force) => apply(&w(m), live.as_ref(), &config, force),
                Update(m, mut new) => {
                    // A client writes what it read: the managedFields it saw included.
                    if let Some(mf) = live
                        .as_ref()
                        .and_then(|l| l.pointer("/metadata/managedFields"))
                    {
                        new["metadata"]["managedFields"] = mf.clone();
                    }
                    Result::Ok(update(&w(m), live.as_ref(), new))
                }
            };
            match (want, got) {
                (Fails(msg), Err(e)) => assert_eq!(e.to_string(), msg, "{name}: step {i}"),
                (Ok(check), Result::Ok(v)) => {
                    check(&v);
                    live = Some(v);
                }
                (Fails(msg), Result::Ok(v)) => panic!("{name}: step {i}: wanted {msg:?}, got {v}"),
                (Ok(_), Err(e)) => panic!("{name}: step {i}: {e}"),
            }
        }
    }
}

#[test]
fn a_conflict_is_a_409_status_with_one_cause_per_field() {
    let e = ApplyError::Conflicts(vec![Conflict {
        manager: "\"a\"".into(),
        path: ".spec.replicas".into(),
    }]);
    let s = e.status();
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(s.details.causes[0].kind, CauseType::FieldManagerConflict);
    assert_eq!(s.details.causes[0].message, "conflict with \"a\"");
    assert_eq!(s.details.causes[0].field, ".spec.replicas");
}

#[test]
fn an_applied_configuration_may_not_carry_managed_fields_nor_nest_too_deep() {
    let config = json!({"metadata": {"name": "web", "managedFields": []}});
    assert_eq!(
        apply(&w("a"), None, &config, false),
        Err(ApplyError::ManagedFieldsSet)
    );
    let mut deep = json!(1);
    for _ in 0..=crate::patch::MAX_DEPTH {
        deep = json!({ "x": deep });
    }
    assert_eq!(apply(&w("a"), None, &deep, false), Err(ApplyError::TooDeep));
}

#[test]
fn long_keyed_lists_merge_and_compare_in_linear_time() {
    let containers = |n: usize, image: &str| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"name": format!("c{i}"), "image": image}))
            .collect()
    };
    let with = |cs: Vec<Value>| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": cs}}}})
    };
    let live = apply(&w("a"), None, &with(containers(20_000, "x")), false).unwrap();
    let started = std::time::Instant::now();
    let err = apply(&w("b"), Some(&live), &with(containers(20_000, "y")), false).unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(err
        .to_string()
        .starts_with("Apply failed with 20000 conflicts"));
}

#[test]
fn an_update_keeps_the_live_managers_when_the_client_sends_none_and_resets_on_one_empty_entry() {
    let live = apply(&w("a"), None, &deploy(2, json!({})), false).unwrap();
    let kept = update(&w("b"), Some(&live), deploy(2, json!({})));
    assert_eq!(managers(&kept), [("a".to_string(), "Apply".to_string())]);
    let mut reset = deploy(2, json!({}));
    reset["metadata"]["managedFields"] = json!([{}]);
    let reset = update(&w("b"), Some(&live), reset);
    assert!(reset["metadata"].get("managedFields").is_none());
}

#[test]
fn updaters_past_the_cap_merge_into_ancient_changes() {
    let mut live = deploy(1, json!({}));
    let mut labels = serde_json::Map::new();
    for i in 0..12 {
        let name: &'static str = Box::leak(format!("m{i:02}").into_boxed_str());
        let now: &'static str = Box::leak(format!("2026-12-06T18:00:{i:02}Z").into_boxed_str());
        let writer = Writer {
            kind: &kinds::DEPLOYMENTS,
            manager: name,
            now,
        };
        labels.insert(name.into(), json!("x"));
        let mut next = deploy(1, Value::Object(labels.clone()));
        next["metadata"]["managedFields"] = live["metadata"]["managedFields"].clone();
        live = update(&writer, Some(&live), next);
    }
    let ms = managers(&live);
    assert_eq!(ms.len(), managed::MAX_UPDATE_MANAGERS);
    assert!(ms.iter().any(|(m, _)| m == managed::ANCIENT));
    assert!(owns(
        &live,
        managed::ANCIENT,
        &["f:metadata", "f:labels", "f:m00"]
    ));
}
