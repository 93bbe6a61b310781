use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, DeploymentStrategy,
    ReplicaSet, ReplicaSetSpec, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::plan::*;
use crate::testutil::*;
use corral_api::rules::revision::POD_TEMPLATE_HASH_LABEL;

fn deploy(replicas: i32, image: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("mi-deploy".into()),
            namespace: Some("default".into()),
            uid: Some("d-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "mi-deploy")])),
                ..Default::default()
            },
            template: template(&[("app", "mi-deploy")], image),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::String("25%".into())),
                }),
            }),
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: None,
    }
}

fn recreate(mut d: Deployment) -> Deployment {
    d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    d
}

/// A ReplicaSet of `d` for `image` (hash as the planner computes it), created at `created`.
fn rs_for(
    d: &Deployment,
    image: &str,
    replicas: i32,
    available: i32,
    created: i64,
    revision: i64,
) -> Arc<ReplicaSet> {
    let mut dd = d.clone();
    dd.spec.as_mut().unwrap().template = template(&[("app", "mi-deploy")], image);
    let (name, hash) = new_replica_set_name(&dd);
    let mut t = dd.spec.unwrap().template;
    t.metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    let max = replicas_plus_surge(d);
    let annotations: BTreeMap<String, String> = [
        (REVISION.to_string(), revision.to_string()),
        (
            DESIRED_REPLICAS.to_string(),
            d.spec.as_ref().unwrap().replicas.unwrap().to_string(),
        ),
        (MAX_REPLICAS.to_string(), max.to_string()),
    ]
    .into();
    Arc::new(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            labels: t.metadata.as_ref().unwrap().labels.clone(),
            owner_references: Some(vec![owner("Deployment", "mi-deploy", "d-uid")]),
            creation_timestamp: Some(Time(t_(created))),
            annotations: Some(annotations),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[
                    ("app", "mi-deploy"),
                    (POD_TEMPLATE_HASH_LABEL, &hash),
                ])),
                ..Default::default()
            },
            template: Some(t),
            min_ready_seconds: None,
        }),
        status: Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            observed_generation: Some(1),
            ..Default::default()
        }),
    })
}

fn t_(s: i64) -> jiff::Timestamp {
    t(s)
}

fn replicas_plus_surge(d: &Deployment) -> i32 {
    d.spec.as_ref().unwrap().replicas.unwrap() + fenceposts(d).unwrap().0
}

/// ("create" | "scale" | "delete", rs name, replicas)
fn writes(p: &Plan) -> Vec<(String, String, i32)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateReplicaSet(rs) => Some(("create", rs.as_ref())),
            Action::UpdateReplicaSet {
                replica_set,
                scaled_from: Some(_),
            } => Some(("scale", replica_set.as_ref())),
            Action::DeleteReplicaSet(rs) => Some(("delete", rs.as_ref())),
            _ => None,
        })
        .map(|(k, rs)| {
            (
                k.to_string(),
                rs.metadata.name.clone().unwrap(),
                rs.spec.as_ref().unwrap().replicas.unwrap(),
            )
        })
        .collect()
}

fn name_of(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap()
}

#[test]
fn a_new_deployment_creates_its_replica_set_named_after_the_template_hash() {
    let d = deploy(3, "v0.2.0");
    let p = plan(&d, &[], &[], t(0)).unwrap();
    let (name, hash) = new_replica_set_name(&d);
    assert!(name.starts_with("mi-deploy-") && name.len() == "mi-deploy-".len() + hash.len());
    assert!(hash.chars().all(|c| "456789bcdf".contains(c)), "{hash}");
    assert_eq!(writes(&p), vec![("create".into(), name.clone(), 3)]);
    let Action::CreateReplicaSet(rs) = &p.actions[0] else {
        panic!()
    };
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL],
        hash
    );
    assert_eq!(
        spec.template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap()[POD_TEMPLATE_HASH_LABEL],
        hash
    );
    let a = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        (
            a[REVISION].as_str(),
            a[DESIRED_REPLICAS].as_str(),
            a[MAX_REPLICAS].as_str()
        ),
        ("1", "3", "4")
    );
    assert!(p
        .actions
        .iter()
        .any(|a| matches!(a, Action::UpdateDeployment(d)
        if d.metadata.annotations.as_ref().unwrap()[REVISION] == "1")));
    let st = p.status.unwrap();
    let conds = st.conditions.unwrap();
    let prog = conds.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(prog.reason.as_deref(), Some("NewReplicaSetCreated"));
}

#[test]
fn rolling_update_steps_respect_surge_and_unavailable() {
    // replicas 4, 25%/25%: surge 1, unavailable 1; old RS created at 0, new at 10.
    let d = deploy(4, "v0.3.0");
    let old = |replicas, avail| rs_for(&d, "v0.2.0", replicas, avail, 0, 1);
    let new = |replicas, avail| rs_for(&d, "v0.3.0", replicas, avail, 10, 2);
    let (on, nn) = (name_of(&old(0, 0)), name_of(&new(0, 0)));
    type Case = (
        &'static str,
        Vec<Arc<ReplicaSet>>,
        Vec<(String, String, i32)>,
    );
    let cases: Vec<Case> = vec![
        (
            "template change creates the new RS at the surge and retires one old pod",
            vec![old(4, 4)],
            vec![
                ("scale".into(), on.clone(), 3),
                ("create".into(), nn.clone(), 1),
            ],
        ),
        (
            "new RS cannot grow past max surge, old scales down by maxUnavailable",
            vec![old(4, 4), new(1, 0)],
            vec![("scale".into(), on.clone(), 3)],
        ),
        (
            "new grows as old shrinks",
            vec![old(3, 3), new(1, 0)],
            vec![("scale".into(), nn.clone(), 2)],
        ),
        (
            "nothing while the new pods are unavailable",
            vec![old(3, 3), new(2, 0)],
            vec![],
        ),
        (
            "old shrinks as new becomes available",
            vec![old(3, 3), new(2, 2)],
            vec![("scale".into(), on.clone(), 1)],
        ),
        (
            "unhealthy old pods go first regardless",
            vec![old(3, 0), new(2, 2)],
            vec![("scale".into(), on.clone(), 1)],
        ),
        (
            "finished rollout keeps the old RS at zero",
            vec![old(0, 0), new(4, 4)],
            vec![],
        ),
    ];
    for (name, rss, want) in cases {
        let p = plan(&d, &rss, &[], t(100)).unwrap();
        assert_eq!(writes(&p), want, "{name}");
    }
}

#[test]
fn status_and_conditions_follow_the_replica_sets() {
    let d = deploy(4, "v0.3.0");
    let rss = vec![
        rs_for(&d, "v0.2.0", 0, 0, 0, 1),
        rs_for(&d, "v0.3.0", 4, 4, 10, 2),
    ];
    let st = plan(&d, &rss, &[], t(100)).unwrap().status.unwrap();
    assert_eq!(
        (
            st.replicas,
            st.updated_replicas,
            st.ready_replicas,
            st.available_replicas,
            st.unavailable_replicas,
            st.observed_generation
        ),
        (Some(4), Some(4), Some(4), Some(4), Some(0), Some(1))
    );
    let conds = st.conditions.unwrap();
    let get = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(get("Available").status, "True");
    assert_eq!(
        get("Progressing").reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        get("Progressing").message.as_deref(),
        Some(
            format!(
                "ReplicaSet \"{}\" has successfully progressed.",
                name_of(&rss[1])
            )
            .as_str()
        )
    );
}

#[test]
fn progress_deadline_exceeded_without_progress() {
    let mut d = deploy(2, "v0.3.0");
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(10);
    let rss = vec![rs_for(&d, "v0.3.0", 2, 0, 0, 1)];
    d.status = Some(DeploymentStatus {
        replicas: Some(2),
        updated_replicas: Some(2),
        ready_replicas: Some(0),
        available_replicas: Some(0),
        unavailable_replicas: Some(2),
        observed_generation: Some(1),
        conditions: Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "True".into(),
            reason: Some("ReplicaSetUpdated".into()),
            last_update_time: Some(Time(t(0))),
            last_transition_time: Some(Time(t(0))),
            message: None,
        }]),
        ..Default::default()
    });
    // Before the deadline: a requeue at the deadline.
    let early = plan(&d, &rss, &[], t(5)).unwrap();
    assert_eq!(early.requeue_after, Some(std::time::Duration::from_secs(6)));
    let p = plan(&d, &rss, &[], t(100)).unwrap();
    let conds = p.status.unwrap().conditions.unwrap();
    let prog = conds.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(
        (prog.status.as_str(), prog.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
    let avail = conds.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!(avail.reason.as_deref(), Some("MinimumReplicasUnavailable"));
}

#[test]
fn recreate_scales_old_to_zero_and_waits_for_old_pods_to_go() {
    let d = recreate(deploy(3, "v0.3.0"));
    let old_up = rs_for(&d, "v0.2.0", 3, 3, 0, 1);
    let p = plan(&d, std::slice::from_ref(&old_up), &[], t(10)).unwrap();
    assert_eq!(writes(&p), vec![("scale".into(), name_of(&old_up), 0)]);

    // Old RS at zero but one of its pods still terminating: no new RS yet.
    let old_down = rs_for(&d, "v0.2.0", 0, 0, 0, 1);
    let lingering = PodB::new("old-pod")
        .labels(&[("app", "mi-deploy")])
        .owned_by(owner(
            "ReplicaSet",
            &name_of(&old_down),
            &format!("uid-{}", name_of(&old_down)),
        ))
        .ready(0)
        .deleting()
        .arc();
    let p = plan(&d, std::slice::from_ref(&old_down), &[lingering], t(10)).unwrap();
    assert_eq!(writes(&p), vec![]);

    // All old pods gone: the new RS comes up at full size.
    let p = plan(&d, &[old_down], &[], t(10)).unwrap();
    let (new_name, _) = new_replica_set_name(&d);
    assert_eq!(writes(&p), vec![("create".into(), new_name, 3)]);
}

#[test]
fn rollover_mid_rollout_scales_down_the_unhealthy_intermediate_first() {
    let d = deploy(4, "v3");
    let a = rs_for(&d, "v1", 3, 3, 0, 1);
    let b = rs_for(&d, "v2", 2, 0, 10, 2);
    let p = plan(&d, &[a.clone(), b.clone()], &[], t(100)).unwrap();
    let (cn, _) = new_replica_set_name(&d);
    // Surge is used up (5 of 5): C starts at 0 and B's unavailable pods go at once.
    assert_eq!(
        writes(&p),
        vec![
            ("scale".into(), name_of(&b), 0),
            ("create".into(), cn.clone(), 0)
        ]
    );
    let created = p.actions.iter().find_map(|a| match a {
        Action::CreateReplicaSet(c) => Some(c.clone()),
        _ => None,
    });
    assert_eq!(
        created.unwrap().metadata.annotations.as_ref().unwrap()[REVISION],
        "3"
    );

    let b0 = rs_for(&d, "v2", 0, 0, 10, 2);
    let c = rs_for(&d, "v3", 0, 0, 20, 3);
    let p = plan(&d, &[a, b0, c], &[], t(100)).unwrap();
    assert_eq!(writes(&p), vec![("scale".into(), cn, 2)]);
}

#[test]
fn proportional_scaling_mid_rollout_splits_by_share() {
    // 10 replicas (max 13) rolling: old 8, new 5. Scaled to 15 (max 19): +6 split 4/2.
    let d10 = deploy(10, "v2");
    let old = rs_for(&d10, "v1", 8, 8, 0, 1);
    let new = rs_for(&d10, "v2", 5, 0, 10, 2);
    let mut d15 = d10.clone();
    d15.spec.as_mut().unwrap().replicas = Some(15);
    let p = plan(&d15, &[old.clone(), new.clone()], &[], t(100)).unwrap();
    let mut got = writes(&p);
    got.sort();
    let mut want = vec![
        ("scale".to_string(), name_of(&old), 12),
        ("scale".to_string(), name_of(&new), 7),
    ];
    want.sort();
    assert_eq!(got, want);
    for a in &p.actions {
        if let Action::UpdateReplicaSet { replica_set, .. } = a {
            let an = replica_set.metadata.annotations.as_ref().unwrap();
            assert_eq!(
                (an[DESIRED_REPLICAS].as_str(), an[MAX_REPLICAS].as_str()),
                ("15", "19")
            );
        }
    }
}

#[test]
fn revision_history_limit_zero_deletes_old_replica_sets_once_empty() {
    let mut d = deploy(2, "v2");
    d.spec.as_mut().unwrap().revision_history_limit = Some(0);
    let old = rs_for(&d, "v1", 0, 0, 0, 1);
    let new = rs_for(&d, "v2", 2, 2, 10, 2);
    let p = plan(&d, &[old.clone(), new.clone()], &[], t(100)).unwrap();
    assert_eq!(writes(&p), vec![("delete".into(), name_of(&old), 0)]);
    // Not while it still has pods.
    let busy = rs_for(&d, "v1", 1, 1, 0, 1);
    let p = plan(&d, &[busy, new], &[], t(100)).unwrap();
    assert!(!writes(&p).iter().any(|w| w.0 == "delete"));
}

#[test]
fn paused_deployment_does_not_roll_out_but_scales() {
    let mut d = deploy(3, "v2");
    d.spec.as_mut().unwrap().paused = Some(true);
    let old = rs_for(&deploy(3, "v2"), "v1", 3, 3, 0, 1);
    let p = plan(&d, std::slice::from_ref(&old), &[], t(100)).unwrap();
    assert!(writes(&p).is_empty());
    let conds = p.status.unwrap().conditions.unwrap();
    assert!(conds
        .iter()
        .any(|c| c.reason.as_deref() == Some("DeploymentPaused")));
    d.spec.as_mut().unwrap().replicas = Some(5);
    let p = plan(&d, std::slice::from_ref(&old), &[], t(100)).unwrap();
    assert_eq!(writes(&p), vec![("scale".into(), name_of(&old), 5)]);
}

#[test]
fn rollback_reuses_the_old_replica_set_with_a_new_revision() {
    // The template went back to v1: RS v1 becomes the new one and gets revision 3.
    let d = deploy(2, "v1");
    let v1 = rs_for(&d, "v1", 0, 0, 0, 1);
    let v2 = rs_for(&d, "v2", 2, 2, 10, 2);
    let p = plan(&d, &[v1.clone(), v2], &[], t(100)).unwrap();
    let upd = p
        .actions
        .iter()
        .find_map(|a| match a {
            Action::UpdateReplicaSet { replica_set, .. }
                if name_of(replica_set) == name_of(&v1) =>
            {
                Some(replica_set.clone())
            }
            _ => None,
        })
        .unwrap();
    let a = upd.metadata.annotations.as_ref().unwrap();
    assert_eq!(a[REVISION], "3");
    assert_eq!(a[REVISION_HISTORY], "1");
    assert_eq!(upd.spec.as_ref().unwrap().replicas, Some(1));
}
