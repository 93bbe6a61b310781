//! The DaemonSet controller: one pod per eligible node.

pub mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use corral_api::rules::owner;
use corral_api::DeleteOptions;
use k8s_openapi::api::apps::v1::DaemonSet;
use tokio::task::JoinHandle;

use crate::queue::WorkQueue;
use crate::{ops, util, wiring, Context, Error};
use corral_api::runtime::{Change, ObjectKey};
use plan::Action;

const NAME: &str = "daemonset";

pub fn start(ctx: Arc<Context>) -> Vec<JoinHandle<()>> {
    let queue = WorkQueue::<ObjectKey>::new();
    wiring::enqueue_changes(&ctx.daemonsets, &queue);
    wiring::enqueue_pod_owners(
        &ctx.pods,
        &ctx.daemonsets,
        "DaemonSet",
        |o: &DaemonSet| o.spec.as_ref().map(|s| &s.selector),
        &queue,
    );
    {
        // Any node change (new, removed, relabelled, tainted) concerns every DaemonSet.
        let q = queue.clone();
        let dss = ctx.daemonsets.clone();
        ctx.nodes.on_change(move |c| {
            let relevant = match c {
                Change::Updated { old, new } => {
                    old.metadata.labels != new.metadata.labels
                        || old.spec != new.spec
                        || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
                }
                _ => true,
            };
            if relevant {
                for ds in dss.list() {
                    q.add(ObjectKey::of(ds.as_ref()));
                }
            }
        });
    }
    wiring::enqueue_controller(&ctx.revisions, "DaemonSet", &queue);
    let c = ctx.clone();
    let synced = async move {
        c.daemonsets.wait_synced().await;
        c.pods.wait_synced().await;
        c.nodes.wait_synced().await;
        c.revisions.wait_synced().await;
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

#[tracing::instrument(skip(ctx), fields(controller = NAME, key = %key))]
async fn reconcile(ctx: &Context, key: &ObjectKey) -> Result<Option<Duration>, Error> {
    let Some(ds) = ctx.daemonsets.get(key) else {
        return Ok(None);
    };
    let nodes = ctx.nodes.list();
    let pods = ctx.pods.list_ns(&key.namespace);
    let revisions = ctx.revisions.list_ns(&key.namespace);
    let plan = plan::plan(&ds, &nodes, &pods, &revisions, jiff::Timestamp::now())?;
    let jobs: Vec<_> = plan
        .actions
        .into_iter()
        .map(|a| execute(ctx, &ds, a))
        .collect();
    let result = ops::run_all(jobs).await;
    if let Some(status) = plan.status {
        let mut updated = (*ds).clone();
        updated.status = Some(status);
        ops::update_status(&ctx.client, &ctx.daemonsets, &updated).await?;
    }
    result?;
    Ok(plan.requeue_after)
}

async fn execute(ctx: &Context, ds: &DaemonSet, action: Action) -> Result<(), Error> {
    match action {
        Action::CreatePod { node, pod } => {
            tracing::debug!(node = %node, "creating daemon pod");
            crate::replicaset::create_pod(ctx, ds, *pod).await
        }
        Action::DeletePod(pod) => {
            if ops::delete(
                &ctx.client,
                &ctx.pods,
                pod.as_ref(),
                DeleteOptions::default(),
            )
            .await?
            {
                ctx.recorder.normal(
                    ds,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", util::name(&pod.metadata)),
                );
            }
            Ok(())
        }
        Action::Adopt(pod) => {
            let mut p = (*pod).clone();
            owner::adopt(&mut p.metadata, owner::controller_ref(ds));
            ops::update(&ctx.client, &ctx.pods, &p).await.map(drop)
        }
        Action::Release(pod) => {
            let mut p = (*pod).clone();
            owner::release(&mut p.metadata, util::uid(&ds.metadata));
            ops::update(&ctx.client, &ctx.pods, &p).await.map(drop)
        }
        Action::CreateRevision(cr) => {
            match ops::create(&ctx.client, &ctx.revisions, *cr, |r| r).await {
                Err(Error::Api { source, .. }) if source.is_already_exists() => Ok(()),
                other => other.map(drop),
            }
        }
        Action::UpdateRevision(cr) => ops::update(&ctx.client, &ctx.revisions, &cr)
            .await
            .map(drop),
        Action::DeleteRevision(cr) => ops::delete(
            &ctx.client,
            &ctx.revisions,
            cr.as_ref(),
            DeleteOptions::background(),
        )
        .await
        .map(drop),
    }
}
