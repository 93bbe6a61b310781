//! The StatefulSet controller: stable pod names and claims, ordered rollout.

pub mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use corral_api::DeleteOptions;
use k8s_openapi::api::apps::v1::StatefulSet;
use tokio::task::JoinHandle;

use crate::queue::WorkQueue;
use crate::{ops, util, wiring, Context, Error};
use corral_api::runtime::ObjectKey;
use plan::Action;

const NAME: &str = "statefulset";

pub fn start(ctx: Arc<Context>) -> Vec<JoinHandle<()>> {
    let queue = WorkQueue::<ObjectKey>::new();
    wiring::enqueue_changes(&ctx.statefulsets, &queue);
    wiring::enqueue_controller(&ctx.pods, "StatefulSet", &queue);
    wiring::enqueue_controller(&ctx.revisions, "StatefulSet", &queue);
    let c = ctx.clone();
    let synced = async move {
        c.statefulsets.wait_synced().await;
        c.pods.wait_synced().await;
        c.revisions.wait_synced().await;
        c.pvcs.wait_synced().await;
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
    let Some(sts) = ctx.statefulsets.get(key) else {
        return Ok(None);
    };
    let pods = ctx.pods.list_ns(&key.namespace);
    let claims = ctx.pvcs.list_ns(&key.namespace);
    let revisions = ctx.revisions.list_ns(&key.namespace);
    let plan = plan::plan(&sts, &pods, &claims, &revisions, jiff::Timestamp::now())?;
    // In order: claims before the pod that mounts them.
    for action in plan.actions {
        execute(ctx, &sts, action).await?;
    }
    if let Some(status) = plan.status {
        let mut updated = (*sts).clone();
        updated.status = Some(status);
        ops::update_status(&ctx.client, &ctx.statefulsets, &updated).await?;
    }
    Ok(None)
}

fn exists_ok<T>(r: Result<T, Error>) -> Result<(), Error> {
    match r {
        Err(Error::Api { source, .. }) if source.is_already_exists() => Ok(()),
        other => other.map(drop),
    }
}

async fn execute(ctx: &Context, sts: &StatefulSet, action: Action) -> Result<(), Error> {
    let set = util::name(&sts.metadata).to_string();
    match action {
        Action::CreateClaim(pvc) => {
            let name = util::name(&pvc.metadata).to_string();
            exists_ok(ops::create(&ctx.client, &ctx.pvcs, *pvc, |c| c).await)?;
            ctx.recorder.normal(
                sts,
                "SuccessfulCreate",
                format!("create Claim {name} in StatefulSet {set} success"),
            );
        }
        Action::CreatePod(pod) => {
            let name = util::name(&pod.metadata).to_string();
            // The name is the identity: if it still exists, the next pass sees it.
            exists_ok(ops::create(&ctx.client, &ctx.pods, *pod, |p| p).await)?;
            ctx.recorder.normal(
                sts,
                "SuccessfulCreate",
                format!("create Pod {name} in StatefulSet {set} successful"),
            );
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
                    sts,
                    "SuccessfulDelete",
                    format!(
                        "delete Pod {} in StatefulSet {set} successful",
                        util::name(&pod.metadata)
                    ),
                );
            }
        }
        Action::CreateRevision(cr) => {
            exists_ok(ops::create(&ctx.client, &ctx.revisions, *cr, |r| r).await)?
        }
    }
    Ok(())
}
