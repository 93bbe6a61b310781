//! The local-path provisioner (as k3s's): a claim used by a pod that the scheduler has placed
//! gets a hostPath PersistentVolume in a directory on that node (`DirectoryOrCreate`), pinned
//! there by node affinity, and the claim is bound to it. The pod comes back to the same data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeSpec,
    PersistentVolumeStatus, Pod, VolumeNodeAffinity,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::{ops, pods, util, Context, Error};

const NAME: &str = "localpath";

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this volume for the claim, then bind the claim to it.
    Provision(Arc<PersistentVolumeClaim>, Box<PersistentVolume>),
    /// The volume exists (or the claim names it): finish the binding.
    Bind(Arc<PersistentVolumeClaim>, String),
}

/// The volume for `pvc` on `node`, under `root`.
pub fn volume_for(pvc: &PersistentVolumeClaim, node: &str, root: &str) -> PersistentVolume {
    let (ns, name, uid) = (
        util::namespace(&pvc.metadata),
        util::name(&pvc.metadata),
        util::uid(&pvc.metadata),
    );
    let spec = pvc.spec.clone().unwrap_or_default();
    let pv_name = format!("pvc-{uid}");
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(pv_name.clone()),
            annotations: Some(BTreeMap::from([(
                "pv.kubernetes.io/provisioned-by".to_string(),
                "corral.io/local-path".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: spec.resources.as_ref().and_then(|r| r.requests.clone()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns.into()),
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..Default::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path: format!("{root}/{pv_name}_{ns}_{name}"),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            storage_class_name: spec.storage_class_name.clone(),
            volume_mode: Some("Filesystem".into()),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn plan(
    claims: &[Arc<PersistentVolumeClaim>],
    volumes: &[Arc<PersistentVolume>],
    pods_all: &[Arc<Pod>],
    root: &str,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for pvc in claims {
        if pvc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let bound_phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if let Some(v) = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .filter(|v| !v.is_empty())
        {
            if !bound_phase {
                actions.push(Action::Bind(pvc.clone(), v.to_string()));
            }
            continue;
        }
        let uid = util::uid(&pvc.metadata);
        if let Some(pv) = volumes.iter().find(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|c| c.uid.as_deref())
                == Some(uid)
        }) {
            actions.push(Action::Bind(
                pvc.clone(),
                util::name(&pv.metadata).to_string(),
            ));
            continue;
        }
        let (ns, name) = (util::namespace(&pvc.metadata), util::name(&pvc.metadata));
        let node = pods_all.iter().find_map(|p| {
            let uses = util::namespace(&p.metadata) == ns
                && p.spec.as_ref()?.volumes.as_ref()?.iter().any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == name)
                });
            uses.then(|| pods::node_name(p).map(str::to_string))
                .flatten()
        });
        if let Some(node) = node {
            actions.push(Action::Provision(
                pvc.clone(),
                Box::new(volume_for(pvc, &node, root)),
            ));
        }
    }
    actions
}

pub fn start(ctx: Arc<Context>) -> Vec<JoinHandle<()>> {
    let notify = Arc::new(Notify::new());
    {
        let n = notify.clone();
        ctx.pvcs.on_change(move |_| n.notify_one());
    }
    {
        let n = notify.clone();
        ctx.pods.on_change(move |c| {
            let uses_claim = c
                .object()
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .is_some_and(|v| v.iter().any(|v| v.persistent_volume_claim.is_some()));
            if uses_claim {
                n.notify_one();
            }
        });
    }
    vec![tokio::spawn(async move {
        ctx.pvcs.wait_synced().await;
        ctx.pvs.wait_synced().await;
        ctx.pods.wait_synced().await;
        loop {
            let actions = plan(
                &ctx.pvcs.list(),
                &ctx.pvs.list(),
                &ctx.pods.list(),
                &ctx.config.local_path_root,
            );
            for a in actions {
                if let Err(e) = execute(&ctx, a).await {
                    tracing::warn!(controller = NAME, error = %e, "provisioning failed");
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), notify.notified()).await;
        }
    })]
}

async fn execute(ctx: &Context, action: Action) -> Result<(), Error> {
    let (pvc, pv_name) = match action {
        Action::Provision(pvc, pv) => {
            let name = util::name(&pv.metadata).to_string();
            tracing::info!(controller = NAME, claim = util::name(&pvc.metadata), volume = %name, "provisioning");
            match ops::create(&ctx.client, &ctx.pvs, *pv, |v| v).await {
                Ok(created) => {
                    let mut bound = created.clone();
                    bound.status = Some(PersistentVolumeStatus {
                        phase: Some("Bound".into()),
                        ..Default::default()
                    });
                    ops::update_status(&ctx.client, &ctx.pvs, &bound).await?;
                }
                Err(Error::Api { source, .. }) if source.is_already_exists() => {}
                Err(e) => return Err(e),
            }
            (pvc, name)
        }
        Action::Bind(pvc, name) => (pvc, name),
    };
    let mut claim = (*pvc).clone();
    let spec = claim.spec.get_or_insert_with(Default::default);
    if spec.volume_name.as_deref() != Some(pv_name.as_str()) {
        spec.volume_name = Some(pv_name.clone());
        claim = ops::update(&ctx.client, &ctx.pvcs, &claim).await?;
    }
    let capacity = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.clone());
    claim.status = Some(PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        access_modes: claim.spec.as_ref().and_then(|s| s.access_modes.clone()),
        capacity,
        ..Default::default()
    });
    ops::update_status(&ctx.client, &ctx.pvcs, &claim).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Volume,
    };

    fn claim(name: &str, volume: Option<&str>, phase: Option<&str>) -> Arc<PersistentVolumeClaim> {
        Arc::new(PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("u-{name}")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: volume.map(Into::into),
                ..Default::default()
            }),
            status: phase.map(|p| PersistentVolumeClaimStatus {
                phase: Some(p.into()),
                ..Default::default()
            }),
        })
    }

    fn user(pod: &str, claim: &str, node: Option<&str>) -> Arc<Pod> {
        let mut p = PodB::new(pod);
        if let Some(n) = node {
            p = p.node(n);
        }
        p.0.spec.as_mut().unwrap().volumes = Some(vec![Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: None,
            }),
            ..Default::default()
        }]);
        p.arc()
    }

    #[test]
    fn claims_are_provisioned_on_the_node_of_their_first_pod() {
        let root = "/var/lib/corral/storage";
        type Case = (
            &'static str,
            Vec<Arc<PersistentVolumeClaim>>,
            Vec<Arc<Pod>>,
            Vec<String>,
        );
        let cases: Vec<Case> = vec![
            (
                "unused claim waits",
                vec![claim("a", None, None)],
                vec![],
                vec![],
            ),
            (
                "pod not scheduled yet: waits",
                vec![claim("a", None, None)],
                vec![user("p", "a", None)],
                vec![],
            ),
            (
                "scheduled pod: volume on its node",
                vec![claim("a", None, None)],
                vec![user("p", "a", Some("n2"))],
                vec!["provision a n2".into()],
            ),
            (
                "already bound: nothing",
                vec![claim("a", Some("pvc-u-a"), Some("Bound"))],
                vec![user("p", "a", Some("n2"))],
                vec![],
            ),
            (
                "named but not marked bound",
                vec![claim("a", Some("pvc-u-a"), None)],
                vec![],
                vec!["bind a pvc-u-a".into()],
            ),
        ];
        for (name, claims, pods, want) in cases {
            let got: Vec<String> = plan(&claims, &[], &pods, root)
                .iter()
                .map(|a| match a {
                    Action::Provision(c, pv) => {
                        let node = &pv
                            .spec
                            .as_ref()
                            .unwrap()
                            .node_affinity
                            .as_ref()
                            .unwrap()
                            .required
                            .as_ref()
                            .unwrap()
                            .node_selector_terms[0]
                            .match_expressions
                            .as_ref()
                            .unwrap()[0]
                            .values
                            .as_ref()
                            .unwrap()[0];
                        format!("provision {} {node}", util::name(&c.metadata))
                    }
                    Action::Bind(c, v) => format!("bind {} {v}", util::name(&c.metadata)),
                })
                .collect();
            assert_eq!(got, want, "{name}");
        }
        let pv = volume_for(&claim("data-db-0", None, None), "n1", root);
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u-data-db-0"));
        let hp = pv.spec.unwrap().host_path.unwrap();
        assert_eq!(
            hp.path,
            "/var/lib/corral/storage/pvc-u-data-db-0_default_data-db-0"
        );
        assert_eq!(hp.type_.as_deref(), Some("DirectoryOrCreate"));
    }
}
