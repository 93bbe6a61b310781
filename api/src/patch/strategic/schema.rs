//! Where strategic merge patch finds each field's merge key and strategy: the
//! `patchStrategy`/`patchMergeKey` tags of the Kubernetes API types (k8s.io/api core/v1,
//! apps/v1; k8s.io/apimachinery meta/v1) for every field reachable from the kinds Corral serves.
//! A field not listed has none: its maps merge key by key, its lists are replaced whole
//! (tolerations, Ingress rules, Service selectors' lists, ...).

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
