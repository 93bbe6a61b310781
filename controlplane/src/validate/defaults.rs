//! Server-side defaulting, as Kubernetes' API server applies it before validation: pod and
//! container fields, workload replicas and strategies, Service fields, Secret data, and the
//! DefaultTolerationSeconds admission.

use corral_api::kinds::ResourceInfo;
use corral_api::rules::pull_policy::default_pull_policy;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Service, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::{configdata, typed, untyped};

/// The finalizer in a namespace's `spec.finalizers` that holds it Terminating until the
/// namespace controller has emptied it.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// Kubernetes defaults that the API server applies, configurable where a lab wants other values.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// tolerationSeconds of the default not-ready/unreachable tolerations added to pods.
    pub toleration_seconds: i64,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            toleration_seconds: 2,
        }
    }
}

/// Applies defaults in place. `object` has passed `decode::check_schema` for `info`.
pub fn apply_defaults(info: &ResourceInfo, object: &mut Value, defaults: &Defaults) {
    match info.plural {
        "pods" => {
            let mut pod: k8s_openapi::api::core::v1::Pod = typed(object);
            let spec = pod.spec.get_or_insert_with(Default::default);
            default_pod_spec(spec);
            add_default_tolerations(spec, defaults.toleration_seconds);
            let status = pod.status.get_or_insert_with(Default::default);
            status.phase.get_or_insert_with(|| "Pending".into());
            *object = untyped(&pod);
        }
        "replicasets" => {
            let mut rs: ReplicaSet = typed(object);
            if let Some(spec) = rs.spec.as_mut() {
                spec.replicas.get_or_insert(1);
                default_template(spec.template.as_mut());
            }
            *object = untyped(&rs);
        }
        "deployments" => {
            let mut d: Deployment = typed(object);
            if let Some(spec) = d.spec.as_mut() {
                spec.replicas.get_or_insert(1);
                spec.revision_history_limit.get_or_insert(10);
                spec.progress_deadline_seconds.get_or_insert(600);
                let strategy = spec.strategy.get_or_insert_with(Default::default);
                let kind = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
                if kind == "RollingUpdate" {
                    let ru = strategy.rolling_update.get_or_insert_with(Default::default);
                    ru.max_surge
                        .get_or_insert(IntOrString::String("25%".into()));
                    ru.max_unavailable
                        .get_or_insert(IntOrString::String("25%".into()));
                }
                default_template(Some(&mut spec.template));
            }
            *object = untyped(&d);
        }
        "daemonsets" => {
            let mut ds: DaemonSet = typed(object);
            if let Some(spec) = ds.spec.as_mut() {
                spec.revision_history_limit.get_or_insert(10);
                let strategy = spec.update_strategy.get_or_insert_with(Default::default);
                let kind = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
                if kind == "RollingUpdate" {
                    let ru = strategy.rolling_update.get_or_insert_with(Default::default);
                    ru.max_unavailable.get_or_insert(IntOrString::Int(1));
                    ru.max_surge.get_or_insert(IntOrString::Int(0));
                }
                default_template(Some(&mut spec.template));
            }
            *object = untyped(&ds);
        }
        "statefulsets" => {
            let mut sts: StatefulSet = typed(object);
            if let Some(spec) = sts.spec.as_mut() {
                spec.replicas.get_or_insert(1);
                spec.revision_history_limit.get_or_insert(10);
                spec.pod_management_policy
                    .get_or_insert_with(|| "OrderedReady".into());
                let strategy = spec.update_strategy.get_or_insert_with(Default::default);
                let kind = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
                if kind == "RollingUpdate" {
                    strategy
                        .rolling_update
                        .get_or_insert_with(Default::default)
                        .partition
                        .get_or_insert(0);
                }
                default_template(Some(&mut spec.template));
            }
            *object = untyped(&sts);
        }
        "services" => {
            let mut svc: Service = typed(object);
            let spec = svc.spec.get_or_insert_with(Default::default);
            spec.type_.get_or_insert_with(|| "ClusterIP".into());
            spec.session_affinity.get_or_insert_with(|| "None".into());
            if spec.session_affinity.as_deref() == Some("ClientIP") {
                let cfg = spec
                    .session_affinity_config
                    .get_or_insert_with(Default::default);
                let ip = cfg.client_ip.get_or_insert_with(Default::default);
                ip.timeout_seconds.get_or_insert(10800);
            }
            let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
            if kind == "NodePort" || kind == "LoadBalancer" {
                spec.external_traffic_policy
                    .get_or_insert_with(|| "Cluster".into());
            }
            if kind != "ExternalName" {
                spec.internal_traffic_policy
                    .get_or_insert_with(|| "Cluster".into());
            }
            for port in spec.ports.iter_mut().flatten() {
                port.protocol.get_or_insert_with(|| "TCP".into());
                port.target_port.get_or_insert(IntOrString::Int(port.port));
            }
            *object = untyped(&svc);
        }
        "secrets" => {
            let mut secret: k8s_openapi::api::core::v1::Secret = typed(object);
            configdata::default_secret(&mut secret);
            *object = untyped(&secret);
        }
        "namespaces" => {
            object["status"]["phase"] = Value::from("Active");
            // kube-apiserver's namespace strategy: every namespace is created with the
            // `kubernetes` finalizer, which the namespace controller removes once it has
            // deleted the namespace's content (updates keep spec.finalizers as stored).
            let finalizers = &mut object["spec"]["finalizers"];
            if !finalizers.is_array() {
                *finalizers = Value::Array(Vec::new());
            }
            if let Some(list) = finalizers.as_array_mut() {
                if !list.iter().any(|f| f == NAMESPACE_FINALIZER) {
                    list.push(Value::from(NAMESPACE_FINALIZER));
                }
            }
        }
        _ => {}
    }
}

fn default_template(template: Option<&mut PodTemplateSpec>) {
    if let Some(spec) = template.and_then(|t| t.spec.as_mut()) {
        default_pod_spec(spec);
    }
}

fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.security_context.get_or_insert_with(Default::default);
    spec.enable_service_links.get_or_insert(true);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(c);
    }
}

fn default_container(c: &mut Container) {
    if c.image_pull_policy.is_none() {
        c.image_pull_policy = Some(default_pull_policy(c.image.as_deref().unwrap_or("")).into());
    }
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert_with(|| "File".into());
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
}

/// Kubernetes' DefaultTolerationSeconds admission: pods tolerate a not-ready or unreachable
/// node for a while before they are evicted.
fn add_default_tolerations(spec: &mut PodSpec, seconds: i64) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = tolerations.iter().any(|t| {
            (t.key.as_deref() == Some(key)
                || (t.key.is_none() && t.operator.as_deref() == Some("Exists")))
                && t.effect.as_deref().is_none_or(|e| e == "NoExecute")
        });
        if !covered {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(seconds),
                value: None,
            });
        }
    }
}
