use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec,
    StatefulSetStatus, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;

use super::plan::*;
use crate::testutil::*;
use corral_api::rules::revision::{revision_data, revision_hash, CONTROLLER_REVISION_HASH_LABEL};

fn sts(replicas: i32, image: &str, parallel: bool) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("db".into()),
            namespace: Some("default".into()),
            uid: Some("sts-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "db")])),
                ..Default::default()
            },
            service_name: Some("db".into()),
            template: template(&[("app", "db")], image),
            pod_management_policy: Some(if parallel { "Parallel" } else { "OrderedReady" }.into()),
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    ..Default::default()
                },
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn hash(s: &StatefulSet) -> String {
    revision_hash(&revision_data(&s.spec.as_ref().unwrap().template), None)
}

fn revision(s: &StatefulSet, n: i64) -> Arc<ControllerRevision> {
    let h = hash(s);
    Arc::new(ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("db-{h}")),
            labels: Some(labels(&[(CONTROLLER_REVISION_HASH_LABEL, &h)])),
            owner_references: Some(vec![owner("StatefulSet", "db", "sts-uid")]),
            ..Default::default()
        },
        data: Some(RawExtension(revision_data(
            &s.spec.as_ref().unwrap().template,
        ))),
        revision: n,
    })
}

fn member(ord: usize, rev: &str) -> PodB {
    PodB::new(&format!("db-{ord}"))
        .labels(&[("app", "db"), (CONTROLLER_REVISION_HASH_LABEL, rev)])
        .owned_by(owner("StatefulSet", "db", "sts-uid"))
        .node("n1")
}

fn summary(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreatePod(p) => Some(format!("create {}", p.metadata.name.as_deref().unwrap())),
            Action::DeletePod(p) => Some(format!("delete {}", p.metadata.name.as_deref().unwrap())),
            Action::CreateClaim(c) => {
                Some(format!("claim {}", c.metadata.name.as_deref().unwrap()))
            }
            Action::CreateRevision(_) => None,
        })
        .collect()
}

#[test]
fn stateful_set_plans_follow_ordinals() {
    let s3 = sts(3, "v1", false);
    let h = hash(&s3);
    let revs = vec![revision(&s3, 1)];
    struct Case {
        name: &'static str,
        set: StatefulSet,
        pods: Vec<PodB>,
        want: Vec<&'static str>,
    }
    let cases = vec![
        Case {
            name: "OrderedReady starts with ordinal 0 and its claim",
            set: s3.clone(),
            pods: vec![],
            want: vec!["claim data-db-0", "create db-0"],
        },
        Case {
            name: "waits for 0 to be ready",
            set: s3.clone(),
            pods: vec![member(0, &h).phase("Running")],
            want: vec![],
        },
        Case {
            name: "then 1",
            set: s3.clone(),
            pods: vec![member(0, &h).ready(0)],
            want: vec!["claim data-db-1", "create db-1"],
        },
        Case {
            name: "Parallel creates all at once",
            set: sts(3, "v1", true),
            pods: vec![],
            want: vec![
                "claim data-db-0",
                "create db-0",
                "claim data-db-1",
                "create db-1",
                "claim data-db-2",
                "create db-2",
            ],
        },
        Case {
            name: "a terminating pod's name is not reused until it is gone",
            set: s3.clone(),
            pods: vec![member(0, &h).ready(0).deleting()],
            want: vec![],
        },
        Case {
            name: "scale down removes the highest ordinal first, one at a time",
            set: sts(1, "v1", false),
            pods: vec![
                member(0, &h).ready(0),
                member(1, &h).ready(0),
                member(2, &h).ready(0),
            ],
            want: vec!["delete db-2"],
        },
        Case {
            name: "a failed pod is deleted to be recreated under its name",
            set: s3.clone(),
            pods: vec![member(0, &h).phase("Failed")],
            want: vec!["delete db-0"],
        },
    ];
    for c in cases {
        let pods: Vec<_> = c.pods.into_iter().map(PodB::arc).collect();
        let claims: Vec<Arc<PersistentVolumeClaim>> = Vec::new();
        let p = plan(&c.set, &pods, &claims, &revs, t(100)).unwrap();
        assert_eq!(summary(&p), c.want, "{}", c.name);
    }
}

#[test]
fn pods_get_stable_identity_and_their_claims() {
    let s = sts(1, "v1", false);
    let p = plan(&s, &[], &[], &[revision(&s, 1)], t(0)).unwrap();
    let pod = p
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CreatePod(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("db-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("db"));
    let vol = &spec.volumes.as_ref().unwrap()[0];
    assert_eq!(
        vol.persistent_volume_claim.as_ref().unwrap().claim_name,
        "data-db-0"
    );
    assert_eq!(
        pod.metadata.labels.as_ref().unwrap()[POD_NAME_LABEL],
        "db-0"
    );
    assert_eq!(ordinal_of("db", "db-12"), Some(12));
    assert_eq!(ordinal_of("db", "db-x"), None);
    assert_eq!(ordinal_of("db", "dbx-1"), None);
}

#[test]
fn rolling_update_goes_in_reverse_ordinal_order_down_to_the_partition() {
    let v1 = sts(3, "v1", false);
    let mut v2 = sts(3, "v2", false);
    v2.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateStatefulSetStrategy {
            partition: Some(1),
            max_unavailable: None,
        }),
    });
    v2.status = Some(StatefulSetStatus {
        current_revision: Some(hash(&v1)),
        ..Default::default()
    });
    let (h1, h2) = (hash(&v1), hash(&v2));
    let revs = vec![revision(&v1, 1), revision(&v2, 2)];
    let run = |pods: Vec<PodB>| {
        let pods: Vec<_> = pods.into_iter().map(PodB::arc).collect();
        summary(&plan(&v2, &pods, &[], &revs, t(100)).unwrap())
    };
    assert_eq!(
        run(vec![
            member(0, &h1).ready(0),
            member(1, &h1).ready(0),
            member(2, &h1).ready(0)
        ]),
        vec!["delete db-2"]
    );
    assert_eq!(
        run(vec![
            member(0, &h1).ready(0),
            member(1, &h1).ready(0),
            member(2, &h2).ready(0)
        ]),
        vec!["delete db-1"]
    );
    // Ordinal 0 is below the partition: left alone.
    assert_eq!(
        run(vec![
            member(0, &h1).ready(0),
            member(1, &h2).ready(0),
            member(2, &h2).ready(0)
        ]),
        Vec::<String>::new()
    );
    // A recreated pod below the partition gets the current (old) template.
    let pods = vec![member(1, &h2).ready(0).arc(), member(2, &h2).ready(0).arc()];
    let p = plan(&v2, &pods, &[], &revs, t(100)).unwrap();
    let pod = p
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CreatePod(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        pod.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("v1")
    );
    assert_eq!(
        pod.metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH_LABEL],
        h1
    );
}
