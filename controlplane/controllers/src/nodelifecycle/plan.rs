//! The node lifecycle planner: a node whose Lease stops being renewed becomes Unknown and gets
//! the `node.kubernetes.io/unreachable` NoExecute taint (at a per-zone rate, none when every
//! zone is down); pods on NoExecute-tainted nodes are evicted once their toleration runs out;
//! pods bound to nodes that no longer exist are deleted. No I/O: heartbeats come in as "last
//! seen" instants on the controller's own clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::rules::taints;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::ratelimit::ZoneLimiters;
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
    pub rates: &'a EvictionRates,
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

/// Kubernetes' eviction rates (kube-controller-manager's flags of the same names).
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionRates {
    /// `--node-eviction-rate`: nodes per second whose pods are evicted in a healthy zone.
    pub rate: f64,
    /// `--secondary-node-eviction-rate`: the rate in a partially disrupted zone (0 when the
    /// zone has no more than `large_cluster_size_threshold` nodes).
    pub secondary_rate: f64,
    /// `--unhealthy-zone-threshold`: the share of not-ready nodes (at least 3 of them) that
    /// makes a zone partially disrupted.
    pub unhealthy_zone_threshold: f64,
    /// `--large-cluster-size-threshold`.
    pub large_cluster_size_threshold: usize,
}

impl Default for EvictionRates {
    fn default() -> Self {
        Self {
            rate: 0.1,
            secondary_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
        }
    }
}

/// A zone's health (Kubernetes' `ZoneState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// The node's zone key (Kubernetes' `GetZoneKey`: region and zone; "" without labels).
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).map_or("", String::as_str);
    let (region, zone) = (get(REGION_LABEL), get(ZONE_LABEL));
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\x00:{zone}")
    }
}

/// Kubernetes' `ComputeZoneState`.
pub fn zone_state(ready: usize, not_ready: usize, unhealthy_threshold: f64) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / (ready + not_ready) as f64 >= unhealthy_threshold
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// The zone's eviction rate for its state. A fully disrupted zone evicts at the normal rate
/// (its workloads belong in other zones); only when every zone is fully disrupted does
/// nothing evict, which [`plan`] decides.
pub fn zone_rate(state: ZoneState, zone_size: usize, rates: &EvictionRates) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => rates.rate,
        ZoneState::PartialDisruption if zone_size > rates.large_cluster_size_threshold => {
            rates.secondary_rate
        }
        ZoneState::PartialDisruption => 0.0,
    }
}

fn is_eviction_taint(key: &str) -> bool {
    key == UNREACHABLE || key == NOT_READY
}

fn no_execute(key: &str, now: Timestamp) -> Taint {
    Taint {
        key: key.into(),
        effect: "NoExecute".into(),
        time_added: Some(Time(now)),
        value: None,
    }
}

/// Plans one pass. Adding an unreachable/not-ready NoExecute taint (what evicts a node's pods)
/// takes a token from the node's zone in `limiters`, as Kubernetes' tainting queue does.
pub fn plan(input: &Input, limiters: &mut ZoneLimiters) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut node_by_name: HashMap<&str, &Arc<Node>> = HashMap::new();
    let mut effective: HashMap<&str, Vec<Taint>> = HashMap::new();
    let has = |taints: &[Taint], key: &str| {
        taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoExecute")
    };

    // Each node's health, and each zone's (ready, not ready) counts.
    let stale_of = |node: &Node| {
        let seen = input
            .last_seen
            .get(util::name(&node.metadata))
            .copied()
            .unwrap_or(input.now);
        since(input.now, seen) > input.grace
    };
    let mut zones: HashMap<String, (usize, usize)> = HashMap::new();
    for node in input.nodes {
        // Our own Unknown on a node that renews again is undone in this very pass.
        let healthy = !stale_of(node)
            && matches!(
                ready_status(node),
                Some(("True", _)) | Some(("Unknown", Some(STATUS_UNKNOWN)))
            );
        let counts = zones.entry(zone_key(node)).or_default();
        if healthy {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
    let mut all_fully_disrupted = !zones.is_empty();
    for (zone, (ready, not_ready)) in &zones {
        let state = zone_state(*ready, *not_ready, input.rates.unhealthy_zone_threshold);
        all_fully_disrupted &= state == ZoneState::FullDisruption;
        let rate = zone_rate(state, ready + not_ready, input.rates);
        limiters.set_rate(zone, rate, input.now);
    }
    limiters.retain(|z| zones.contains_key(z));
    if all_fully_disrupted {
        // Every node silent at once: the control plane's network, not the nodes, is likely
        // at fault. Kubernetes evicts nothing and lifts the eviction taints.
        for zone in zones.keys() {
            limiters.set_rate(zone, 0.0, input.now);
        }
    }
    // Adds the eviction taint `key` if the zone's limiter allows (no token is needed to
    // swap one eviction taint for the other).
    let mut may_taint = |node: &Node, node_taints: &[Taint], key: &str| {
        if all_fully_disrupted {
            return false;
        }
        let other = if key == UNREACHABLE {
            NOT_READY
        } else {
            UNREACHABLE
        };
        has(node_taints, other) || limiters.try_accept(&zone_key(node), input.now)
    };

    for node in input.nodes {
        let name = util::name(&node.metadata);
        node_by_name.insert(name, node);
        let stale = stale_of(node);
        let ready = ready_status(node);
        let mut node_taints = taints(node).to_vec();
        if stale {
            if ready.map(|r| r.0) != Some("Unknown") {
                actions.push(Action::MarkUnknown(node.clone()));
            }
            if !has(&node_taints, UNREACHABLE) && may_taint(node, &node_taints, UNREACHABLE) {
                let taint = no_execute(UNREACHABLE, input.now);
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
                if may_taint(node, &node_taints, NOT_READY) {
                    let taint = no_execute(NOT_READY, input.now);
                    actions.push(Action::AddTaint(node.clone(), taint.clone()));
                    node_taints.push(taint);
                }
            } else if !not_ready && has(&node_taints, NOT_READY) {
                actions.push(Action::RemoveTaint(node.clone(), NOT_READY.into()));
                node_taints.retain(|t| t.key != NOT_READY);
            }
        }
        if all_fully_disrupted {
            for key in [UNREACHABLE, NOT_READY] {
                if has(&node_taints, key) {
                    actions.push(Action::RemoveTaint(node.clone(), key.into()));
                }
            }
            node_taints.retain(|t| !is_eviction_taint(&t.key));
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

    /// A second node, Ready and renewing: with it the cluster is not entirely down, so the
    /// node under test is tainted (one silent node alone would be "every zone down").
    fn healthy() -> Arc<Node> {
        node("healthy", ("True", "KubeletReady"), &[])
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
                nodes: vec![healthy(), node("n1", ready, &[])],
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
                nodes: vec![healthy(), node("n1", unknown, &[(UNREACHABLE, 95)])],
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
                nodes: vec![healthy(), node("n1", unknown, &[(UNREACHABLE, 0)])],
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
                nodes: vec![healthy(), node("n1", ("False", "KubeletNotReady"), &[])],
                seen_ago: 0,
                pods: vec![],
                want: vec!["taint n1 node.kubernetes.io/not-ready"],
            },
        ];
        for c in cases {
            // `seen_ago` is for the nodes under test; the "healthy" node renews all along.
            let last_seen: HashMap<String, Timestamp> = c
                .nodes
                .iter()
                .map(|n| {
                    let name = util::name(&n.metadata).to_string();
                    let ago = if name == "healthy" { 0 } else { c.seen_ago };
                    (name, t(100 - ago))
                })
                .collect();
            let pods: Vec<_> = c.pods.into_iter().map(PodB::arc).collect();
            let got = plan(
                &Input {
                    nodes: &c.nodes,
                    last_seen: &last_seen,
                    pods: &pods,
                    now: t(100),
                    grace: Duration::from_secs(4),
                    default_toleration: Duration::from_secs(1),
                    rates: &EvictionRates::default(),
                },
                &mut ZoneLimiters::new(),
            );
            assert_eq!(summary(&got), c.want, "{}", c.name);
        }
    }
}
