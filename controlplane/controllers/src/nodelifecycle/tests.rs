//! Table tests of eviction rate limiting through the planner: zone states, rates by state,
//! and which nodes get an eviction taint over a sequence of passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::plan::*;
use super::ratelimit::ZoneLimiters;
use crate::testutil::{t, PodB};
use crate::util;

#[test]
fn zone_states_and_rates_follow_kubernetes() {
    let rates = EvictionRates::default();
    // (ready, not ready, state, rate)
    let cases = [
        (3, 0, ZoneState::Normal, 0.1),
        (2, 1, ZoneState::Normal, 0.1),
        (1, 2, ZoneState::Normal, 0.1),
        (3, 3, ZoneState::Normal, 0.1),
        (2, 3, ZoneState::PartialDisruption, 0.0),
        (20, 31, ZoneState::PartialDisruption, 0.01),
        (0, 1, ZoneState::FullDisruption, 0.1),
        (0, 60, ZoneState::FullDisruption, 0.1),
    ];
    for (ready, not_ready, state, rate) in cases {
        let got = zone_state(ready, not_ready, rates.unhealthy_zone_threshold);
        assert_eq!(got, state, "{ready} ready, {not_ready} not ready");
        assert_eq!(
            zone_rate(got, ready + not_ready, &rates),
            rate,
            "{ready} ready, {not_ready} not ready"
        );
    }
}

fn node(name: &str, zone: &str, taint_keys: &[&str]) -> Arc<Node> {
    Arc::new(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: (!zone.is_empty()).then(|| {
                [(ZONE_LABEL.to_string(), zone.to_string())]
                    .into_iter()
                    .collect()
            }),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(
                taint_keys
                    .iter()
                    .map(|k| Taint {
                        key: k.to_string(),
                        effect: "NoExecute".into(),
                        time_added: Some(Time(t(0))),
                        value: None,
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

/// One pass: `silent` nodes last renewed at t(0), the others at `at`.
fn pass(
    nodes: &[Arc<Node>],
    silent: &[&str],
    at: i64,
    limiters: &mut ZoneLimiters,
    pods: &[PodB],
) -> Vec<String> {
    let last_seen: HashMap<String, Timestamp> = nodes
        .iter()
        .map(|n| {
            let name = util::name(&n.metadata);
            let seen = if silent.contains(&name) { t(0) } else { t(at) };
            (name.to_string(), seen)
        })
        .collect();
    let pods: Vec<_> = pods.iter().cloned().map(PodB::arc).collect();
    let actions = plan(
        &Input {
            nodes,
            last_seen: &last_seen,
            pods: &pods,
            now: t(at),
            grace: Duration::from_secs(4),
            default_toleration: Duration::from_secs(1),
            rates: &EvictionRates::default(),
        },
        limiters,
    );
    let mut out: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::AddTaint(n, t) => Some(format!("taint {} {}", util::name(&n.metadata), t.key)),
            Action::RemoveTaint(n, k) => Some(format!("untaint {} {k}", util::name(&n.metadata))),
            Action::Evict(p, _) => Some(format!("evict {}", util::name(&p.metadata))),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

#[test]
fn evictions_are_rate_limited_per_zone_and_stop_when_every_zone_is_down() {
    struct Step {
        at: i64,
        silent: &'static [&'static str],
        want: &'static [&'static str],
    }
    struct Case {
        name: &'static str,
        nodes: Vec<Arc<Node>>,
        pods: Vec<PodB>,
        steps: Vec<Step>,
    }
    let cases = vec![
        Case {
            name: "two of three nodes silent: one tainted at once, the other 10 s later",
            nodes: vec![node("a", "", &[]), node("b", "", &[]), node("c", "", &[])],
            pods: vec![],
            steps: vec![
                Step {
                    at: 100,
                    silent: &["a", "b"],
                    want: &["taint a node.kubernetes.io/unreachable"],
                },
                Step {
                    at: 105,
                    silent: &["a", "b"],
                    want: &[],
                },
                Step {
                    at: 110,
                    silent: &["a", "b"],
                    want: &["taint b node.kubernetes.io/unreachable"],
                },
            ],
        },
        Case {
            name: "each zone has its own bucket",
            nodes: vec![
                node("a1", "a", &[]),
                node("a2", "a", &[]),
                node("b1", "b", &[]),
                node("b2", "b", &[]),
            ],
            pods: vec![],
            steps: vec![Step {
                at: 100,
                silent: &["a1", "b1"],
                want: &[
                    "taint a1 node.kubernetes.io/unreachable",
                    "taint b1 node.kubernetes.io/unreachable",
                ],
            }],
        },
        Case {
            name: "a partially disrupted small zone evicts nothing",
            nodes: vec![
                node("a", "", &[]),
                node("b", "", &[]),
                node("c", "", &[]),
                node("d", "", &[]),
                node("e", "", &[]),
            ],
            pods: vec![],
            steps: vec![Step {
                at: 100,
                silent: &["a", "b", "c"],
                want: &[],
            }],
        },
        Case {
            name: "a fully disrupted zone evicts at the normal rate while another zone is up",
            nodes: vec![
                node("a1", "a", &[]),
                node("a2", "a", &[]),
                node("b1", "b", &[]),
            ],
            pods: vec![],
            steps: vec![
                Step {
                    at: 100,
                    silent: &["a1", "a2"],
                    want: &["taint a1 node.kubernetes.io/unreachable"],
                },
                Step {
                    at: 110,
                    silent: &["a1", "a2"],
                    want: &["taint a2 node.kubernetes.io/unreachable"],
                },
            ],
        },
        Case {
            name: "every zone down: no taint, eviction taints lifted, no pod evicted",
            nodes: vec![node("a1", "a", &[UNREACHABLE]), node("b1", "b", &[])],
            pods: vec![PodB::new("p").node("a1").ready(0)],
            steps: vec![Step {
                at: 100,
                silent: &["a1", "b1"],
                want: &["untaint a1 node.kubernetes.io/unreachable"],
            }],
        },
        Case {
            name: "swapping not-ready for unreachable takes no token",
            nodes: vec![
                node("a", "", &[]),
                node("b", "", &[NOT_READY]),
                node("c", "", &[]),
            ],
            pods: vec![],
            steps: vec![Step {
                at: 100,
                silent: &["a", "b"],
                want: &[
                    "taint a node.kubernetes.io/unreachable",
                    "taint b node.kubernetes.io/unreachable",
                ],
            }],
        },
    ];
    for c in cases {
        let mut limiters = ZoneLimiters::new();
        let mut nodes = c.nodes.clone();
        for (i, step) in c.steps.iter().enumerate() {
            let got = pass(&nodes, step.silent, step.at, &mut limiters, &c.pods);
            assert_eq!(got, step.want, "{}: step {i}", c.name);
            // The taints this pass added are on the nodes for the next.
            for line in &got {
                if let Some(rest) = line.strip_prefix("taint ") {
                    let (name, key) = rest.split_once(' ').expect("taint line");
                    let n = nodes
                        .iter_mut()
                        .find(|n| util::name(&n.metadata) == name)
                        .expect("node");
                    let mut updated = (**n).clone();
                    updated
                        .spec
                        .get_or_insert_with(Default::default)
                        .taints
                        .get_or_insert_with(Vec::new)
                        .push(Taint {
                            key: key.into(),
                            effect: "NoExecute".into(),
                            time_added: Some(Time(t(step.at))),
                            value: None,
                        });
                    *n = Arc::new(updated);
                }
            }
        }
    }
}
