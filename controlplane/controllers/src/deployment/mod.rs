//! The Deployment controller: rolls ReplicaSets to the Deployment's template.

pub mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use corral_api::rules::owner;
use corral_api::DeleteOptions;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use tokio::task::JoinHandle;

use crate::queue::WorkQueue;
use crate::{ops, util, wiring, Context, Error};
use corral_api::runtime::{Change, ObjectKey};
use plan::Action;

const NAME: &str = "deployment";

pub fn start(ctx: Arc<Context>) -> Vec<JoinHandle<()>> {
    let queue = WorkQueue::<ObjectKey>::new();
    {
        let q = queue.clone();
        ctx.deployments
            .on_change(move |c| q.add(ObjectKey::of(c.object().as_ref())));
    }
    {
        let q = queue.clone();
        let ds = ctx.deployments.clone();
        ctx.replicasets.on_change(move |c| {
            for key in owners_of_rs_change(c, |ns| ds.list_ns(ns)) {
                q.add(key);
            }
        });
    }
    {
        // Recreate waits for the last old pod to go: a pod deletion wakes its Deployment.
        let q = queue.clone();
        let rss = ctx.replicasets.clone();
        ctx.pods.on_change(move |c| {
            if let Change::Deleted(pod) = c {
                let ns = util::namespace(&pod.metadata);
                let rs = owner::controller_of(&pod.metadata)
                    .filter(|o| o.kind == "ReplicaSet")
                    .and_then(|o| rss.get(&ObjectKey::new(ns, o.name.clone())));
                if let Some(o) = rs
                    .as_ref()
                    .and_then(|rs| owner::controller_of(&rs.metadata))
                {
                    if o.kind == "Deployment" {
                        q.add(ObjectKey::new(ns, o.name.clone()));
                    }
                }
            }
        });
    }
    let c = ctx.clone();
    let synced = async move {
        c.deployments.wait_synced().await;
        c.replicasets.wait_synced().await;
        c.pods.wait_synced().await;
    };
    let workers = ctx.config.workers;
    vec![wiring::spawn_workers(
        NAME,
        queue,
        workers,
        synced,
        move |key| {
            let ctx = ctx.clone();
            async move { reconcile(&ctx, &key).await }
        },
    )]
}

fn owners_of_rs_change(
    change: &Change<ReplicaSet>,
    deployments_in: impl Fn(&str) -> Vec<Arc<Deployment>>,
) -> Vec<ObjectKey> {
    let mut keys = Vec::new();
    let mut versions: Vec<&ReplicaSet> = vec![change.object()];
    if let Change::Updated { old, .. } = change {
        versions.push(old);
    }
    let mut orphan = false;
    for rs in &versions {
        let ns = util::namespace(&rs.metadata);
        match owner::controller_of(&rs.metadata) {
            Some(o) if o.kind == "Deployment" => keys.push(ObjectKey::new(ns, o.name.clone())),
            Some(_) => {}
            None => orphan = true,
        }
    }
    if orphan && !matches!(change, Change::Deleted(_)) {
        let rs = change.object();
        let labels = util::labels(&rs.metadata);
        for d in deployments_in(util::namespace(&rs.metadata)) {
            let sel = d.spec.as_ref().map(|s| &s.selector);
            if util::selector_of("deployment", &d.metadata, sel).is_ok_and(|e| e.matches(&labels)) {
                keys.push(ObjectKey::of(d.as_ref()));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

#[tracing::instrument(skip(ctx), fields(controller = NAME, key = %key))]
async fn reconcile(ctx: &Context, key: &ObjectKey) -> Result<Option<Duration>, Error> {
    let Some(d) = ctx.deployments.get(key) else {
        return Ok(None);
    };
    let rss = ctx.replicasets.list_ns(&key.namespace);
    let pods = ctx.pods.list_ns(&key.namespace);
    let plan = plan::plan(&d, &rss, &pods, jiff::Timestamp::now())?;
    for action in plan.actions {
        execute(ctx, &d, action).await?;
    }
    if let Some(status) = plan.status {
        let mut updated = (*d).clone();
        updated.status = Some(status);
        ops::update_status(&ctx.client, &ctx.deployments, &updated).await?;
    }
    Ok(plan.requeue_after)
}

fn scaled_event(ctx: &Context, d: &Deployment, rs: &ReplicaSet, from: i32) {
    let to = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let dir = if to > from { "up" } else { "down" };
    ctx.recorder.normal(
        d,
        "ScalingReplicaSet",
        format!(
            "Scaled {dir} replica set {} from {from} to {to}",
            util::name(&rs.metadata)
        ),
    );
}

async fn execute(ctx: &Context, d: &Deployment, action: Action) -> Result<(), Error> {
    match action {
        Action::CreateReplicaSet(rs) => {
            let created = ops::create(&ctx.client, &ctx.replicasets, *rs, |r| r).await?;
            tracing::info!(
                replicaset = util::name(&created.metadata),
                "created replica set"
            );
            if created.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0 {
                scaled_event(ctx, d, &created, 0);
            }
        }
        Action::UpdateReplicaSet {
            replica_set,
            scaled_from,
        } => {
            let updated = ops::update(&ctx.client, &ctx.replicasets, &replica_set).await?;
            if let Some(from) = scaled_from {
                scaled_event(ctx, d, &updated, from);
            }
        }
        Action::DeleteReplicaSet(rs) => {
            ops::delete(
                &ctx.client,
                &ctx.replicasets,
                rs.as_ref(),
                DeleteOptions::background(),
            )
            .await?;
        }
        Action::AdoptReplicaSet(rs) => {
            let mut r = (*rs).clone();
            owner::adopt(&mut r.metadata, owner::controller_ref(d));
            ops::update(&ctx.client, &ctx.replicasets, &r).await?;
        }
        Action::ReleaseReplicaSet(rs) => {
            let mut r = (*rs).clone();
            owner::release(&mut r.metadata, util::uid(&d.metadata));
            ops::update(&ctx.client, &ctx.replicasets, &r).await?;
        }
        Action::UpdateDeployment(updated) => {
            ops::update(&ctx.client, &ctx.deployments, &updated).await?;
        }
    }
    Ok(())
}
