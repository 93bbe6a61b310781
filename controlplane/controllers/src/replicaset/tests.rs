use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::plan::{plan, pods_to_delete, Action};
use crate::testutil::*;

fn rs(replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("mi-app".into()),
            namespace: Some("default".into()),
            uid: Some("rs-uid".into()),
            generation: Some(2),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "mi-app")])),
                ..Default::default()
            },
            template: Some(template(&[("app", "mi-app")], "fedek3/workshop-uns:v0.2.0")),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

fn mine(name: &str) -> PodB {
    PodB::new(name)
        .labels(&[("app", "mi-app")])
        .owned_by(owner("ReplicaSet", "mi-app", "rs-uid"))
}

/// Summary of a plan: ("create"|"delete"|"adopt"|"release", pod name or "").
fn summary(actions: &[Action]) -> Vec<(String, String)> {
    actions
        .iter()
        .map(|a| match a {
            Action::Create(p) => (
                "create".into(),
                p.metadata.generate_name.clone().unwrap_or_default(),
            ),
            Action::Delete(p) => ("delete".into(), p.metadata.name.clone().unwrap()),
            Action::Adopt(p) => ("adopt".into(), p.metadata.name.clone().unwrap()),
            Action::Release(p) => ("release".into(), p.metadata.name.clone().unwrap()),
        })
        .collect()
}

fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn replica_set_plans_match_kubernetes() {
    struct Case {
        name: &'static str,
        replicas: i32,
        pods: Vec<PodB>,
        want: Vec<(String, String)>,
    }
    let cases = vec![
        Case {
            name: "creates the missing replicas with generated names",
            replicas: 3,
            pods: vec![mine("a").ready(0)],
            want: s(&[("create", "mi-app-"), ("create", "mi-app-")]),
        },
        Case {
            name: "nothing to do at the desired count",
            replicas: 1,
            pods: vec![mine("a").ready(0)],
            want: vec![],
        },
        Case {
            name: "a failed pod is replaced (and not counted)",
            replicas: 1,
            pods: vec![mine("a").phase("Failed")],
            want: s(&[("create", "mi-app-")]),
        },
        Case {
            name: "a terminating pod is replaced",
            replicas: 1,
            pods: vec![mine("a").ready(0).deleting()],
            want: s(&[("create", "mi-app-")]),
        },
        Case {
            name: "adopts a matching orphan instead of creating",
            replicas: 1,
            pods: vec![PodB::new("orphan").labels(&[("app", "mi-app")])],
            want: s(&[("adopt", "orphan")]),
        },
        Case {
            name: "does not adopt pods of another controller or that do not match",
            replicas: 1,
            pods: vec![
                PodB::new("theirs")
                    .labels(&[("app", "mi-app")])
                    .owned_by(owner("ReplicaSet", "x", "other")),
                PodB::new("other-app").labels(&[("app", "x")]),
            ],
            want: s(&[("create", "mi-app-")]),
        },
        Case {
            name: "releases a pod whose labels stopped matching and replaces it",
            replicas: 1,
            pods: vec![mine("a").labels(&[("app", "debug")]).ready(0)],
            want: s(&[("release", "a"), ("create", "mi-app-")]),
        },
        Case {
            name: "scale down removes unscheduled, then pending, then not ready pods",
            replicas: 1,
            pods: vec![
                mine("ready").node("n1").ready(0),
                mine("unscheduled"),
                mine("pending").node("n1"),
                mine("running-not-ready").node("n2").phase("Running"),
            ],
            want: s(&[
                ("delete", "unscheduled"),
                ("delete", "pending"),
                ("delete", "running-not-ready"),
            ]),
        },
        Case {
            name: "among ready pods the newer one goes first",
            replicas: 1,
            pods: vec![
                mine("old").node("n1").created(0).ready(10),
                mine("new").node("n2").created(50).ready(10),
            ],
            want: s(&[("delete", "new")]),
        },
        Case {
            name: "among ready pods the more recently ready goes first",
            replicas: 1,
            pods: vec![
                mine("long").node("n1").ready(10),
                mine("recent").node("n2").ready(100),
            ],
            want: s(&[("delete", "recent")]),
        },
    ];
    for c in cases {
        let pods: Vec<_> = c.pods.into_iter().map(PodB::arc).collect();
        let p = plan(&rs(c.replicas), &pods, t(200)).unwrap();
        assert_eq!(summary(&p.actions), c.want, "{}", c.name);
    }
}

#[test]
fn created_pods_carry_the_template_and_a_controller_reference() {
    let p = plan(&rs(1), &[], t(0)).unwrap();
    let Action::Create(pod) = &p.actions[0] else {
        panic!("expected a create")
    };
    let o = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((o.kind.as_str(), o.uid.as_str()), ("ReplicaSet", "rs-uid"));
    assert_eq!(o.controller, Some(true));
    assert_eq!(pod.metadata.labels, Some(labels(&[("app", "mi-app")])));
    assert_eq!(
        pod.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("fedek3/workshop-uns:v0.2.0")
    );
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
}

#[test]
fn a_template_change_does_not_touch_existing_pods() {
    let mut r = rs(2);
    r.spec.as_mut().unwrap().template = Some(template(&[("app", "mi-app")], "v0.3.0"));
    let pods = vec![mine("a").ready(0).arc(), mine("b").ready(0).arc()];
    assert!(plan(&r, &pods, t(0)).unwrap().actions.is_empty());
}

#[test]
fn status_counts_ready_available_and_labeled_pods() {
    let mut r = rs(3);
    r.spec.as_mut().unwrap().min_ready_seconds = Some(30);
    let pods = vec![
        mine("avail").ready(0).arc(),
        mine("warming").ready(190).arc(),
        mine("pending").arc(),
        mine("gone").phase("Failed").arc(),
    ];
    let p = plan(&r, &pods, t(200)).unwrap();
    let st = p.status.unwrap();
    assert_eq!(st.replicas, 3);
    assert_eq!(st.ready_replicas, Some(2));
    assert_eq!(st.available_replicas, Some(1));
    assert_eq!(st.fully_labeled_replicas, Some(3));
    assert_eq!(st.observed_generation, Some(2));
    // "warming" becomes available 20 s later: reconcile then.
    assert_eq!(p.requeue_after, Some(std::time::Duration::from_secs(20)));
    // An unchanged status is not written again.
    r.status = Some(st);
    assert_eq!(plan(&r, &pods, t(200)).unwrap().status, None);
}

#[test]
fn a_replica_set_being_deleted_neither_creates_nor_adopts() {
    let mut r = rs(3);
    r.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(0)));
    let pods = vec![PodB::new("orphan").labels(&[("app", "mi-app")]).arc()];
    assert!(plan(&r, &pods, t(0)).unwrap().actions.is_empty());
}

#[test]
fn pods_on_crowded_nodes_go_first_among_equals() {
    let pods: Vec<Arc<_>> = vec![
        mine("alone").node("n1").ready(0).arc(),
        mine("crowd-1").node("n2").ready(0).arc(),
        mine("crowd-2").node("n2").ready(0).arc(),
    ];
    let got: Vec<_> = pods_to_delete(&pods, 1)
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(got, vec!["crowd-1"]);
}
