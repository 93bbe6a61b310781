//! The ReplicaSet controller: keeps `replicas` pods matching the selector.

pub mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use corral_api::rules::owner;
use corral_api::DeleteOptions;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use tokio::task::JoinHandle;

use crate::queue::WorkQueue;
use crate::{ops, pods, util, wiring, Context, Error};
use corral_api::runtime::ObjectKey;
use plan::Action;

const NAME: &str = "replicaset";

/// Registers the event handlers and returns the worker tasks (they wait for the caches).
pub fn start(ctx: Arc<Context>) -> Vec<JoinHandle<()>> {
    let queue = WorkQueue::<ObjectKey>::new();
    wiring::enqueue_changes(&ctx.replicasets, &queue);
    wiring::enqueue_pod_owners(
        &ctx.pods,
        &ctx.replicasets,
        "ReplicaSet",
        |o: &ReplicaSet| o.spec.as_ref().map(|s| &s.selector),
        &queue,
    );
    let c = ctx.clone();
    let synced = async move {
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

#[tracing::instrument(skip(ctx), fields(controller = NAME, key = %key))]
async fn reconcile(ctx: &Context, key: &ObjectKey) -> Result<Option<Duration>, Error> {
    let Some(rs) = ctx.replicasets.get(key) else {
        return Ok(None);
    };
    let pods = ctx.pods.list_ns(&key.namespace);
    let plan = plan::plan(&rs, &pods, jiff::Timestamp::now())?;
    if !plan.actions.is_empty() {
        tracing::debug!(actions = plan.actions.len(), "syncing replica set");
    }
    let jobs: Vec<_> = plan
        .actions
        .into_iter()
        .map(|a| execute(ctx, &rs, a))
        .collect();
    let result = ops::run_all(jobs).await;
    if let Some(status) = plan.status {
        let mut updated = (*rs).clone();
        updated.status = Some(status);
        ops::update_status(&ctx.client, &ctx.replicasets, &updated).await?;
    }
    result?;
    Ok(plan.requeue_after)
}

async fn execute(ctx: &Context, rs: &ReplicaSet, action: Action) -> Result<(), Error> {
    match action {
        Action::Create(pod) => create_pod(ctx, rs, *pod).await,
        Action::Delete(pod) => {
            if ops::delete(
                &ctx.client,
                &ctx.pods,
                pod.as_ref(),
                DeleteOptions::default(),
            )
            .await?
            {
                ctx.recorder.normal(
                    rs,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", util::name(&pod.metadata)),
                );
            }
            Ok(())
        }
        Action::Adopt(pod) => {
            let mut p = (*pod).clone();
            owner::adopt(&mut p.metadata, owner::controller_ref(rs));
            ops::update(&ctx.client, &ctx.pods, &p).await.map(drop)
        }
        Action::Release(pod) => {
            let mut p = (*pod).clone();
            owner::release(&mut p.metadata, util::uid(&rs.metadata));
            ops::update(&ctx.client, &ctx.pods, &p).await.map(drop)
        }
    }
}

/// Creates one pod for a workload and records SuccessfulCreate / FailedCreate.
pub async fn create_pod<O: corral_api::client::Object>(
    ctx: &Context,
    owner: &O,
    pod: Pod,
) -> Result<(), Error> {
    match ops::create(&ctx.client, &ctx.pods, pod, pods::with_generated_name).await {
        Ok(created) => {
            ctx.recorder.normal(
                owner,
                "SuccessfulCreate",
                format!("Created pod: {}", util::name(&created.metadata)),
            );
            Ok(())
        }
        Err(e) => {
            let cause = match &e {
                Error::Api { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            ctx.recorder
                .warning(owner, "FailedCreate", format!("Error creating: {cause}"));
            Err(e)
        }
    }
}
