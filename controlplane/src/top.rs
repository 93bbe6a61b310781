//! metrics.k8s.io (issue 18): NodeMetrics and PodMetrics as metrics-server serves them, made
//! from the agents' usage summaries (fetched down their tunnels by `server/top.rs`). The
//! objects, the API group's discovery documents and the fan-out's warning are pure, with tests.

use std::collections::HashMap;
use std::time::Duration;

use corral_api::object;
use corral_api::rules::quantity::{format_bytes, format_nano};
use corral_proto as pb;
use jiff::Timestamp;
use serde_json::{json, Value};

use crate::registry::{ApiError, Subject};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
pub const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// How long the control plane waits for one node's answer (metrics-server's scrape timeout is
/// 10 s; the agent answers from memory, so a healthy one takes milliseconds).
pub const NODE_DEADLINE: Duration = Duration::from_secs(5);

/// The two resources of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Nodes,
    Pods,
}

impl Resource {
    pub fn parse(plural: &str) -> Option<Self> {
        match plural {
            "nodes" => Some(Self::Nodes),
            "pods" => Some(Self::Pods),
            _ => None,
        }
    }
    pub fn plural(self) -> &'static str {
        match self {
            Self::Nodes => "nodes",
            Self::Pods => "pods",
        }
    }
    fn kind(self) -> &'static str {
        match self {
            Self::Nodes => "NodeMetrics",
            Self::Pods => "PodMetrics",
        }
    }
    /// A named object without metrics: NotFound in metrics-server's words.
    pub fn not_found(self, name: &str) -> ApiError {
        ApiError::NotFound {
            what: Subject {
                group: GROUP.into(),
                kind: self.kind().to_lowercase(),
                name: name.into(),
            },
        }
    }
}

/// A Go duration string (`metav1.Duration`): `5.002s`, `1m0.5s`, `750ms`.
pub fn go_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (total_s, frac) = (ms / 1000, ms % 1000);
    let (h, m, s) = (total_s / 3600, total_s % 3600 / 60, total_s % 60);
    let sec = if frac == 0 {
        s.to_string()
    } else {
        format!("{s}.{frac:03}").trim_end_matches('0').to_string()
    };
    match (h, m) {
        (0, 0) => format!("{sec}s"),
        (0, m) => format!("{m}m{sec}s"),
        (h, m) => format!("{h}h{m}m{sec}s"),
    }
}

fn usage(u: &pb::Usage) -> Value {
    json!({
        "cpu": format_nano(u.cpu_nanocores),
        "memory": format_bytes(u.memory_working_set_bytes),
    })
}

fn timestamp(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The metadata metrics-server gives an object: the object's name, namespace and labels, and
/// `now` as its creation time (the object is made per request).
fn metadata(obj: &Value, now: &str) -> Value {
    let mut m = json!({
        "name": object::name(obj),
        "creationTimestamp": now,
    });
    let ns = object::namespace(obj);
    if !ns.is_empty() {
        m["namespace"] = json!(ns);
    }
    if let Some(labels) = obj.pointer("/metadata/labels").filter(|l| l.is_object()) {
        m["labels"] = labels.clone();
    }
    m
}

/// A Node's NodeMetrics from its agent's summary; `None` while the agent has no figures yet.
pub fn node_metrics(node: &Value, s: &pb::StatsSummary, now: &str) -> Option<Value> {
    let u = s.node.as_ref().filter(|_| s.ready)?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(node, now),
        "timestamp": timestamp(s.timestamp_ms),
        "window": go_duration(s.window_ms),
        "usage": usage(u),
    }))
}

/// Pods' PodMetrics from their node's summary: each pod in `pods` the summary has figures
/// for, in the order of `pods`.
pub fn pod_metrics(pods: &[&Value], s: &pb::StatsSummary, now: &str) -> Vec<Value> {
    if !s.ready {
        return Vec::new();
    }
    let by_name: HashMap<(&str, &str), &pb::PodUsage> = s
        .pods
        .iter()
        .map(|p| ((p.namespace.as_str(), p.name.as_str()), p))
        .collect();
    pods.iter()
        .filter_map(|pod| {
            let found = by_name.get(&(object::namespace(pod), object::name(pod)))?;
            let containers: Vec<Value> = found
                .containers
                .iter()
                .map(|c| json!({"name": c.name, "usage": usage(&c.usage.unwrap_or_default())}))
                .collect();
            Some(json!({
                "kind": "PodMetrics",
                "apiVersion": API_VERSION,
                "metadata": metadata(pod, now),
                "timestamp": timestamp(s.timestamp_ms),
                "window": go_duration(s.window_ms),
                "containers": containers,
            }))
        })
        .collect()
}

/// The list envelope of `resource`'s items.
pub fn list(resource: Resource, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{}List", resource.kind()),
        "apiVersion": API_VERSION,
        "metadata": {},
        "items": items,
    })
}

/// The warning for nodes that did not answer (none when all did).
pub fn unavailable_warning(asked: usize, failed: &[(String, String)]) -> Option<String> {
    if failed.is_empty() {
        return None;
    }
    let names: Vec<String> = failed
        .iter()
        .map(|(n, why)| format!("{n} ({why})"))
        .collect();
    let lead = if failed.len() == asked {
        "metrics unavailable: no node answered".to_string()
    } else {
        format!("metrics of {} of {asked} nodes unavailable", failed.len())
    };
    Some(format!("{lead}: {}", names.join(", ")))
}

/// `/apis/metrics.k8s.io`'s group entry (APIGroup without kind for the `/apis` list).
pub fn group_entry() -> Value {
    let gv = json!({"groupVersion": API_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `/apis/metrics.k8s.io`.
pub fn group_doc() -> Value {
    let mut doc = group_entry();
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    doc
}

/// `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    let entry = |name: &str, kind: &str, namespaced: bool| {
        json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
               "verbs": ["get", "list"]})
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": [entry("nodes", "NodeMetrics", false), entry("pods", "PodMetrics", true)],
    })
}

#[cfg(test)]
mod tests;
