//! Table tests for the pure parts: RBAC rule matching and bindings, the Node authorizer's
//! decisions, NodeRestriction, and the denial wording.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use super::node::{decide, lookup, Lookup, Related};
use super::rbac::{rule, rule_allows, Policy};
use super::*;
use crate::auth::{UserInfo, AUTHENTICATED, NODES};
use corral_api::kinds;

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo::new(name, groups.iter().copied())
}

fn attrs(user: &UserInfo, verb: &str, resource: &str, ns: &str, name: &str) -> Attributes {
    let (group, resource) = match resource.split_once(':') {
        Some((g, r)) => (g, r),
        None => ("", resource),
    };
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    Attributes {
        path: String::new(),
        user: user.clone(),
        verb: verb.into(),
        api_group: group.into(),
        resource: resource.into(),
        subresource: sub.into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

#[test]
fn a_rule_covers_verbs_groups_resources_subresources_and_names() {
    let u = user("u", &[]);
    let mut named = rule(&["get"], &[""], &["secrets"]);
    named.resource_names = Some(vec!["s1".into()]);
    let cases = [
        (
            rule(&["get"], &[""], &["pods"]),
            attrs(&u, "get", "pods", "d", "p"),
            true,
        ),
        (
            rule(&["get"], &[""], &["pods"]),
            attrs(&u, "list", "pods", "d", ""),
            false,
        ),
        (
            rule(&["*"], &[""], &["pods"]),
            attrs(&u, "delete", "pods", "d", "p"),
            true,
        ),
        (
            rule(&["get"], &["apps"], &["pods"]),
            attrs(&u, "get", "pods", "d", "p"),
            false,
        ),
        (
            rule(&["get"], &["*"], &["*"]),
            attrs(&u, "get", "apps:deployments", "d", "x"),
            true,
        ),
        (
            rule(&["update"], &[""], &["pods"]),
            attrs(&u, "update", "pods/status", "d", "p"),
            false,
        ),
        (
            rule(&["update"], &[""], &["pods/status"]),
            attrs(&u, "update", "pods/status", "d", "p"),
            true,
        ),
        (
            rule(&["update"], &["*"], &["*/status"]),
            attrs(&u, "update", "apps:deployments/status", "d", "x"),
            true,
        ),
        (
            rule(&["update"], &["*"], &["*"]),
            attrs(&u, "update", "pods/status", "d", "p"),
            true,
        ),
        (named.clone(), attrs(&u, "get", "secrets", "d", "s1"), true),
        (named.clone(), attrs(&u, "get", "secrets", "d", "s2"), false),
        (named, attrs(&u, "list", "secrets", "d", ""), false),
    ];
    for (rule, a, want) in cases {
        assert_eq!(rule_allows(&rule, &a), want, "{rule:?} {a:?}");
    }
}

fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        ..Default::default()
    }
}

fn subject(kind: &str, name: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
        namespace: None,
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

fn policy() -> Policy {
    Policy {
        cluster_roles: bootstrap::cluster_roles(),
        roles: vec![Role {
            metadata: meta("cm-writer", Some("team")),
            rules: Some(vec![rule(&["create", "update"], &[""], &["configmaps"])]),
        }],
        cluster_bindings: bootstrap::cluster_role_bindings()
            .into_iter()
            .chain([ClusterRoleBinding {
                metadata: meta("viewers", None),
                role_ref: role_ref("ClusterRole", "view"),
                subjects: Some(vec![subject("User", "viewer")]),
            }])
            .collect(),
        bindings: vec![
            RoleBinding {
                metadata: meta("devs-edit", Some("team")),
                role_ref: role_ref("ClusterRole", "edit"),
                subjects: Some(vec![subject("Group", "devs")]),
            },
            RoleBinding {
                metadata: meta("cm", Some("team")),
                role_ref: role_ref("Role", "cm-writer"),
                subjects: Some(vec![subject("User", "carol")]),
            },
        ],
    }
}

#[test]
fn bindings_grant_their_roles_to_users_and_groups_where_they_apply() {
    let p = policy();
    let viewer = user("viewer", &[AUTHENTICATED]);
    let dev = user("dave", &["devs", AUTHENTICATED]);
    let carol = user("carol", &[AUTHENTICATED]);
    let nobody = user("nobody", &[AUTHENTICATED]);
    let sched = user("system:kube-scheduler", &[AUTHENTICATED]);
    let kcm = user("system:kube-controller-manager", &[AUTHENTICATED]);
    let cases = [
        (attrs(&viewer, "list", "pods", "default", ""), true),
        (attrs(&viewer, "list", "pods", "", ""), true),
        (attrs(&viewer, "delete", "pods", "default", "p"), false),
        (attrs(&viewer, "get", "secrets", "default", "s"), false),
        (attrs(&viewer, "get", "pods/log", "default", "p"), true),
        (attrs(&dev, "delete", "pods", "team", "p"), true),
        (attrs(&dev, "get", "secrets", "team", "s"), true),
        (attrs(&dev, "delete", "pods", "other", "p"), false),
        (attrs(&dev, "list", "pods", "", ""), false),
        (
            attrs(
                &dev,
                "create",
                "rbac.authorization.k8s.io:rolebindings",
                "team",
                "",
            ),
            false,
        ),
        (attrs(&carol, "create", "configmaps", "team", ""), true),
        (attrs(&carol, "create", "configmaps", "default", ""), false),
        (attrs(&nobody, "get", "pods", "default", "p"), false),
        (
            attrs(
                &nobody,
                "create",
                "authorization.k8s.io:selfsubjectaccessreviews",
                "",
                "",
            ),
            true,
        ),
        (
            attrs(&sched, "create", "pods/binding", "default", "p"),
            true,
        ),
        (attrs(&sched, "update", "pods/status", "default", "p"), true),
        (attrs(&sched, "delete", "nodes", "", "n"), false),
        (
            attrs(
                &sched,
                "update",
                "coordination.k8s.io:leases",
                "kube-system",
                "corral-scheduler",
            ),
            true,
        ),
        (
            attrs(&kcm, "create", "apps:replicasets", "default", ""),
            true,
        ),
        (attrs(&kcm, "update", "namespaces/finalize", "x", "x"), true),
        (attrs(&kcm, "create", "secrets", "default", ""), false),
    ];
    for (a, want) in cases {
        assert_eq!(
            p.allows(&a),
            want,
            "{} {} {}/{} in {:?}",
            a.user.name,
            a.verb,
            a.resource,
            a.subresource,
            a.namespace
        );
    }
}

/// Kubernetes aggregates `system:aggregated-metrics-reader` into view, edit and admin.
#[test]
fn metrics_are_read_with_view_edit_or_admin_as_kubernetes_aggregates_them() {
    let p = policy();
    let viewer = user("viewer", &[AUTHENTICATED]);
    let dev = user("dave", &["devs", AUTHENTICATED]);
    let nobody = user("nobody", &[AUTHENTICATED]);
    let cases = [
        (attrs(&viewer, "list", "metrics.k8s.io:nodes", "", ""), true),
        (
            attrs(&viewer, "get", "metrics.k8s.io:nodes", "", "n1"),
            true,
        ),
        (attrs(&viewer, "list", "metrics.k8s.io:pods", "", ""), true),
        (
            attrs(&viewer, "create", "metrics.k8s.io:pods", "default", ""),
            false,
        ),
        (attrs(&dev, "list", "metrics.k8s.io:pods", "team", ""), true),
        (
            attrs(&dev, "get", "metrics.k8s.io:pods", "team", "web"),
            true,
        ),
        // A namespaced binding reaches its namespace only.
        (
            attrs(&dev, "list", "metrics.k8s.io:pods", "other", ""),
            false,
        ),
        (attrs(&dev, "list", "metrics.k8s.io:pods", "", ""), false),
        (
            attrs(&nobody, "list", "metrics.k8s.io:nodes", "", ""),
            false,
        ),
        (
            attrs(&nobody, "list", "metrics.k8s.io:pods", "default", ""),
            false,
        ),
    ];
    for (a, want) in cases {
        assert_eq!(
            p.allows(&a),
            want,
            "{} {} {}.{} in {:?}",
            a.user.name,
            a.verb,
            a.resource,
            a.api_group,
            a.namespace
        );
    }
}

fn pod(name: &str, node: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["nodeName"] = node.into();
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "i"}]);
    }
    serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}),
    )
    .unwrap()
}

#[test]
fn a_node_reads_only_what_its_pods_use_and_writes_only_its_own() {
    let n1 = user("system:node:n1", &[NODES, AUTHENTICATED]);
    let uses = pod(
        "web",
        "n1",
        json!({
            "volumes": [
                {"name": "a", "secret": {"secretName": "vol-secret"}},
                {"name": "b", "projected": {"sources": [{"configMap": {"name": "proj-cm"}}]}},
                {"name": "c", "persistentVolumeClaim": {"claimName": "data"}}
            ],
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{"name": "c", "image": "i",
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}],
                "envFrom": [{"configMapRef": {"name": "envfrom-cm"}}]}]
        }),
    );
    let other = pod(
        "db",
        "n2",
        json!({"volumes": [{"name": "a", "secret": {"secretName": "db-secret"}}]}),
    );
    let pods = Related {
        pods: vec![uses.clone()],
        claims: vec![],
    };
    let claim: PersistentVolumeClaim = serde_json::from_value(
        json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv-1"}}),
    )
    .unwrap();
    let claims = Related {
        pods: vec![],
        claims: vec![claim],
    };
    let own_pod = Related {
        pods: vec![uses],
        claims: vec![],
    };
    let foreign_pod = Related {
        pods: vec![other],
        claims: vec![],
    };
    let none = Related::default();
    let cases: Vec<(Attributes, &Related, bool)> = vec![
        (
            attrs(&n1, "get", "secrets", "default", "vol-secret"),
            &pods,
            true,
        ),
        (
            attrs(&n1, "get", "secrets", "default", "env-secret"),
            &pods,
            true,
        ),
        (attrs(&n1, "get", "secrets", "default", "pull"), &pods, true),
        (
            attrs(&n1, "watch", "secrets", "default", "vol-secret"),
            &pods,
            true,
        ),
        (
            attrs(&n1, "get", "configmaps", "default", "proj-cm"),
            &pods,
            true,
        ),
        (
            attrs(&n1, "get", "configmaps", "default", "envfrom-cm"),
            &pods,
            true,
        ),
        (
            attrs(&n1, "get", "persistentvolumeclaims", "default", "data"),
            &pods,
            true,
        ),
        (
            attrs(&n1, "get", "persistentvolumes", "", "pv-1"),
            &claims,
            true,
        ),
        (
            attrs(&n1, "get", "persistentvolumes", "", "pv-2"),
            &claims,
            false,
        ),
        (
            attrs(&n1, "get", "secrets", "default", "db-secret"),
            &pods,
            false,
        ),
        (
            attrs(&n1, "get", "secrets", "other", "vol-secret"),
            &pods,
            false,
        ),
        (attrs(&n1, "list", "secrets", "default", ""), &pods, false),
        (
            attrs(&n1, "update", "secrets", "default", "vol-secret"),
            &pods,
            false,
        ),
        (attrs(&n1, "list", "pods", "", ""), &none, true),
        (attrs(&n1, "watch", "nodes", "", ""), &none, true),
        (attrs(&n1, "list", "services", "", ""), &none, true),
        (
            attrs(&n1, "watch", "networking.k8s.io:ingresses", "", ""),
            &none,
            true,
        ),
        (attrs(&n1, "create", "nodes", "", ""), &none, true),
        (attrs(&n1, "update", "nodes/status", "", "n1"), &none, true),
        (attrs(&n1, "update", "nodes", "", "n2"), &none, false),
        (attrs(&n1, "delete", "nodes", "", "n1"), &none, false),
        (
            attrs(&n1, "update", "pods/status", "default", "web"),
            &own_pod,
            true,
        ),
        (
            attrs(&n1, "update", "pods/status", "default", "db"),
            &foreign_pod,
            false,
        ),
        (
            attrs(&n1, "delete", "pods", "default", "web"),
            &own_pod,
            true,
        ),
        (
            attrs(&n1, "delete", "pods", "default", "db"),
            &foreign_pod,
            false,
        ),
        (attrs(&n1, "create", "pods", "default", ""), &none, false),
        (
            attrs(&n1, "create", "pods/binding", "default", "web"),
            &none,
            false,
        ),
        (
            attrs(&n1, "get", "pods/log", "default", "web"),
            &none,
            false,
        ),
        (attrs(&n1, "create", "events", "default", ""), &none, true),
        (
            attrs(
                &n1,
                "update",
                "networking.k8s.io:ingresses/status",
                "default",
                "i",
            ),
            &none,
            true,
        ),
        (
            attrs(&n1, "update", "networking.k8s.io:ingresses", "default", "i"),
            &none,
            false,
        ),
        (
            attrs(&n1, "create", "networking.k8s.io:ingressclasses", "", ""),
            &none,
            true,
        ),
        (
            attrs(
                &n1,
                "delete",
                "networking.k8s.io:ingressclasses",
                "",
                "corral",
            ),
            &none,
            false,
        ),
        (
            attrs(
                &n1,
                "update",
                "coordination.k8s.io:leases",
                "kube-node-lease",
                "n1",
            ),
            &none,
            true,
        ),
        (
            attrs(
                &n1,
                "update",
                "coordination.k8s.io:leases",
                "kube-node-lease",
                "n2",
            ),
            &none,
            false,
        ),
        (
            attrs(
                &n1,
                "update",
                "coordination.k8s.io:leases",
                "kube-system",
                "n1",
            ),
            &none,
            false,
        ),
        // Its proxy's programmed-endpoints report, not another node's; every report readable.
        (
            attrs(
                &n1,
                "update",
                "coordination.k8s.io:leases",
                "kube-node-lease",
                "corral-proxy-n1",
            ),
            &none,
            true,
        ),
        (
            attrs(
                &n1,
                "delete",
                "coordination.k8s.io:leases",
                "kube-node-lease",
                "corral-proxy-n2",
            ),
            &none,
            false,
        ),
        (
            attrs(
                &n1,
                "watch",
                "coordination.k8s.io:leases",
                "kube-node-lease",
                "",
            ),
            &none,
            true,
        ),
        (
            attrs(&n1, "list", "coordination.k8s.io:leases", "kube-system", ""),
            &none,
            false,
        ),
        (
            attrs(&n1, "delete", "namespaces", "", "default"),
            &none,
            false,
        ),
    ];
    for (a, related, want) in cases {
        let (decision, _) = decide("n1", &a, related);
        assert_eq!(
            decision == Decision::Allow,
            want,
            "{} {}/{} {:?} {:?}",
            a.verb,
            a.resource,
            a.subresource,
            a.namespace,
            a.name
        );
    }
}

#[test]
fn the_node_authorizer_reads_only_what_a_decision_needs() {
    let n1 = user("system:node:n1", &[NODES]);
    assert_eq!(
        lookup(&attrs(&n1, "get", "secrets", "ns", "s")),
        Lookup::PodsUsing {
            namespace: "ns".into(),
            resource: "secrets".into(),
            name: "s".into()
        }
    );
    assert_eq!(
        lookup(&attrs(&n1, "get", "persistentvolumes", "", "v")),
        Lookup::Claims
    );
    assert_eq!(
        lookup(&attrs(&n1, "update", "pods/status", "ns", "p")),
        Lookup::Pod {
            namespace: "ns".into(),
            name: "p".into()
        }
    );
    assert_eq!(lookup(&attrs(&n1, "list", "pods", "", "")), Lookup::Nothing);
}

/// Kind, namespace, the written object, the stored one, and the verdict.
type RestrictionCase = (
    &'static kinds::ResourceInfo,
    &'static str,
    serde_json::Value,
    Option<serde_json::Value>,
    Result<(), &'static str>,
);

#[test]
fn node_restriction_keeps_a_node_to_its_own_node_and_lease() {
    let node = |name: &str, labels: serde_json::Value, taints: serde_json::Value| json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}});
    let plain = node("n1", json!({"a": "1"}), json!([]));
    let labelled = node(
        "n1",
        json!({"node-restriction.kubernetes.io/pool": "gpu"}),
        json!([]),
    );
    let tainted = node(
        "n1",
        json!({"a": "1"}),
        json!([{"key": "k", "effect": "NoSchedule"}]),
    );
    let lease = |name: &str| json!({"metadata": {"name": name}});
    let cases: Vec<RestrictionCase> = vec![
        (&kinds::NODES, "", plain.clone(), None, Ok(())),
        (&kinds::NODES, "", tainted.clone(), None, Ok(())),
        (
            &kinds::NODES,
            "",
            node("n2", json!({}), json!([])),
            None,
            Err(r#"node "n1" is not allowed to modify node "n2""#),
        ),
        (
            &kinds::NODES,
            "",
            labelled.clone(),
            None,
            Err(
                r#"node "n1" is not allowed to set the following labels: node-restriction.kubernetes.io/pool"#,
            ),
        ),
        (
            &kinds::NODES,
            "",
            plain.clone(),
            Some(labelled.clone()),
            Err(
                r#"node "n1" is not allowed to modify the following labels: node-restriction.kubernetes.io/pool"#,
            ),
        ),
        (&kinds::NODES, "", labelled.clone(), Some(labelled), Ok(())),
        (
            &kinds::NODES,
            "",
            plain.clone(),
            Some(tainted),
            Err(r#"node "n1" is not allowed to modify taints"#),
        ),
        (&kinds::LEASES, "kube-node-lease", lease("n1"), None, Ok(())),
        (
            &kinds::LEASES,
            "kube-node-lease",
            lease("corral-proxy-n1"),
            None,
            Ok(()),
        ),
        (
            &kinds::LEASES,
            "kube-node-lease",
            lease("corral-proxy-n2"),
            None,
            Err("can only access node lease with the same name as the requesting node"),
        ),
        (
            &kinds::LEASES,
            "kube-node-lease",
            lease("n2"),
            None,
            Err("can only access node lease with the same name as the requesting node"),
        ),
        (
            &kinds::LEASES,
            "default",
            lease("n1"),
            None,
            Err("can only access node lease with the same name as the requesting node"),
        ),
        (&kinds::EVENTS, "default", lease("x"), None, Ok(())),
        (&kinds::INGRESSCLASSES, "", lease("corral"), None, Ok(())),
        (
            &kinds::INGRESSCLASSES,
            "",
            lease("nginx"),
            None,
            Err(r#"node "n1" may only create the IngressClass "corral", not "nginx""#),
        ),
    ];
    for (info, ns, new, old, want) in cases {
        let got = restriction::admit("n1", info, ns, &new, old.as_ref()).map_err(|e| e.to_string());
        assert_eq!(
            got.as_ref().map_err(String::as_str),
            want.as_ref().map_err(|e| *e),
            "{new}"
        );
    }
}

#[test]
fn denials_are_worded_as_kubernetes_words_them() {
    let u = user("x", &[]);
    let cases = [
        (
            attrs(&u, "list", "secrets", "default", ""),
            "",
            r#"secrets is forbidden: User "x" cannot list resource "secrets" in API group "" in the namespace "default""#,
        ),
        (
            attrs(&u, "get", "nodes", "", "n1"),
            "",
            r#"nodes "n1" is forbidden: User "x" cannot get resource "nodes" in API group "" at the cluster scope"#,
        ),
        (
            attrs(&u, "update", "pods/status", "default", "p"),
            "no relationship found between node 'n1' and this object",
            r#"pods "p" is forbidden: User "x" cannot update resource "pods/status" in API group "" in the namespace "default": no relationship found between node 'n1' and this object"#,
        ),
        (
            attrs(&u, "delete", "apps:deployments", "default", "web"),
            "",
            r#"deployments.apps "web" is forbidden: User "x" cannot delete resource "deployments" in API group "apps" in the namespace "default""#,
        ),
    ];
    for (a, reason, want) in cases {
        assert_eq!(forbidden_message(&a, reason), want);
    }
}

#[test]
fn non_resource_urls_cover_paths_only_and_resource_rules_never_do() {
    let u = user("u", &[]);
    let path = |verb: &str, p: &str| Attributes {
        path: p.into(),
        ..attrs(&u, verb, "", "", "")
    };
    let urls = |verbs: &[&str], list: &[&str]| k8s_openapi::api::rbac::v1::PolicyRule {
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        non_resource_urls: Some(list.iter().map(|v| v.to_string()).collect()),
        ..Default::default()
    };
    let cases = [
        (urls(&["get"], &["/metrics"]), path("get", "/metrics"), true),
        (
            urls(&["get"], &["/metrics"]),
            path("post", "/metrics"),
            false,
        ),
        (
            urls(&["get"], &["/healthz/*"]),
            path("get", "/healthz/etcd"),
            true,
        ),
        (
            urls(&["get"], &["/healthz/*"]),
            path("get", "/metrics"),
            false,
        ),
        (urls(&["*"], &["*"]), path("get", "/anything"), true),
        // A resource rule, even `*`, never covers a path, and a path rule never a resource.
        (rule(&["*"], &["*"], &["*"]), path("get", "/metrics"), false),
        (
            urls(&["*"], &["*"]),
            attrs(&u, "get", "pods", "d", "p"),
            false,
        ),
    ];
    for (rule, a, want) in cases {
        assert_eq!(rule_allows(&rule, &a), want, "{rule:?} {a:?}");
    }
    let denied = path("get", "/metrics");
    assert_eq!(
        forbidden_message(&denied, ""),
        r#"forbidden: User "u" cannot get path "/metrics""#
    );
}

#[test]
fn a_dashboard_token_reads_nodes_pods_and_replicasets_and_nothing_more() {
    let p = policy();
    let dash = user(
        "corral:dashboard:abcdef",
        &[corral_api::token::DASHBOARD_GROUP, AUTHENTICATED],
    );
    let cases = [
        (attrs(&dash, "list", "pods", "", ""), true),
        (attrs(&dash, "watch", "pods", "", ""), true),
        (attrs(&dash, "watch", "nodes", "", ""), true),
        (attrs(&dash, "list", "apps:replicasets", "", ""), true),
        (attrs(&dash, "get", "pods/log", "default", "p"), false),
        (attrs(&dash, "create", "pods/exec", "default", "p"), false),
        (attrs(&dash, "delete", "pods", "default", "p"), false),
        (attrs(&dash, "patch", "nodes", "", "n"), false),
        (attrs(&dash, "list", "secrets", "", ""), false),
        (attrs(&dash, "list", "configmaps", "", ""), false),
        (attrs(&dash, "list", "apps:deployments", "", ""), false),
    ];
    for (a, want) in cases {
        assert_eq!(
            p.allows(&a),
            want,
            "{} {}/{}",
            a.verb,
            a.resource,
            a.subresource
        );
    }
}
