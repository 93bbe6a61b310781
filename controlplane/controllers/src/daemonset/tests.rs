use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{Node, NodeSpec, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::plan::*;
use crate::testutil::*;
use corral_api::rules::revision::{revision_data, revision_hash, CONTROLLER_REVISION_HASH_LABEL};

fn ds(image: &str) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("mi-app".into()),
            namespace: Some("default".into()),
            uid: Some("ds-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "mi-app")])),
                ..Default::default()
            },
            template: template(&[("app", "mi-app")], image),
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(10),
            ..Default::default()
        }),
        status: None,
    }
}

fn node(name: &str, labels_: &[(&str, &str)], taints: &[(&str, &str)]) -> Arc<Node> {
    Arc::new(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(labels_)),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .map(|(k, e)| Taint {
                        key: k.to_string(),
                        effect: e.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    })
}

/// The current revision of `d`, as the controller would have stored it.
fn revision(d: &DaemonSet, rev: i64) -> Arc<ControllerRevision> {
    let data = revision_data(&d.spec.as_ref().unwrap().template);
    let hash = revision_hash(&data, None);
    Arc::new(ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("mi-app-{hash}")),
            namespace: Some("default".into()),
            labels: Some(labels(&[(CONTROLLER_REVISION_HASH_LABEL, &hash)])),
            owner_references: Some(vec![owner("DaemonSet", "mi-app", "ds-uid")]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision: rev,
    })
}

fn hash_of(d: &DaemonSet) -> String {
    revision_hash(&revision_data(&d.spec.as_ref().unwrap().template), None)
}

fn daemon_pod(name: &str, node: &str, hash: &str) -> PodB {
    PodB::new(name)
        .labels(&[("app", "mi-app"), (CONTROLLER_REVISION_HASH_LABEL, hash)])
        .owned_by(owner("DaemonSet", "mi-app", "ds-uid"))
        .node(node)
}

/// ("create", node) / ("delete", pod) pairs, sorted.
fn summary(p: &Plan) -> Vec<(String, String)> {
    let mut v: Vec<_> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::CreatePod { node, .. } => Some(("create".to_string(), node.clone())),
            Action::DeletePod(p) => Some(("delete".to_string(), p.metadata.name.clone().unwrap())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn s(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn daemon_pods_follow_eligible_nodes() {
    let d = ds("v1");
    let h = hash_of(&d);
    let rev = vec![revision(&d, 1)];
    struct Case {
        name: &'static str,
        ds: DaemonSet,
        nodes: Vec<Arc<Node>>,
        pods: Vec<PodB>,
        want: Vec<(String, String)>,
    }
    let mut with_selector = ds("v1");
    with_selector
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .node_selector = Some(labels(&[("disk", "ssd")]));
    let mut tolerant = ds("v1");
    tolerant
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .tolerations = Some(vec![Toleration {
        key: Some("dedicated".into()),
        operator: Some("Exists".into()),
        ..Default::default()
    }]);
    let cases = vec![
        Case {
            name: "one pod per node",
            ds: d.clone(),
            nodes: vec![
                node("n1", &[], &[]),
                node("n2", &[], &[]),
                node("n3", &[], &[]),
            ],
            pods: vec![daemon_pod("a", "n1", &h)],
            want: s(&[("create", "n2"), ("create", "n3")]),
        },
        Case {
            name: "NoSchedule taint skips the node, unless tolerated",
            ds: d.clone(),
            nodes: vec![
                node("n1", &[], &[("dedicated", "NoSchedule")]),
                node("n2", &[], &[]),
            ],
            pods: vec![],
            want: s(&[("create", "n2")]),
        },
        Case {
            name: "tolerated taint",
            ds: tolerant,
            nodes: vec![node("n1", &[], &[("dedicated", "NoSchedule")])],
            pods: vec![],
            want: s(&[("create", "n1")]),
        },
        Case {
            name: "unreachable and not-ready nodes keep (and get) their daemon pods",
            ds: d.clone(),
            nodes: vec![node(
                "n1",
                &[],
                &[("node.kubernetes.io/unreachable", "NoExecute")],
            )],
            pods: vec![],
            want: s(&[("create", "n1")]),
        },
        Case {
            name: "node selector: a relabelled node loses its pod",
            ds: with_selector,
            nodes: vec![node("n1", &[("disk", "ssd")], &[]), node("n2", &[], &[])],
            pods: vec![daemon_pod("a", "n1", &h), daemon_pod("b", "n2", &h)],
            want: s(&[("delete", "b")]),
        },
        Case {
            name: "a new NoSchedule taint leaves the running pod alone",
            ds: d.clone(),
            nodes: vec![node("n1", &[], &[("dedicated", "NoSchedule")])],
            pods: vec![daemon_pod("a", "n1", &h)],
            want: vec![],
        },
        Case {
            name: "an untolerated NoExecute taint evicts it",
            ds: d.clone(),
            nodes: vec![node("n1", &[], &[("dedicated", "NoExecute")])],
            pods: vec![daemon_pod("a", "n1", &h)],
            want: s(&[("delete", "a")]),
        },
        Case {
            name: "duplicates: the oldest stays",
            ds: d.clone(),
            nodes: vec![node("n1", &[], &[])],
            pods: vec![
                daemon_pod("old", "n1", &h).created(0),
                daemon_pod("dup", "n1", &h).created(5),
            ],
            want: s(&[("delete", "dup")]),
        },
        Case {
            name: "a failed pod is deleted first, replaced on the next pass",
            ds: d.clone(),
            nodes: vec![node("n1", &[], &[])],
            pods: vec![daemon_pod("f", "n1", &h).phase("Failed")],
            want: s(&[("delete", "f")]),
        },
        Case {
            name: "a terminating pod does not block the replacement",
            ds: d.clone(),
            nodes: vec![node("n1", &[], &[])],
            pods: vec![daemon_pod("t", "n1", &h).deleting()],
            want: s(&[("create", "n1")]),
        },
        Case {
            name: "a removed node's unbound pod goes",
            ds: d.clone(),
            nodes: vec![],
            pods: vec![PodB(new_unbound("u", "gone", &h))],
            want: s(&[("delete", "u")]),
        },
    ];
    for c in cases {
        let pods: Vec<_> = c.pods.into_iter().map(PodB::arc).collect();
        let p = plan(&c.ds, &c.nodes, &pods, &rev, t(100)).unwrap();
        assert_eq!(summary(&p), c.want, "{}", c.name);
    }
}

fn new_unbound(name: &str, node: &str, hash: &str) -> k8s_openapi::api::core::v1::Pod {
    let d = ds("v1");
    let p = plan(
        &d,
        &[super::tests::node(node, &[], &[])],
        &[],
        &[revision(&d, 1)],
        t(0),
    )
    .unwrap();
    let Some(Action::CreatePod { pod, .. }) = p
        .actions
        .into_iter()
        .find(|a| matches!(a, Action::CreatePod { .. }))
    else {
        panic!()
    };
    let mut pod = *pod;
    pod.metadata.name = Some(name.into());
    pod.metadata.uid = Some(format!("uid-{name}"));
    pod.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.into());
    pod
}

#[test]
fn daemon_pods_are_pinned_by_affinity_and_tolerate_node_problems() {
    let d = ds("v1");
    let pod = new_unbound("x", "n7", &hash_of(&d));
    assert_eq!(target_node(&pod).as_deref(), Some("n7"));
    let spec = pod.spec.as_ref().unwrap();
    assert!(spec.node_name.is_none(), "the scheduler binds daemon pods");
    let keys: Vec<_> = spec
        .tolerations
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|t| t.key.clone())
        .collect();
    for k in [
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k}");
    }
    let l = pod.metadata.labels.as_ref().unwrap();
    assert_eq!(l[CONTROLLER_REVISION_HASH_LABEL], hash_of(&d));
    assert_eq!(l[TEMPLATE_GENERATION_LABEL], "1");
}

#[test]
fn revisions_are_created_and_bumped() {
    let d = ds("v1");
    let p = plan(&d, &[], &[], &[], t(0)).unwrap();
    let Action::CreateRevision(cr) = &p.actions[0] else {
        panic!("{:?}", p.actions)
    };
    assert_eq!(cr.revision, 1);
    assert_eq!(
        cr.metadata.name.as_deref(),
        Some(format!("mi-app-{}", hash_of(&d)).as_str())
    );
    // Back to an older template: its revision gets the next number.
    let v1 = revision(&d, 1);
    let v2 = revision(&ds("v2"), 2);
    let p = plan(&d, &[], &[], &[v1, v2], t(0)).unwrap();
    assert!(p
        .actions
        .iter()
        .any(|a| matches!(a, Action::UpdateRevision(r) if r.revision == 3)));
}

#[test]
fn rolling_update_respects_max_unavailable_and_surge() {
    let v1 = ds("v1");
    let mut v2 = ds("v2");
    v2.metadata.generation = Some(2);
    let (h1, h2) = (hash_of(&v1), hash_of(&v2));
    let revs = vec![revision(&v1, 1), revision(&v2, 2)];
    let nodes = vec![
        node("n1", &[], &[]),
        node("n2", &[], &[]),
        node("n3", &[], &[]),
    ];
    let old = |n: &str| daemon_pod(&format!("old-{n}"), n, &h1).ready(0).arc();
    // maxUnavailable 1: one old pod at a time.
    let p = plan(
        &v2,
        &nodes,
        &[old("n1"), old("n2"), old("n3")],
        &revs,
        t(100),
    )
    .unwrap();
    assert_eq!(summary(&p).len(), 1);
    assert_eq!(summary(&p)[0].0, "delete");
    // While a new pod is not available yet, nothing else goes.
    let new_n1 = daemon_pod("new-n1", "n1", &h2).phase("Running").arc();
    let p = plan(&v2, &nodes, &[new_n1, old("n2"), old("n3")], &revs, t(100)).unwrap();
    assert_eq!(summary(&p), vec![]);
    // An unavailable old pod is replaced regardless of the budget.
    let broken = daemon_pod("old-n3", "n3", &h1).phase("Running").arc();
    let new_n1 = daemon_pod("new-n1", "n1", &h2).phase("Running").arc();
    let p = plan(&v2, &nodes, &[new_n1, old("n2"), broken], &revs, t(100)).unwrap();
    assert_eq!(summary(&p), s(&[("delete", "old-n3")]));
    // OnDelete: nothing is replaced.
    let mut on_delete = v2.clone();
    on_delete.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("OnDelete".into()),
        rolling_update: None,
    });
    let p = plan(
        &on_delete,
        &nodes,
        &[old("n1"), old("n2"), old("n3")],
        &revs,
        t(100),
    )
    .unwrap();
    assert_eq!(summary(&p), vec![]);
    // maxSurge 1: a new pod starts beside an old one; the old goes once the new is available.
    let mut surge = v2.clone();
    surge.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::Int(0)),
            max_surge: Some(IntOrString::Int(1)),
        }),
    });
    let p = plan(
        &surge,
        &nodes,
        &[old("n1"), old("n2"), old("n3")],
        &revs,
        t(100),
    )
    .unwrap();
    assert_eq!(summary(&p).len(), 1);
    assert_eq!(summary(&p)[0].0, "create");
    let new_ready = daemon_pod("new-n1", "n1", &h2).ready(50).arc();
    let p = plan(
        &surge,
        &nodes,
        &[old("n1"), new_ready, old("n2"), old("n3")],
        &revs,
        t(100),
    )
    .unwrap();
    let got = summary(&p);
    assert!(
        got.contains(&("delete".to_string(), "old-n1".to_string())),
        "{got:?}"
    );
}

#[test]
fn status_counts_nodes() {
    let d = ds("v1");
    let h = hash_of(&d);
    let nodes = vec![
        node("n1", &[], &[]),
        node("n2", &[], &[]),
        node("n3", &[], &[("x", "NoSchedule")]),
    ];
    let pods = vec![
        daemon_pod("a", "n1", &h).ready(0).arc(),
        daemon_pod("b", "n2", "oldhash").arc(),
        daemon_pod("c", "n3", &h).ready(0).arc(),
    ];
    let st = plan(&d, &nodes, &pods, &[revision(&d, 1)], t(100))
        .unwrap()
        .status
        .unwrap();
    assert_eq!(st.desired_number_scheduled, 2);
    assert_eq!(st.current_number_scheduled, 2);
    assert_eq!(st.number_ready, 1);
    assert_eq!(st.number_available, Some(1));
    assert_eq!(st.updated_number_scheduled, Some(1));
    assert_eq!(st.number_misscheduled, 1);
    assert_eq!(st.number_unavailable, Some(1));
    assert_eq!(st.observed_generation, Some(1));
}
