//! Checks that only an update can fail: fields Kubernetes makes immutable once an object
//! exists, with its wording (`spec.selector: Invalid value: ...: field is immutable`).

use serde_json::Value;

use super::{Errors, FieldError};

fn forbidden(errs: &mut Errors, path: &str, detail: &str) {
    errs.0.push(FieldError {
        path: path.into(),
        detail: format!("Forbidden: {detail}"),
    });
}

fn immutable(errs: &mut Errors, path: &str, value: &Value) {
    errs.invalid(path, compact(value), "field is immutable");
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `spec` of `v` with the listed top-level fields removed, for "nothing else changed" checks.
fn spec_without(v: &Value, fields: &[&str]) -> Value {
    let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(m) = spec.as_object_mut() {
        for f in fields {
            m.remove(*f);
        }
    }
    spec
}

/// Pod spec with what a pod update may change blanked out: container images, the active
/// deadline and (additions to) tolerations.
fn pod_fixed_part(pod: &Value) -> Value {
    let mut spec = spec_without(
        pod,
        &[
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "nodeName",
        ],
    );
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                if let Some(m) = c.as_object_mut() {
                    m.remove("image");
                }
            }
        }
    }
    spec
}

/// Errors for changing what may not change between `old` and `new` (both defaulted).
pub fn validate_update(plural: &str, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    match plural {
        "deployments" | "replicasets" | "daemonsets" | "statefulsets" => {
            let (a, b) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
            if a != b {
                immutable(&mut errs, "spec.selector", b.unwrap_or(&Value::Null));
            }
            if plural == "statefulsets" {
                let allowed = [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                    "selector",
                    "revisionHistoryLimit",
                ];
                if spec_without(old, &allowed) != spec_without(new, &allowed) {
                    forbidden(&mut errs, "spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden");
                }
            }
        }
        "pods" => {
            if pod_fixed_part(old) != pod_fixed_part(new) {
                forbidden(&mut errs, "spec", "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)");
            }
            let tolerations = |v: &Value| {
                v.pointer("/spec/tolerations")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let (before, after) = (tolerations(old), tolerations(new));
            if before.iter().any(|t| !after.contains(t)) {
                forbidden(
                    &mut errs,
                    "spec.tolerations",
                    "existing toleration can not be modified except its tolerationSeconds",
                );
            }
        }
        "configmaps" | "secrets" => {
            if old.get("immutable") == Some(&Value::Bool(true)) {
                for field in ["data", "binaryData"] {
                    if old.get(field) != new.get(field) {
                        forbidden(
                            &mut errs,
                            field,
                            "field is immutable when `immutable` is set",
                        );
                    }
                }
                if new.get("immutable") != Some(&Value::Bool(true)) {
                    forbidden(
                        &mut errs,
                        "immutable",
                        "field is immutable when `immutable` is set",
                    );
                }
            }
            if plural == "secrets" && old.get("type") != new.get("type") {
                immutable(&mut errs, "type", new.get("type").unwrap_or(&Value::Null));
            }
        }
        "persistentvolumeclaims" => {
            let allowed = ["resources", "volumeName"];
            if spec_without(old, &allowed) != spec_without(new, &allowed) {
                forbidden(&mut errs, "spec", "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims");
            }
        }
        "rolebindings" | "clusterrolebindings" => super::rbac::validate_update(old, new, &mut errs),
        "nodes" => {
            // Kubernetes' rule: a pod CIDR is set once (by node IPAM or the agent's --pod-cidr)
            // and never changed or wiped, as pods and routes depend on it.
            for (field, path) in [("podCIDR", "spec.podCIDR"), ("podCIDRs", "spec.podCIDRs")] {
                let before = old.pointer(&format!("/spec/{field}"));
                let set = before.is_some_and(|v| {
                    !v.is_null() && v != "" && v.as_array().is_none_or(|a| !a.is_empty())
                });
                if set && before != new.pointer(&format!("/spec/{field}")) {
                    forbidden(
                        &mut errs,
                        path,
                        "node updates may not change podCIDR except from \"\" to valid",
                    );
                }
            }
        }
        _ => {}
    }
    errs.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(plural: &str, old: Value, new: Value) -> Vec<String> {
        validate_update(plural, &old, &new)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_deployment_selector_cannot_change_but_its_template_can() {
        let d = |app: &str, image: &str| {
            json!({"spec": {"selector": {"matchLabels": {"app": app}},
                "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
        };
        assert!(msgs("deployments", d("web", "a:1"), d("web", "a:2")).is_empty());
        assert_eq!(
            msgs("deployments", d("web", "a:1"), d("api", "a:1")),
            [r#"spec.selector: Invalid value: {"matchLabels":{"app":"api"}}: field is immutable"#]
        );
    }

    #[test]
    fn pods_change_only_images_and_tolerations_additions() {
        let p = |image: &str, port: i64, tol: Value| {
            json!({"spec": {"containers": [{"name": "c", "image": image, "ports": [{"containerPort": port}]}],
                "tolerations": tol}})
        };
        let t1 = json!([{"key": "a", "operator": "Exists"}]);
        let t2 = json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]);
        assert!(msgs("pods", p("a:1", 80, t1.clone()), p("a:2", 80, t2.clone())).is_empty());
        let changed = msgs("pods", p("a:1", 80, t1.clone()), p("a:1", 81, t1.clone()));
        assert_eq!(changed.len(), 1);
        assert!(
            changed[0].starts_with("spec: Forbidden: pod updates may not change fields other than")
        );
        assert_eq!(
            msgs("pods", p("a:1", 80, t2), p("a:1", 80, t1)),
            ["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]
        );
    }

    #[test]
    fn a_node_pod_cidr_is_set_once_and_never_changed_or_wiped() {
        let n = |cidr: Value| json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        let none = json!({"spec": {}});
        let a = json!("10.42.0.0/24");
        assert!(msgs("nodes", none.clone(), n(a.clone())).is_empty());
        assert!(msgs("nodes", n(a.clone()), n(a.clone())).is_empty());
        let changed = msgs("nodes", n(a.clone()), n(json!("10.42.1.0/24")));
        assert_eq!(
            changed,
            [
                r#"spec.podCIDR: Forbidden: node updates may not change podCIDR except from "" to valid"#,
                r#"spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid"#,
            ]
        );
        assert_eq!(msgs("nodes", n(a), none).len(), 2);
    }

    #[test]
    fn immutable_configmaps_and_secret_types_stay() {
        let cm = |v: &str| json!({"immutable": true, "data": {"k": v}});
        assert_eq!(
            msgs("configmaps", cm("1"), cm("2")),
            ["data: Forbidden: field is immutable when `immutable` is set"]
        );
        assert!(msgs(
            "configmaps",
            json!({"data": {"k": "1"}}),
            json!({"data": {"k": "2"}})
        )
        .is_empty());
        assert_eq!(
            msgs(
                "secrets",
                json!({"type": "Opaque"}),
                json!({"type": "kubernetes.io/tls"})
            ),
            [r#"type: Invalid value: "kubernetes.io/tls": field is immutable"#]
        );
    }

    #[test]
    fn statefulsets_change_only_the_allowed_fields() {
        let s = |replicas: i64, service: &str| json!({"spec": {"replicas": replicas, "serviceName": service, "selector": {"matchLabels": {"app": "db"}}}});
        assert!(msgs("statefulsets", s(1, "db"), s(3, "db")).is_empty());
        assert_eq!(msgs("statefulsets", s(1, "db"), s(1, "other")).len(), 1);
    }
}
