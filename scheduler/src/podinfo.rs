//! The scheduler's compact view of a pod: requests, placement constraints and the labels other
//! pods' anti-affinity looks at, computed once from the k8s `Pod` so plugins never re-parse.

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_api::rules::{node_selector, owner, quantity};
use corral_api::selector::LabelSelectorExpr;
use k8s_openapi::api::core::v1::{
    Container, NodeSelectorTerm, Pod, PodAffinityTerm, PreferredSchedulingTerm, Toleration,
    WeightedPodAffinityTerm,
};

use crate::{Error, Result};

/// Requests the scheduler counts. `cpu` is in millicores, `memory` in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

impl Resources {
    pub fn add(&mut self, other: &Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.pods += other.pods;
    }
    pub fn sub(&mut self, other: &Resources) {
        self.cpu -= other.cpu;
        self.memory -= other.memory;
        self.pods -= other.pods;
    }
    fn max(&mut self, other: &Resources) {
        self.cpu = self.cpu.max(other.cpu);
        self.memory = self.memory.max(other.memory);
    }
}

/// Requests assumed for scoring when a container sets none, as kube-scheduler does, so that
/// best-effort pods still spread instead of piling on one node.
pub const DEFAULT_CPU_MILLIS: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Two host ports conflict on the same protocol and port when either binds every address.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || is_any(&self.ip) || is_any(&other.ip))
    }
}

fn is_any(ip: &str) -> bool {
    ip.is_empty() || ip == "0.0.0.0" || ip == "::"
}

/// A pod affinity term with its selector compiled. `namespaces` empty with `all_namespaces`
/// false means the pod's own namespace (already filled in).
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    pub selector: LabelSelectorExpr,
    pub namespaces: Vec<String>,
    pub all_namespaces: bool,
    pub topology_key: String,
}

impl AffinityTerm {
    pub fn matches(&self, pod: &PodInfo) -> bool {
        (self.all_namespaces || self.namespaces.contains(&pod.namespace))
            && self.selector.matches(&pod.labels)
    }
}

#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub resource_version: String,
    pub node_name: Option<String>,
    pub scheduler_name: String,
    pub priority: i32,
    pub deleting: bool,
    pub terminal: bool,
    pub requests: Resources,
    /// Requests with kube-scheduler's non-zero defaults, for scoring only.
    pub score_requests: Resources,
    pub labels: BTreeMap<String, String>,
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity terms (ORed); `None` when absent.
    pub required_terms: Option<Vec<NodeSelectorTerm>>,
    pub preferred_terms: Vec<PreferredSchedulingTerm>,
    pub tolerations: Vec<Toleration>,
    pub host_ports: Vec<HostPort>,
    /// Uid of the controller owner (ReplicaSet, DaemonSet, ...), for spreading.
    pub owner: Option<String>,
    pub anti_affinity_required: Vec<AffinityTerm>,
    pub anti_affinity_preferred: Vec<(i32, AffinityTerm)>,
    /// Required pod affinity terms (ANDed): the pod goes where matching pods already run.
    pub affinity_required: Vec<AffinityTerm>,
    pub affinity_preferred: Vec<(i32, AffinityTerm)>,
}

impl PodInfo {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn from_pod(pod: &Pod) -> Result<Arc<PodInfo>> {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let object = format!("pod \"{namespace}/{name}\"");
        let spec = pod.spec.clone().unwrap_or_default();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());

        let mut requests = Resources::default();
        let mut score_requests = Resources::default();
        for (i, c) in spec.containers.iter().enumerate() {
            let (r, s) = container_requests(c, &object, &format!("spec.containers[{i}]"))?;
            requests.add(&r);
            score_requests.add(&s);
        }
        for (i, c) in spec.init_containers.iter().flatten().enumerate() {
            let (r, s) = container_requests(c, &object, &format!("spec.initContainers[{i}]"))?;
            requests.max(&r);
            score_requests.max(&s);
        }
        if let Some(overhead) = &spec.overhead {
            let (r, _) = resource_map(Some(overhead), &object, "spec.overhead")?;
            requests.add(&r);
            score_requests.add(&r);
        }
        requests.pods = 1;
        score_requests.pods = 1;

        let host_ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|p| *p > 0)?;
                Some(HostPort {
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    ip: p.host_ip.clone().unwrap_or_default(),
                    port,
                })
            })
            .collect();

        let affinity = spec.affinity.as_ref();
        let node_affinity = affinity.and_then(|a| a.node_affinity.as_ref());
        let required_terms = node_selector::required_terms(affinity).map(<[_]>::to_vec);
        let preferred_terms = node_affinity
            .and_then(|n| {
                n.preferred_during_scheduling_ignored_during_execution
                    .clone()
            })
            .unwrap_or_default();

        let anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let (anti_affinity_required, anti_affinity_preferred) = compile_terms(
            anti.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            anti.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            "spec.affinity.podAntiAffinity",
            &namespace,
            &object,
        )?;
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let (affinity_required, affinity_preferred) = compile_terms(
            pod_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            pod_affinity.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            "spec.affinity.podAffinity",
            &namespace,
            &object,
        )?;

        Ok(Arc::new(PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            namespace,
            name,
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .unwrap_or_else(|| "default-scheduler".into()),
            priority: spec.priority.unwrap_or(0),
            deleting: meta.deletion_timestamp.is_some(),
            terminal: matches!(phase, Some("Succeeded" | "Failed")),
            requests,
            score_requests,
            labels: meta.labels.clone().unwrap_or_default(),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_terms,
            preferred_terms,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            host_ports,
            owner: owner::controller_of(meta).map(|o| o.uid.clone()),
            anti_affinity_required,
            anti_affinity_preferred,
            affinity_required,
            affinity_preferred,
        }))
    }
}

type CompiledTerms = (Vec<AffinityTerm>, Vec<(i32, AffinityTerm)>);

/// Compiles the required and preferred terms of `podAffinity` or `podAntiAffinity` (`field`).
fn compile_terms(
    required: Option<&Vec<PodAffinityTerm>>,
    preferred: Option<&Vec<WeightedPodAffinityTerm>>,
    field: &str,
    namespace: &str,
    object: &str,
) -> Result<CompiledTerms> {
    let mut req = Vec::new();
    for (i, t) in required.into_iter().flatten().enumerate() {
        let path = format!("{field}.requiredDuringSchedulingIgnoredDuringExecution[{i}]");
        req.push(compile_term(t, namespace, object, &path)?);
    }
    let mut pref = Vec::new();
    for (i, t) in preferred.into_iter().flatten().enumerate() {
        let path = format!("{field}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
        pref.push((
            t.weight,
            compile_term(&t.pod_affinity_term, namespace, object, &path)?,
        ));
    }
    Ok((req, pref))
}

fn compile_term(
    t: &PodAffinityTerm,
    namespace: &str,
    object: &str,
    field: &str,
) -> Result<AffinityTerm> {
    let selector =
        LabelSelectorExpr::from_label_selector(t.label_selector.as_ref()).map_err(|source| {
            Error::Selector {
                object: object.to_string(),
                field: format!("{field}.labelSelector"),
                source,
            }
        })?;
    // An empty namespaceSelector ({}) selects every namespace; namespace labels are not
    // consulted otherwise (a non-empty namespaceSelector is treated as the pod's namespace).
    let all_namespaces = t.namespace_selector.as_ref().is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    });
    let mut namespaces = t.namespaces.clone().unwrap_or_default();
    if namespaces.is_empty() {
        namespaces.push(namespace.to_string());
    }
    Ok(AffinityTerm {
        selector,
        namespaces,
        all_namespaces,
        topology_key: t.topology_key.clone(),
    })
}

type ResourceList = BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>;

/// Requests (falling back to limits, as API defaulting would) and the scoring variant.
fn container_requests(c: &Container, object: &str, field: &str) -> Result<(Resources, Resources)> {
    let res = c.resources.as_ref();
    let (req, req_set) = resource_map(
        res.and_then(|r| r.requests.as_ref()),
        object,
        &format!("{field}.resources.requests"),
    )?;
    let (lim, lim_set) = resource_map(
        res.and_then(|r| r.limits.as_ref()),
        object,
        &format!("{field}.resources.limits"),
    )?;
    let cpu = if req_set.0 { req.cpu } else { lim.cpu };
    let memory = if req_set.1 { req.memory } else { lim.memory };
    let cpu_set = req_set.0 || lim_set.0;
    let memory_set = req_set.1 || lim_set.1;
    let r = Resources {
        cpu,
        memory,
        pods: 0,
    };
    let s = Resources {
        cpu: if cpu_set { cpu } else { DEFAULT_CPU_MILLIS },
        memory: if memory_set { memory } else { DEFAULT_MEMORY },
        pods: 0,
    };
    Ok((r, s))
}

/// Parses cpu and memory of a resource list; also says which of the two were present.
fn resource_map(
    list: Option<&ResourceList>,
    object: &str,
    field: &str,
) -> Result<(Resources, (bool, bool))> {
    let mut r = Resources::default();
    let mut set = (false, false);
    let Some(list) = list else {
        return Ok((r, set));
    };
    let err = |key: &str, source| Error::Quantity {
        object: object.to_string(),
        field: format!("{field}.{key}"),
        source,
    };
    if let Some(q) = list.get("cpu") {
        r.cpu = quantity::cpu_millis(&q.0).map_err(|e| err("cpu", e))?;
        set.0 = true;
    }
    if let Some(q) = list.get("memory") {
        r.memory = quantity::value(&q.0).map_err(|e| err("memory", e))?;
        set.1 = true;
    }
    Ok((r, set))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for the table tests of every plugin.
    use super::*;
    use serde_json::json;

    pub fn pod_json(v: serde_json::Value) -> Arc<PodInfo> {
        let mut base = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "uid-p"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        });
        merge(&mut base, v);
        let pod: Pod = serde_json::from_value(base).expect("test pod decodes");
        PodInfo::from_pod(&pod).expect("test pod is valid")
    }

    pub fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::pod_json;
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_sum_containers_and_take_the_largest_init_container() {
        let p = pod_json(json!({"spec": {
            "containers": [
                {"name": "a", "image": "i", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "image": "i", "resources": {"limits": {"cpu": "1"}}}
            ],
            "initContainers": [
                {"name": "i", "image": "i", "resources": {"requests": {"cpu": "2", "memory": "1Mi"}}}
            ]
        }}));
        assert_eq!(p.requests.cpu, 2000);
        assert_eq!(p.requests.memory, 64 * 1024 * 1024);
        assert_eq!(p.requests.pods, 1);
    }

    #[test]
    fn best_effort_pods_score_with_default_requests() {
        let p = pod_json(json!({}));
        assert_eq!(p.requests.cpu, 0);
        assert_eq!(p.score_requests.cpu, DEFAULT_CPU_MILLIS);
        assert_eq!(p.score_requests.memory, DEFAULT_MEMORY);
    }

    #[test]
    fn a_bad_quantity_names_pod_and_field() {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": "lots"}}}]}
        });
        v["apiVersion"] = json!("v1");
        v["kind"] = json!("Pod");
        let pod: Pod = serde_json::from_value(v).unwrap();
        let e = PodInfo::from_pod(&pod).unwrap_err().to_string();
        assert_eq!(
            e,
            "pod \"default/web\": spec.containers[0].resources.requests.cpu: invalid quantity \"lots\": not a number"
        );
    }

    #[test]
    fn host_ports_conflict_on_any_address() {
        let a = HostPort {
            protocol: "TCP".into(),
            ip: "".into(),
            port: 80,
        };
        let b = HostPort {
            protocol: "TCP".into(),
            ip: "10.0.0.1".into(),
            port: 80,
        };
        let c = HostPort {
            protocol: "UDP".into(),
            ip: "".into(),
            port: 80,
        };
        let d = HostPort {
            protocol: "TCP".into(),
            ip: "10.0.0.2".into(),
            port: 80,
        };
        assert!(a.conflicts(&b));
        assert!(!a.conflicts(&c));
        assert!(!b.conflicts(&d));
    }
}
