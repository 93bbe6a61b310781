//! The default roles and bindings, created at start when missing (kube-apiserver's RBAC
//! bootstrap): cluster-admin, admin, edit, view (Kubernetes' rule sets, flattened), the
//! basic user's access reviews, and the roles of the scheduler and the controller manager.

use corral_api::{kinds, token};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use tracing::info;

use super::rbac::rule;
use crate::auth::{AUTHENTICATED, MASTERS};
use crate::registry::{ApiError, Registry};

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const RBAC: &str = "rbac.authorization.k8s.io";
/// The scheduler's identity (its client certificate's CN).
pub const SCHEDULER_USER: &str = "system:kube-scheduler";
/// The in-process controllers' identity.
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";

fn view_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
                "namespaces",
            ],
        ),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
        ),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(
            READ,
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
        rule(
            READ,
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
        ),
        // Kubernetes aggregates system:aggregated-metrics-reader into view, edit and admin.
        rule(READ, &["metrics.k8s.io"], &["pods", "nodes"]),
    ]
}

fn edit_rules() -> Vec<PolicyRule> {
    let mut rules = view_rules();
    rules.extend([
        rule(
            READ,
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
        ),
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(
            WRITE,
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
        ),
        rule(
            WRITE,
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
        ),
        rule(
            WRITE,
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
        ),
        rule(WRITE, &["batch"], &["cronjobs", "jobs"]),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
    ]);
    rules
}

fn admin_rules() -> Vec<PolicyRule> {
    let mut rules = edit_rules();
    rules.extend([
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
        rule(
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
            &[RBAC],
            &["roles", "rolebindings"],
        ),
    ]);
    rules
}

fn scheduler_rules() -> Vec<PolicyRule> {
    let mut lease_by_name = rule(&["get", "update"], &["coordination.k8s.io"], &["leases"]);
    lease_by_name.resource_names = Some(vec!["corral-scheduler".into(), "kube-scheduler".into()]);
    // The servers' addresses, to fail over to (`runtime::servers`).
    let mut api_servers = rule(READ, &[""], &["endpoints"]);
    api_servers.resource_names = Some(vec![corral_api::runtime::servers::NAME.into()]);
    vec![
        api_servers,
        rule(
            &["create", "patch", "update"],
            &["", "events.k8s.io"],
            &["events"],
        ),
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        lease_by_name,
        rule(
            READ,
            &[""],
            &["nodes", "namespaces", "services", "replicationcontrollers"],
        ),
        rule(&["delete", "get", "list", "watch"], &[""], &["pods"]),
        rule(&["create"], &[""], &["bindings", "pods/binding"]),
        rule(&["patch", "update"], &[""], &["pods/status"]),
        rule(READ, &["apps"], &["replicasets", "statefulsets"]),
        rule(READ, &["policy"], &["poddisruptionbudgets"]),
        rule(
            READ,
            &[""],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(
            READ,
            &["storage.k8s.io"],
            &[
                "csinodes",
                "csidrivers",
                "csistoragecapacities",
                "storageclasses",
            ],
        ),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
    ]
}

/// What the in-process controllers do: the garbage collector and the namespace controller
/// read, change and delete every kind (as Kubernetes' roles for them); the workload,
/// endpoints, volume and node controllers create what they own and write status.
fn controller_manager_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &[
                "get",
                "list",
                "watch",
                "patch",
                "update",
                "delete",
                "deletecollection",
            ],
            &["*"],
            &["*"],
        ),
        rule(&["update", "patch"], &["*"], &["*/status", "*/scale"]),
        rule(&["update"], &[""], &["namespaces/finalize"]),
        rule(
            &["create"],
            &[""],
            &[
                "pods",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumes",
                "events",
            ],
        ),
        rule(&["create"], &["events.k8s.io"], &["events"]),
        rule(
            &["create"],
            &["apps"],
            &["replicasets", "controllerrevisions", "deployments"],
        ),
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
    ]
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name),
        rules: Some(rules),
        ..Default::default()
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(
            [(
                "kubernetes.io/bootstrapping".to_string(),
                "rbac-defaults".to_string(),
            )]
            .into(),
        ),
        annotations: Some(
            [(
                "rbac.authorization.kubernetes.io/autoupdate".to_string(),
                "true".to_string(),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

fn binding(name: &str, role: &str, kind: &str, subject: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name),
        role_ref: RoleRef {
            api_group: RBAC.into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some(RBAC.into()),
            kind: kind.into(),
            name: subject.into(),
            namespace: None,
        }]),
    }
}

/// A rule over non-resource URLs (`/metrics`; a trailing `*` is a prefix).
fn paths(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        non_resource_urls: Some(urls.iter().map(|u| u.to_string()).collect()),
        ..Default::default()
    }
}

/// The group kube-apiserver lets read its health and metrics endpoints.
pub const MONITORING: &str = "system:monitoring";

/// The default cluster roles.
pub fn cluster_roles() -> Vec<ClusterRole> {
    vec![
        cluster_role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), paths(&["*"], &["*"])],
        ),
        cluster_role(
            MONITORING,
            vec![paths(
                &["get"],
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/readyz",
                    "/readyz/*",
                    "/metrics",
                ],
            )],
        ),
        cluster_role("admin", admin_rules()),
        cluster_role("edit", edit_rules()),
        cluster_role("view", view_rules()),
        cluster_role(
            "system:basic-user",
            vec![rule(
                &["create"],
                &["authorization.k8s.io"],
                &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            )],
        ),
        // What the dashboard page reads (`rest/dashboard/app.js`), and nothing else.
        cluster_role(
            token::DASHBOARD_ROLE,
            vec![
                rule(READ, &[""], &["nodes", "pods"]),
                rule(READ, &["apps"], &["replicasets"]),
            ],
        ),
        cluster_role(SCHEDULER_USER, scheduler_rules()),
        cluster_role(CONTROLLER_MANAGER_USER, controller_manager_rules()),
    ]
}

/// The default cluster role bindings.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![
        binding("cluster-admin", "cluster-admin", "Group", MASTERS),
        binding(
            "system:basic-user",
            "system:basic-user",
            "Group",
            AUTHENTICATED,
        ),
        binding(MONITORING, MONITORING, "Group", MONITORING),
        binding(
            token::DASHBOARD_ROLE,
            token::DASHBOARD_ROLE,
            "Group",
            token::DASHBOARD_GROUP,
        ),
        binding(SCHEDULER_USER, SCHEDULER_USER, "User", SCHEDULER_USER),
        binding(
            CONTROLLER_MANAGER_USER,
            CONTROLLER_MANAGER_USER,
            "User",
            CONTROLLER_MANAGER_USER,
        ),
    ]
}

/// Creates each default role and binding that is missing; an existing one is left as the
/// administrator made it.
pub async fn reconcile(registry: &Registry) -> Result<(), ApiError> {
    let roles = cluster_roles()
        .into_iter()
        .map(|r| (&kinds::CLUSTERROLES, to_value(&r)));
    let bindings = cluster_role_bindings()
        .into_iter()
        .map(|b| (&kinds::CLUSTERROLEBINDINGS, to_value(&b)));
    for (info, obj) in roles.chain(bindings) {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        match registry.create(info, "", obj, false).await {
            Ok(_) => info!(resource = info.plural, %name, "created default RBAC object"),
            Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn to_value<T: serde::Serialize + k8s_openapi::Resource>(t: &T) -> Value {
    let mut v = serde_json::to_value(t).expect("RBAC objects serialize");
    v["apiVersion"] = T::API_VERSION.into();
    v["kind"] = T::KIND.into();
    v
}
