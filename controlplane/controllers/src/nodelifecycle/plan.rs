//! The node lifecycle planner: a node whose Lease stops being renewed becomes Unknown and gets
//! the `node.kubernetes.io/unreachable` NoExecute taint; pods on NoExecute-tainted nodes are
//! evicted once their toleration runs out; pods bound to nodes that no longer exist are
//! deleted. No I/O: heartbeats come in as "last seen" instants on the controller's own clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::rules::taints;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{pods, util};

pub const UNREACHABLE: &str = taints::UNREACHABLE_KEY;
pub const NOT_READY: &str = taints::NOT_READY_KEY;
/// The Ready reason this controller writes, so it knows which Unknowns are its own.
pub const STATUS_UNKNOWN: &str = "NodeStatusUnknown";

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set Ready (and the other conditions) to Unknown.
    MarkUnknown(Arc<Node>),
    /// The lease is renewed again: put back the Ready=True we replaced (the agent refreshes it).
    MarkReady(Arc<Node>),
    AddTaint(Arc<Node>, Taint),
    RemoveTaint(Arc<Node>, String),
    /// Delete the pod (graceful): its toleration of a NoExecute taint ran out.
    Evict(Arc<Pod>, String),
    /// The pod's node is gone: delete it for good once the node's absence is confirmed.
    DeleteOrphaned(Arc<Pod>, String),
}

pub struct Input<'a> {
    pub nodes: &'a [Arc<Node>],
    /// When each node was last seen alive (lease renewal or status heartbeat).
    pub last_seen: &'a HashMap<String, Timestamp>,
    pub pods: &'a [Arc<Pod>],
    pub now: Timestamp,
    pub grace: Duration,
    /// Toleration seconds for unreachable/not-ready when a pod has no toleration for them.
    pub default_toleration: Duration,
}

fn ready_status(node: &Node) -> Option<(&str, Option<&str>)> {
    let c = node
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status.as_str(), c.reason.as_deref()))
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

fn since(now: Timestamp, then: Timestamp) -> Duration {
    let ms = now.as_millisecond() - then.as_millisecond();
    Duration::from_millis(ms.max(0) as u64)
}

pub fn plan(input: &Input) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut node_by_name: HashMap<&str, &Arc<Node>> = HashMap::new();
    let mut effective: HashMap<&str, Vec<Taint>> = HashMap::new();
    for node in input.nodes {
        let name = util::name(&node.metadata);
        node_by_name.insert(name, node);
        let seen = input.last_seen.get(name).copied().unwrap_or(input.now);
        let stale = since(input.now, seen) > input.grace;
        let ready = ready_status(node);
        let mut node_taints = taints(node).to_vec();
        let has = |taints: &[Taint], key: &str| {
            taints
                .iter()
                .any(|t| t.key == key && t.effect == "NoExecute")
        };
        if stale {
            if ready.map(|r| r.0) != Some("Unknown") {
                actions.push(Action::MarkUnknown(node.clone()));
            }
            if !has(&node_taints, UNREACHABLE) {
                let taint = Taint {
                    key: UNREACHABLE.into(),
                    effect: "NoExecute".into(),
                    time_added: Some(Time(input.now)),
                    value: None,
                };
                actions.push(Action::AddTaint(node.clone(), taint.clone()));
                node_taints.push(taint);
            }
        } else {
            if has(&node_taints, UNREACHABLE) {
                actions.push(Action::RemoveTaint(node.clone(), UNREACHABLE.into()));
                node_taints.retain(|t| t.key != UNREACHABLE);
            }
            if ready == Some(("Unknown", Some(STATUS_UNKNOWN))) {
                actions.push(Action::MarkReady(node.clone()));
            }
            let not_ready = ready.map(|r| r.0) == Some("False");
            if not_ready && !has(&node_taints, NOT_READY) {
                let taint = Taint {
                    key: NOT_READY.into(),
                    effect: "NoExecute".into(),
                    time_added: Some(Time(input.now)),
                    value: None,
                };
                actions.push(Action::AddTaint(node.clone(), taint.clone()));
                node_taints.push(taint);
            } else if !not_ready && has(&node_taints, NOT_READY) {
                actions.push(Action::RemoveTaint(node.clone(), NOT_READY.into()));
                node_taints.retain(|t| t.key != NOT_READY);
            }
        }
        effective.insert(name, node_taints);
    }

    for pod in input.pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(node) = pods::node_name(pod) else {
            continue;
        };
        let Some(node_taints) = effective.get(node) else {
            actions.push(Action::DeleteOrphaned(pod.clone(), node.to_string()));
            continue;
        };
        if pods::is_terminal(pod) {
            continue;
        }
        if let Some(reason) = eviction_due(pod, node_taints, input.now, input.default_toleration) {
            actions.push(Action::Evict(pod.clone(), reason));
        }
    }
    actions
}

/// Why the pod must go now, if one of the node's NoExecute taints is not (or no longer)
/// tolerated. A pod without a toleration for unreachable/not-ready gets the default seconds,
/// as Kubernetes' DefaultTolerationSeconds admission would have given it.
pub fn eviction_due(
    pod: &Pod,
    node_taints: &[Taint],
    now: Timestamp,
    default: Duration,
) -> Option<String> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    for taint in node_taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let matching: Vec<_> = tolerations
            .iter()
            .filter(|t| taints::tolerates(t, taint))
            .collect();
        let allowed = if matching.is_empty() {
            if taint.key == UNREACHABLE || taint.key == NOT_READY {
                Some(default)
            } else {
                Some(Duration::ZERO)
            }
        } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            None
        } else {
            let secs = matching
                .iter()
                .filter_map(|t| t.toleration_seconds)
                .min()
                .unwrap_or(0);
            Some(Duration::from_secs(secs.max(0) as u64))
        };
        if let Some(allowed) = allowed {
            if since(now, added) >= allowed {
                return Some(format!("node has taint {}:NoExecute", taint.key));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, Toleration};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, ready: (&str, &str), taint_keys: &[(&str, i64)]) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taint_keys
                        .iter()
                        .map(|(k, at)| Taint {
                            key: k.to_string(),
                            effect: "NoExecute".into(),
                            time_added: Some(Time(t(*at))),
                            value: None,
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.0.into(),
                    reason: Some(ready.1.into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn tolerating(p: PodB, key: &str, secs: Option<i64>) -> PodB {
        let mut p = p;
        p.0.spec.get_or_insert_with(Default::default).tolerations = Some(vec![Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        }]);
        p
    }

    fn summary(actions: &[Action]) -> Vec<String> {
        let mut v: Vec<String> = actions
            .iter()
            .map(|a| match a {
                Action::MarkUnknown(n) => format!("unknown {}", util::name(&n.metadata)),
                Action::MarkReady(n) => format!("ready {}", util::name(&n.metadata)),
                Action::AddTaint(n, t) => format!("taint {} {}", util::name(&n.metadata), t.key),
                Action::RemoveTaint(n, k) => format!("untaint {} {k}", util::name(&n.metadata)),
                Action::Evict(p, _) => format!("evict {}", util::name(&p.metadata)),
                Action::DeleteOrphaned(p, _) => format!("orphaned {}", util::name(&p.metadata)),
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn node_lifecycle_plans_match_kubernetes() {
        let ready = ("True", "KubeletReady");
        let unknown = ("Unknown", STATUS_UNKNOWN);
        struct Case {
            name: &'static str,
            nodes: Vec<Arc<Node>>,
            seen_ago: i64,
            pods: Vec<PodB>,
            want: Vec<&'static str>,
        }
        let cases = vec![
            Case {
                name: "fresh lease: nothing",
                nodes: vec![node("n1", ready, &[])],
                seen_ago: 1,
                pods: vec![],
                want: vec![],
            },
            Case {
                name: "lease older than the grace: Unknown and tainted",
                nodes: vec![node("n1", ready, &[])],
                seen_ago: 10,
                pods: vec![],
                want: vec!["taint n1 node.kubernetes.io/unreachable", "unknown n1"],
            },
            Case {
                name: "back: taint removed and our Unknown undone",
                nodes: vec![node("n1", unknown, &[(UNREACHABLE, 50)])],
                seen_ago: 0,
                pods: vec![],
                want: vec!["ready n1", "untaint n1 node.kubernetes.io/unreachable"],
            },
            Case {
                name: "pods tolerate for their seconds",
                nodes: vec![node("n1", unknown, &[(UNREACHABLE, 95)])],
                seen_ago: 10,
                pods: vec![
                    tolerating(PodB::new("short").node("n1").ready(0), UNREACHABLE, Some(2)),
                    tolerating(
                        PodB::new("long").node("n1").ready(0),
                        UNREACHABLE,
                        Some(300),
                    ),
                    tolerating(PodB::new("forever").node("n1").ready(0), UNREACHABLE, None),
                    PodB::new("default").node("n1").ready(0),
                    PodB::new("elsewhere").node("n2").ready(0),
                ],
                want: vec!["evict default", "evict short", "orphaned elsewhere"],
            },
            Case {
                name: "terminating pods are left to finish",
                nodes: vec![node("n1", unknown, &[(UNREACHABLE, 0)])],
                seen_ago: 10,
                pods: vec![PodB::new("going").node("n1").deleting()],
                want: vec![],
            },
            Case {
                name: "an untolerated NoExecute taint evicts at once",
                nodes: vec![node("n1", ready, &[("maintenance", 100)])],
                seen_ago: 0,
                pods: vec![PodB::new("p").node("n1").ready(0)],
                want: vec!["evict p"],
            },
            Case {
                name: "NotReady from the agent: not-ready taint",
                nodes: vec![node("n1", ("False", "KubeletNotReady"), &[])],
                seen_ago: 0,
                pods: vec![],
                want: vec!["taint n1 node.kubernetes.io/not-ready"],
            },
        ];
        for c in cases {
            let last_seen: HashMap<String, Timestamp> = c
                .nodes
                .iter()
                .map(|n| (util::name(&n.metadata).to_string(), t(100 - c.seen_ago)))
                .collect();
            let pods: Vec<_> = c.pods.into_iter().map(PodB::arc).collect();
            let got = plan(&Input {
                nodes: &c.nodes,
                last_seen: &last_seen,
                pods: &pods,
                now: t(100),
                grace: Duration::from_secs(4),
                default_toleration: Duration::from_secs(1),
            });
            assert_eq!(summary(&got), c.want, "{}", c.name);
        }
    }
}
