//! RBAC objects (Role, ClusterRole, RoleBinding, ClusterRoleBinding) as Kubernetes validates
//! them: names as path segments, rules that say what they apply to, role references and
//! subjects of the kinds RBAC knows; `roleRef` never changes on update.

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};
use serde_json::Value;

use super::Errors;

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Kubernetes' `path.IsValidPathSegmentName` (RBAC names may hold `:`): the reason a name is
/// not one, if it is not.
pub(super) fn path_segment_problem(name: &str) -> Option<String> {
    match name {
        "." | ".." => Some(format!("may not be '{name}'")),
        _ => ["/", "%"]
            .into_iter()
            .find(|c| name.contains(c))
            .map(|c| format!("may not contain '{c}'")),
    }
}

fn rules(rules: &Value, namespaced: bool, errs: &mut Errors) {
    let rules: Vec<PolicyRule> = serde_json::from_value(rules.clone()).unwrap_or_default();
    for (i, r) in rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        if r.verbs.is_empty() {
            errs.required(format!("{path}.verbs"));
        }
        let urls = r.non_resource_urls.as_deref().unwrap_or_default();
        let groups = r.api_groups.as_deref().unwrap_or_default();
        let resources = r.resources.as_deref().unwrap_or_default();
        if !urls.is_empty() {
            let shown = format!("{urls:?}");
            if namespaced {
                errs.invalid(
                    format!("{path}.nonResourceURLs"),
                    &shown,
                    "namespaced rules cannot apply to non-resource URLs",
                );
            } else if !groups.is_empty() || !resources.is_empty() {
                errs.invalid(
                    format!("{path}.nonResourceURLs"),
                    &shown,
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if groups.is_empty() {
            required_because(
                errs,
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if resources.is_empty() {
            required_because(
                errs,
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

fn required_because(errs: &mut Errors, path: String, why: &str) {
    errs.0.push(super::FieldError {
        path,
        detail: format!("Required value: {why}"),
    });
}

fn role_ref(r: &RoleRef, cluster_binding: bool, errs: &mut Errors) {
    if r.api_group != RBAC_GROUP {
        errs.unsupported("roleRef.apiGroup", &r.api_group, &[RBAC_GROUP]);
    }
    let kinds: &[&str] = if cluster_binding {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !kinds.contains(&r.kind.as_str()) {
        errs.unsupported("roleRef.kind", &r.kind, kinds);
    }
    if r.name.is_empty() {
        errs.required("roleRef.name");
    } else if let Some(why) = path_segment_problem(&r.name) {
        errs.invalid("roleRef.name", format!("{:?}", r.name), &why);
    }
}

fn subjects(subjects: &[Subject], cluster_binding: bool, errs: &mut Errors) {
    for (i, s) in subjects.iter().enumerate() {
        let path = format!("subjects[{i}]");
        if s.name.is_empty() {
            errs.required(format!("{path}.name"));
        }
        let group = s.api_group.as_deref().unwrap_or("");
        match s.kind.as_str() {
            "ServiceAccount" => {
                if !group.is_empty() {
                    errs.unsupported(format!("{path}.apiGroup"), group, &[""]);
                }
                if cluster_binding && s.namespace.as_deref().unwrap_or("").is_empty() {
                    errs.required(format!("{path}.namespace"));
                }
            }
            "User" | "Group" => {
                if group != RBAC_GROUP {
                    errs.unsupported(format!("{path}.apiGroup"), group, &[RBAC_GROUP]);
                }
            }
            other => errs.unsupported(
                format!("{path}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            ),
        }
    }
}

/// Validates an RBAC object of resource `plural` (already schema-checked).
pub(super) fn validate(plural: &str, object: &Value, errs: &mut Errors) {
    match plural {
        "roles" | "clusterroles" => {
            if let Some(r) = object.get("rules") {
                rules(r, plural == "roles", errs);
            }
        }
        "rolebindings" | "clusterrolebindings" => {
            let cluster = plural == "clusterrolebindings";
            match object.get("roleRef") {
                Some(r) => match serde_json::from_value::<RoleRef>(r.clone()) {
                    Ok(r) => role_ref(&r, cluster, errs),
                    Err(_) => errs.required("roleRef"),
                },
                None => errs.required("roleRef"),
            }
            let subs: Vec<Subject> = object
                .get("subjects")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .unwrap_or_default();
            subjects(&subs, cluster, errs);
        }
        _ => {}
    }
}

/// A binding's `roleRef` cannot change (Kubernetes: delete and re-create the binding).
pub(super) fn validate_update(old: &Value, new: &Value, errs: &mut Errors) {
    if old.get("roleRef") != new.get("roleRef") {
        let shown =
            serde_json::to_string(new.get("roleRef").unwrap_or(&Value::Null)).unwrap_or_default();
        errs.invalid("roleRef", shown, "cannot change roleRef");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn msgs(plural: &str, v: Value) -> Vec<String> {
        let mut errs = Errors::default();
        validate(plural, &v, &mut errs);
        errs.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn rbac_objects_are_checked_in_kubernetes_words() {
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            (
                "roles",
                json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
                vec![],
            ),
            (
                "roles",
                json!({"rules": [{"resources": ["pods"], "verbs": []}]}),
                vec![
                    "rules[0].verbs: Required value",
                    "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                ],
            ),
            (
                "roles",
                json!({"rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
                vec![r#"rules[0].nonResourceURLs: Invalid value: ["/healthz"]: namespaced rules cannot apply to non-resource URLs"#],
            ),
            (
                "clusterroles",
                json!({"rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
                vec![],
            ),
            (
                "clusterrolebindings",
                json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"},
                       "subjects": [{"kind": "Robot", "name": "x"}]}),
                vec![
                    r#"roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#,
                    r#"subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group""#,
                ],
            ),
            (
                "rolebindings",
                json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "a/b"},
                       "subjects": [{"kind": "User", "apiGroup": RBAC_GROUP, "name": ""}]}),
                vec![
                    r#"roleRef.name: Invalid value: "a/b": may not contain '/'"#,
                    "subjects[0].name: Required value",
                ],
            ),
            (
                "rolebindings",
                json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"},
                       "subjects": [{"kind": "Group", "name": "devs"}]}),
                vec![r#"subjects[0].apiGroup: Unsupported value: "": supported values: "rbac.authorization.k8s.io""#],
            ),
        ];
        for (plural, v, want) in cases {
            assert_eq!(msgs(plural, v.clone()), want, "{plural} {v}");
        }
    }

    #[test]
    fn a_bindings_role_ref_cannot_change() {
        let b = |name: &str| json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name}});
        let mut errs = Errors::default();
        validate_update(&b("view"), &b("view"), &mut errs);
        assert!(errs.0.is_empty());
        validate_update(&b("view"), &b("admin"), &mut errs);
        assert_eq!(
            errs.0[0].to_string(),
            r#"roleRef: Invalid value: {"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"admin"}: cannot change roleRef"#
        );
    }
}
