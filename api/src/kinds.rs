//! The table of resource kinds Corral serves: names, aliases, scope and subresources.
//! Every layer (API server, CLI, controllers) resolves kinds through this one table.

/// Static description of one resource kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    pub kind: &'static str,
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// Lower-case plural, used in store keys and API calls.
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// Has a `status` subresource: main updates keep status, status updates keep spec.
    pub has_status: bool,
    /// Has a `scale` subresource (`spec.replicas`).
    pub has_scale: bool,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// kubectl's "kind.group" spelling used in messages: `deployment.apps`, `pod`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.singular.to_string()
        } else {
            format!("{}.{}", self.singular, self.group)
        }
    }
}

const fn info(
    kind: &'static str,
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    has_status: bool,
    has_scale: bool,
) -> ResourceInfo {
    ResourceInfo {
        kind,
        group,
        version: "v1",
        plural,
        singular,
        short_names,
        namespaced,
        has_status,
        has_scale,
    }
}

pub const NAMESPACES: ResourceInfo = info(
    "Namespace",
    "",
    "namespaces",
    "namespace",
    &["ns"],
    false,
    true,
    false,
);
pub const NODES: ResourceInfo = info("Node", "", "nodes", "node", &["no"], false, true, false);
pub const PODS: ResourceInfo = info("Pod", "", "pods", "pod", &["po"], true, true, false);
pub const SERVICES: ResourceInfo = info(
    "Service",
    "",
    "services",
    "service",
    &["svc"],
    true,
    true,
    false,
);
pub const ENDPOINTS: ResourceInfo = info(
    "Endpoints",
    "",
    "endpoints",
    "endpoints",
    &["ep"],
    true,
    false,
    false,
);
pub const PVCS: ResourceInfo = info(
    "PersistentVolumeClaim",
    "",
    "persistentvolumeclaims",
    "persistentvolumeclaim",
    &["pvc"],
    true,
    true,
    false,
);
pub const PVS: ResourceInfo = info(
    "PersistentVolume",
    "",
    "persistentvolumes",
    "persistentvolume",
    &["pv"],
    false,
    true,
    false,
);
pub const EVENTS: ResourceInfo = info("Event", "", "events", "event", &["ev"], true, false, false);
pub const CONFIGMAPS: ResourceInfo = info(
    "ConfigMap",
    "",
    "configmaps",
    "configmap",
    &["cm"],
    true,
    false,
    false,
);
pub const SECRETS: ResourceInfo = info("Secret", "", "secrets", "secret", &[], true, false, false);
pub const REPLICASETS: ResourceInfo = info(
    "ReplicaSet",
    "apps",
    "replicasets",
    "replicaset",
    &["rs"],
    true,
    true,
    true,
);
pub const DEPLOYMENTS: ResourceInfo = info(
    "Deployment",
    "apps",
    "deployments",
    "deployment",
    &["deploy"],
    true,
    true,
    true,
);
pub const DAEMONSETS: ResourceInfo = info(
    "DaemonSet",
    "apps",
    "daemonsets",
    "daemonset",
    &["ds"],
    true,
    true,
    false,
);
pub const STATEFULSETS: ResourceInfo = info(
    "StatefulSet",
    "apps",
    "statefulsets",
    "statefulset",
    &["sts"],
    true,
    true,
    true,
);
pub const CONTROLLERREVISIONS: ResourceInfo = info(
    "ControllerRevision",
    "apps",
    "controllerrevisions",
    "controllerrevision",
    &[],
    true,
    false,
    false,
);
pub const INGRESSES: ResourceInfo = info(
    "Ingress",
    "networking.k8s.io",
    "ingresses",
    "ingress",
    &["ing"],
    true,
    true,
    false,
);
pub const INGRESSCLASSES: ResourceInfo = info(
    "IngressClass",
    "networking.k8s.io",
    "ingressclasses",
    "ingressclass",
    &[],
    false,
    false,
    false,
);
pub const LEASES: ResourceInfo = info(
    "Lease",
    "coordination.k8s.io",
    "leases",
    "lease",
    &[],
    true,
    false,
    false,
);
pub const ROLES: ResourceInfo = info(
    "Role",
    "rbac.authorization.k8s.io",
    "roles",
    "role",
    &[],
    true,
    false,
    false,
);
pub const CLUSTERROLES: ResourceInfo = info(
    "ClusterRole",
    "rbac.authorization.k8s.io",
    "clusterroles",
    "clusterrole",
    &[],
    false,
    false,
    false,
);
pub const ROLEBINDINGS: ResourceInfo = info(
    "RoleBinding",
    "rbac.authorization.k8s.io",
    "rolebindings",
    "rolebinding",
    &[],
    true,
    false,
    false,
);
pub const CLUSTERROLEBINDINGS: ResourceInfo = info(
    "ClusterRoleBinding",
    "rbac.authorization.k8s.io",
    "clusterrolebindings",
    "clusterrolebinding",
    &[],
    false,
    false,
    false,
);
/// Create-only and never stored: the answer is in the returned object's `status`.
pub const SELFSUBJECTACCESSREVIEWS: ResourceInfo = info(
    "SelfSubjectAccessReview",
    "authorization.k8s.io",
    "selfsubjectaccessreviews",
    "selfsubjectaccessreview",
    &[],
    false,
    false,
    false,
);
/// As [`SELFSUBJECTACCESSREVIEWS`], about any user (for administrators).
pub const SUBJECTACCESSREVIEWS: ResourceInfo = info(
    "SubjectAccessReview",
    "authorization.k8s.io",
    "subjectaccessreviews",
    "subjectaccessreview",
    &[],
    false,
    false,
    false,
);

impl ResourceInfo {
    /// Kinds answered on create and never stored (access reviews): no get, list or watch.
    pub fn is_virtual(&self) -> bool {
        self.group == "authorization.k8s.io"
    }

    /// Discovery categories: `all` holds the workloads and Services, as in Kubernetes
    /// (`kubectl get all`).
    pub fn categories(&self) -> &'static [&'static str] {
        match self.plural {
            "pods" | "services" | "replicasets" | "deployments" | "daemonsets" | "statefulsets" => {
                &["all"]
            }
            _ => &[],
        }
    }
}

/// Every kind the API server serves.
pub const ALL: &[ResourceInfo] = &[
    NAMESPACES,
    NODES,
    PODS,
    SERVICES,
    ENDPOINTS,
    PVCS,
    PVS,
    EVENTS,
    CONFIGMAPS,
    SECRETS,
    REPLICASETS,
    DEPLOYMENTS,
    DAEMONSETS,
    STATEFULSETS,
    CONTROLLERREVISIONS,
    INGRESSES,
    INGRESSCLASSES,
    LEASES,
    ROLES,
    CLUSTERROLES,
    ROLEBINDINGS,
    CLUSTERROLEBINDINGS,
    SELFSUBJECTACCESSREVIEWS,
    SUBJECTACCESSREVIEWS,
];

/// Resolves what a user typed (`po`, `pods`, `Pod`, `deployment.apps`, `deploy`) to a kind.
pub fn lookup(name: &str) -> Option<&'static ResourceInfo> {
    let lower = name.to_ascii_lowercase();
    let base = lower.split('.').next().unwrap_or(&lower);
    ALL.iter().find(|r| {
        r.plural == lower
            || r.singular == lower
            || r.qualified() == lower
            || r.short_names.contains(&base) && !lower.contains('.')
            || (lower.contains('.')
                && (r.plural == base || r.singular == base)
                && lower.ends_with(r.group))
    })
}

/// Finds the kind of a manifest by its `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    ALL.iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Finds a kind by its `kind` alone (for messages when the apiVersion is wrong).
pub fn by_kind_name(kind: &str) -> Option<&'static ResourceInfo> {
    ALL.iter().find(|r| r.kind == kind)
}

/// Finds a kind by its store plural.
pub fn by_plural(plural: &str) -> Option<&'static ResourceInfo> {
    ALL.iter().find(|r| r.plural == plural)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_like_kubectl() {
        for (typed, plural) in [
            ("po", "pods"),
            ("pod", "pods"),
            ("Pods", "pods"),
            ("rs", "replicasets"),
            ("replicaSet", "replicasets"),
            ("deploy", "deployments"),
            ("deployment.apps", "deployments"),
            ("ds", "daemonsets"),
            ("sts", "statefulsets"),
            ("svc", "services"),
            ("ep", "endpoints"),
            ("ing", "ingresses"),
            ("ingress.networking.k8s.io", "ingresses"),
            ("ingressclass", "ingressclasses"),
            ("IngressClasses", "ingressclasses"),
            ("ingressclass.networking.k8s.io", "ingressclasses"),
            ("no", "nodes"),
            ("ns", "namespaces"),
            ("clusterrole", "clusterroles"),
            ("rolebinding.rbac.authorization.k8s.io", "rolebindings"),
            ("ClusterRoleBindings", "clusterrolebindings"),
            ("role", "roles"),
        ] {
            assert_eq!(lookup(typed).map(|r| r.plural), Some(plural), "{typed}");
        }
        assert!(lookup("gadgets").is_none());
    }

    #[test]
    fn manifests_resolve_by_api_version_and_kind() {
        assert_eq!(
            by_kind("apps/v1", "DaemonSet").unwrap().plural,
            "daemonsets"
        );
        assert_eq!(
            by_kind("networking.k8s.io/v1", "Ingress").unwrap().plural,
            "ingresses"
        );
        let class = by_kind("networking.k8s.io/v1", "IngressClass").unwrap();
        assert_eq!(
            (class.plural, class.namespaced, class.has_status),
            ("ingressclasses", false, false)
        );
        assert!(by_kind("v1", "Deployment").is_none());
    }
}
