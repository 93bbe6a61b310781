//! Where strategic merge patch finds each field's merge key and strategy: the
//! `patchStrategy`/`patchMergeKey` tags of the Kubernetes API types (k8s.io/api core/v1,
//! apps/v1; k8s.io/apimachinery meta/v1) for every field reachable from the kinds Corral serves.
//! A field not listed has none: its maps merge key by key, its lists are replaced whole. Checked
//! to have no tag, so replaced: tolerations, envFrom, args/command, node taints, container
//! statuses, Ingress rules and TLS, Endpoints subsets, RBAC rules and subjects, access modes.

use super::{FieldMeta, Schema, Strategy};
use crate::kinds::ResourceInfo;

/// A node of the schema: an object kind or a struct type on a path to a tagged field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A type with no tagged field below it (or a map, or a field Corral does not know).
    Unknown,
    /// A kind whose only tagged fields are its metadata's (ConfigMap, Ingress, Role, ...).
    Object,
    Pod,
    Node,
    Namespace,
    Service,
    PersistentVolumeClaim,
    /// ReplicaSet, DaemonSet, StatefulSet: a pod template and status conditions.
    Workload,
    Deployment,
    ObjectMeta,
    PodTemplateSpec,
    PodSpec,
    Container,
    PodStatus,
    NodeSpec,
    NodeStatus,
    ServiceSpec,
    WorkloadSpec,
    DeploymentSpec,
    /// A status whose tagged field is `conditions` by `type` (Namespace, Service, PVC,
    /// workloads).
    ConditionsStatus,
}

impl Ty {
    /// The root type of a kind's objects.
    pub fn of_kind(kind: &ResourceInfo) -> Ty {
        match (kind.group, kind.kind) {
            ("", "Pod") => Ty::Pod,
            ("", "Node") => Ty::Node,
            ("", "Namespace") => Ty::Namespace,
            ("", "Service") => Ty::Service,
            ("", "PersistentVolumeClaim") => Ty::PersistentVolumeClaim,
            ("apps", "ReplicaSet" | "DaemonSet" | "StatefulSet") => Ty::Workload,
            ("apps", "Deployment") => Ty::Deployment,
            _ => Ty::Object,
        }
    }
}

impl Ty {
    /// The node of a Kubernetes type by its OpenAPI name (`io.k8s.api.core.v1.PodSpec`), so the
    /// OpenAPI documents tag the same fields (`x-kubernetes-patch-merge-key`); `None` for a
    /// type with no tagged field here.
    pub fn of_definition(name: &str) -> Option<Ty> {
        let (group, ty) = name.strip_prefix("io.k8s.")?.rsplit_once('.')?;
        Some(match (group, ty) {
            ("api.core.v1", "Pod") => Ty::Pod,
            ("api.core.v1", "Node") => Ty::Node,
            ("api.core.v1", "Namespace") => Ty::Namespace,
            ("api.core.v1", "Service") => Ty::Service,
            ("api.core.v1", "PersistentVolumeClaim") => Ty::PersistentVolumeClaim,
            ("api.apps.v1", "ReplicaSet" | "DaemonSet" | "StatefulSet") => Ty::Workload,
            ("api.apps.v1", "Deployment") => Ty::Deployment,
            ("apimachinery.pkg.apis.meta.v1", "ObjectMeta") => Ty::ObjectMeta,
            ("api.core.v1", "PodTemplateSpec") => Ty::PodTemplateSpec,
            ("api.core.v1", "PodSpec") => Ty::PodSpec,
            ("api.core.v1", "Container" | "EphemeralContainer") => Ty::Container,
            ("api.core.v1", "PodStatus") => Ty::PodStatus,
            ("api.core.v1", "NodeSpec") => Ty::NodeSpec,
            ("api.core.v1", "NodeStatus") => Ty::NodeStatus,
            ("api.core.v1", "ServiceSpec") => Ty::ServiceSpec,
            ("api.apps.v1", "ReplicaSetSpec" | "DaemonSetSpec" | "StatefulSetSpec") => {
                Ty::WorkloadSpec
            }
            ("api.apps.v1", "DeploymentSpec") => Ty::DeploymentSpec,
            (
                "api.core.v1",
                "NamespaceStatus" | "ServiceStatus" | "PersistentVolumeClaimStatus",
            )
            | (
                "api.apps.v1",
                "ReplicaSetStatus" | "DaemonSetStatus" | "StatefulSetStatus" | "DeploymentStatus",
            ) => Ty::ConditionsStatus,
            _ => return None,
        })
    }
}

const fn plain(ty: Ty) -> FieldMeta<Ty> {
    FieldMeta {
        ty,
        strategy: Strategy::Default,
        merge_key: "",
    }
}

const fn by(merge_key: &'static str, ty: Ty) -> FieldMeta<Ty> {
    FieldMeta {
        ty,
        strategy: Strategy::Merge,
        merge_key,
    }
}

/// A list of scalars merged as a set (`patchStrategy:"merge"` without a merge key).
const SET: FieldMeta<Ty> = by("", Ty::Unknown);

impl Schema for Ty {
    fn field(self, name: &str) -> FieldMeta<Ty> {
        use Ty::*;
        match (self, name) {
            (
                Object
                | Pod
                | Node
                | Namespace
                | Service
                | PersistentVolumeClaim
                | Workload
                | Deployment
                | PodTemplateSpec,
                "metadata",
            ) => plain(ObjectMeta),
            (ObjectMeta, "finalizers") => SET,
            (ObjectMeta, "ownerReferences") => by("uid", Unknown),

            (Pod | PodTemplateSpec, "spec") => plain(PodSpec),
            (Pod, "status") => plain(PodStatus),
            (Node, "spec") => plain(NodeSpec),
            (Node, "status") => plain(NodeStatus),
            (Service, "spec") => plain(ServiceSpec),
            (Workload, "spec") => plain(WorkloadSpec),
            (Deployment, "spec") => plain(DeploymentSpec),
            (Namespace | Service | PersistentVolumeClaim | Workload | Deployment, "status") => {
                plain(ConditionsStatus)
            }
            (WorkloadSpec | DeploymentSpec, "template") => plain(PodTemplateSpec),
            // DeploymentSpec.strategy is `retainKeys`, which only guides patch creation: on
            // apply, a `$retainKeys` list in the patch acts wherever it is.

            // PodSpec.volumes and resourceClaims are "merge,retainKeys" by name.
            (PodSpec, "containers" | "initContainers" | "ephemeralContainers") => {
                by("name", Container)
            }
            (PodSpec, "volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims") => {
                by("name", Unknown)
            }
            (PodSpec, "hostAliases") => by("ip", Unknown),
            (PodSpec, "topologySpreadConstraints") => by("topologyKey", Unknown),
            (Container, "ports") => by("containerPort", Unknown),
            (Container, "env") => by("name", Unknown),
            (Container, "volumeMounts") => by("mountPath", Unknown),
            (Container, "volumeDevices") => by("devicePath", Unknown),

            (PodStatus | NodeStatus | ConditionsStatus, "conditions") => by("type", Unknown),
            (PodStatus, "hostIPs" | "podIPs") => by("ip", Unknown),
            (PodStatus, "resourceClaimStatuses") => by("name", Unknown),
            (NodeStatus, "addresses") => by("type", Unknown),
            (NodeSpec, "podCIDRs") => SET,
            (ServiceSpec, "ports") => by("port", Unknown),
            _ => plain(Unknown),
        }
    }
}

/// How server-side apply treats a list field (its `x-kubernetes-list-type`): replaced whole,
/// a set of scalars, or a map of items by their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map(&'static [MapKey]),
}

/// One key field of an associative list (`x-kubernetes-list-map-keys`), with the default the
/// API types give it (a port's protocol is TCP when omitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapKey {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

const fn key(name: &'static str) -> MapKey {
    MapKey {
        name,
        default: None,
    }
}

const PROTOCOL: MapKey = MapKey {
    name: "protocol",
    default: Some("TCP"),
};

impl Ty {
    /// The list type of field `name` of this type. A list merged by a patch merge key is a map
    /// by that key, a merged list of scalars a set, any other list atomic; except where the
    /// types' `listMapKey` tags name more keys than the patch merge key (ports by number and
    /// protocol, spread constraints by key and whenUnsatisfiable).
    pub fn list_type(self, name: &str) -> ListType {
        use Ty::*;
        match (self, name) {
            (Container, "ports") => {
                const K: &[MapKey] = &[key("containerPort"), PROTOCOL];
                ListType::Map(K)
            }
            (ServiceSpec, "ports") => {
                const K: &[MapKey] = &[key("port"), PROTOCOL];
                ListType::Map(K)
            }
            (PodSpec, "topologySpreadConstraints") => {
                const K: &[MapKey] = &[key("topologyKey"), key("whenUnsatisfiable")];
                ListType::Map(K)
            }
            _ => {
                let meta = self.field(name);
                match (meta.strategy, meta.merge_key) {
                    (Strategy::Merge, "") => ListType::Set,
                    (Strategy::Merge, k) => ListType::Map(single(k)),
                    _ => ListType::Atomic,
                }
            }
        }
    }
}

/// The one-key list of a patch merge key (the keys are a closed set: each has its constant).
fn single(merge_key: &'static str) -> &'static [MapKey] {
    const KEYS: &[MapKey] = &[
        key("name"),
        key("uid"),
        key("ip"),
        key("type"),
        key("topologyKey"),
        key("containerPort"),
        key("mountPath"),
        key("devicePath"),
        key("port"),
    ];
    KEYS.iter()
        .position(|k| k.name == merge_key)
        .map(|i| &KEYS[i..=i])
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds;

    #[test]
    fn list_types_for_apply_follow_the_merge_keys_and_list_map_keys() {
        let pod = Ty::of_kind(&kinds::PODS);
        const NAME: &[MapKey] = &[key("name")];
        const PORT: &[MapKey] = &[key("containerPort"), PROTOCOL];
        assert_eq!(Ty::PodSpec.list_type("containers"), ListType::Map(NAME));
        assert_eq!(Ty::Container.list_type("ports"), ListType::Map(PORT));
        assert_eq!(Ty::ObjectMeta.list_type("finalizers"), ListType::Set);
        assert_eq!(Ty::PodSpec.list_type("tolerations"), ListType::Atomic);
        assert_eq!(Ty::Container.list_type("args"), ListType::Atomic);
        assert_eq!(pod.list_type("spec"), ListType::Atomic);
        for ty in [
            Ty::PodSpec,
            Ty::Container,
            Ty::PodStatus,
            Ty::NodeStatus,
            Ty::ObjectMeta,
            Ty::ServiceSpec,
            Ty::NodeSpec,
        ] {
            for field in [
                "containers",
                "volumes",
                "hostAliases",
                "env",
                "volumeMounts",
                "volumeDevices",
                "conditions",
                "podIPs",
                "addresses",
                "ownerReferences",
                "imagePullSecrets",
            ] {
                if let ListType::Map(keys) = ty.list_type(field) {
                    assert!(!keys.is_empty(), "{ty:?}.{field} has a key");
                }
            }
        }
    }

    fn meta(kind: &ResourceInfo, path: &str) -> (Strategy, &'static str) {
        let mut ty = Ty::of_kind(kind);
        let mut m = plain(ty);
        for segment in path.split('.') {
            m = ty.field(segment);
            ty = m.ty;
        }
        (m.strategy, m.merge_key)
    }

    #[test]
    fn openapi_names_lead_to_the_same_nodes_as_paths_from_the_kinds() {
        for (name, path_of, kind) in [
            ("io.k8s.api.core.v1.PodSpec", "spec", &kinds::PODS),
            (
                "io.k8s.api.apps.v1.DeploymentSpec",
                "spec",
                &kinds::DEPLOYMENTS,
            ),
            (
                "io.k8s.api.core.v1.Container",
                "spec.template.spec.containers",
                &kinds::DEPLOYMENTS,
            ),
            (
                "io.k8s.api.apps.v1.StatefulSetStatus",
                "status",
                &kinds::STATEFULSETS,
            ),
            (
                "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                "metadata",
                &kinds::NODES,
            ),
        ] {
            let mut ty = Ty::of_kind(kind);
            for segment in path_of.split('.') {
                ty = ty.field(segment).ty;
            }
            assert_eq!(Ty::of_definition(name), Some(ty), "{name}");
        }
        assert_eq!(Ty::of_definition("io.k8s.api.core.v1.ConfigMap"), None);
    }

    #[test]
    fn merge_keys_and_strategies_are_those_of_the_kubernetes_types() {
        use Strategy::*;
        for (kind, path, want) in [
            (&kinds::PODS, "spec.containers", (Merge, "name")),
            (&kinds::PODS, "spec.initContainers", (Merge, "name")),
            (&kinds::PODS, "spec.ephemeralContainers", (Merge, "name")),
            (
                &kinds::PODS,
                "spec.containers.ports",
                (Merge, "containerPort"),
            ),
            (&kinds::PODS, "spec.containers.env", (Merge, "name")),
            (&kinds::PODS, "spec.containers.envFrom", (Default, "")),
            (
                &kinds::PODS,
                "spec.containers.volumeMounts",
                (Merge, "mountPath"),
            ),
            (
                &kinds::PODS,
                "spec.containers.volumeDevices",
                (Merge, "devicePath"),
            ),
            (
                &kinds::PODS,
                "spec.ephemeralContainers.env",
                (Merge, "name"),
            ),
            (&kinds::PODS, "spec.volumes", (Merge, "name")),
            (&kinds::PODS, "spec.imagePullSecrets", (Merge, "name")),
            (&kinds::PODS, "spec.hostAliases", (Merge, "ip")),
            (
                &kinds::PODS,
                "spec.topologySpreadConstraints",
                (Merge, "topologyKey"),
            ),
            (&kinds::PODS, "spec.schedulingGates", (Merge, "name")),
            (&kinds::PODS, "spec.resourceClaims", (Merge, "name")),
            (&kinds::PODS, "spec.tolerations", (Default, "")),
            (&kinds::PODS, "status.conditions", (Merge, "type")),
            (&kinds::PODS, "status.podIPs", (Merge, "ip")),
            (&kinds::PODS, "status.hostIPs", (Merge, "ip")),
            (&kinds::PODS, "status.containerStatuses", (Default, "")),
            (&kinds::PODS, "metadata.finalizers", (Merge, "")),
            (
                &kinds::CONFIGMAPS,
                "metadata.ownerReferences",
                (Merge, "uid"),
            ),
            (
                &kinds::DEPLOYMENTS,
                "spec.template.spec.containers",
                (Merge, "name"),
            ),
            (
                &kinds::DEPLOYMENTS,
                "spec.template.metadata.finalizers",
                (Merge, ""),
            ),
            (&kinds::DEPLOYMENTS, "status.conditions", (Merge, "type")),
            (
                &kinds::STATEFULSETS,
                "spec.template.spec.volumes",
                (Merge, "name"),
            ),
            (
                &kinds::STATEFULSETS,
                "spec.volumeClaimTemplates",
                (Default, ""),
            ),
            (&kinds::DAEMONSETS, "status.conditions", (Merge, "type")),
            (
                &kinds::REPLICASETS,
                "spec.template.spec.initContainers.env",
                (Merge, "name"),
            ),
            (&kinds::SERVICES, "spec.ports", (Merge, "port")),
            (&kinds::SERVICES, "status.conditions", (Merge, "type")),
            (&kinds::NODES, "spec.podCIDRs", (Merge, "")),
            (&kinds::NODES, "spec.taints", (Default, "")),
            (&kinds::NODES, "status.conditions", (Merge, "type")),
            (&kinds::NODES, "status.addresses", (Merge, "type")),
            (&kinds::NAMESPACES, "status.conditions", (Merge, "type")),
            (&kinds::PVCS, "status.conditions", (Merge, "type")),
            (&kinds::INGRESSES, "spec.rules", (Default, "")),
            (&kinds::ENDPOINTS, "subsets", (Default, "")),
            (&kinds::ROLES, "rules", (Default, "")),
        ] {
            assert_eq!(meta(kind, path), want, "{} {path}", kind.kind);
        }
    }
}
