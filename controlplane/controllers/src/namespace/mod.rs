//! The namespace controller: empties each Terminating namespace (every namespaced kind of the
//! kinds table, in bounded batches, pods through their graceful deletion), reports Kubernetes'
//! deletion conditions, and removes the `kubernetes` finalizer once nothing is left. It works
//! from stored state only, so a restarted control plane resumes an interrupted purge.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use corral_api::client::PropagationPolicy;
use corral_api::{kinds, DeleteOptions, ListParams};
use k8s_openapi::api::core::v1::Namespace;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::queue::WorkQueue;
use crate::{ops, wiring, Context, Error};
use corral_api::runtime::ObjectKey;
use plan::Content;

const NAME: &str = "namespace";
/// The fail point hit after each chunk of a batch of deletions (tests "crash" there).
pub const FAIL_POINT_PURGE: &str = "namespace-purge";

/// Registers the handler and returns the worker tasks (they wait for the namespace cache).
pub fn start(ctx: Arc<Context>) -> Vec<JoinHandle<()>> {
    let queue = WorkQueue::<ObjectKey>::new();
    // The initial list queues every namespace, so a Terminating one found on start is
    // picked up where the previous run left it.
    wiring::enqueue_changes(&ctx.namespaces, &queue);
    let c = ctx.clone();
    let synced = async move { c.namespaces.wait_synced().await };
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

fn api_err(
    action: &'static str,
    object: String,
) -> impl FnOnce(corral_api::client::Error) -> Error {
    move |source| Error::Api {
        action,
        object,
        source,
    }
}

#[tracing::instrument(skip(ctx), fields(controller = NAME, namespace = %key.name))]
async fn reconcile(ctx: &Context, key: &ObjectKey) -> Result<Option<Duration>, Error> {
    if ctx
        .namespaces
        .get(key)
        .is_none_or(|ns| !plan::is_terminating(&ns))
    {
        return Ok(None);
    }
    // The cache may be behind the finalize of a previous pass: read the namespace itself.
    let name = key.name.as_str();
    let ns = match ctx.client.get_opt::<Namespace>("", name).await {
        Ok(Some(ns)) => ns,
        Ok(None) => return Ok(None),
        Err(e) => return Err(api_err("reading", format!("namespace \"{name}\""))(e)),
    };
    if !plan::is_terminating(&ns) || !plan::holds_finalizer(&ns) {
        return Ok(None);
    }
    let (content, unlisted) = list_content(ctx, name).await;
    let plan = plan::plan(&plan::Input {
        namespace: &ns,
        content: &content,
        unlisted: &unlisted,
        batch: plan::BATCH,
    });
    if !plan.delete.is_empty() {
        tracing::info!(
            deleting = plan.delete.len(),
            left = content.len(),
            "purging namespace"
        );
    }
    let failures = delete_all(ctx, name, &plan.delete).await;
    let messages: Vec<String> = failures.iter().map(ToString::to_string).collect();
    if let Some(conditions) = plan::conditions(&ns, &plan, &messages, jiff::Timestamp::now()) {
        let mut updated = ns.clone();
        updated
            .status
            .get_or_insert_with(Default::default)
            .conditions = Some(conditions);
        match ops::update_status(&ctx.client, &ctx.namespaces, &updated).await {
            Ok(_) => {}
            Err(Error::Api { source, .. }) if source.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    if let Some(first) = failures.into_iter().next() {
        return Err(first);
    }
    if plan.finalize {
        finalize(ctx, name).await?;
        tracing::info!("namespace emptied, kubernetes finalizer removed");
        return Ok(None);
    }
    Ok(plan.requeue_after)
}

/// Every object left in the namespace, of every namespaced kind, and the kinds whose list
/// failed.
async fn list_content(
    ctx: &Context,
    ns: &str,
) -> (Vec<Content>, Vec<&'static kinds::ResourceInfo>) {
    let mut content = Vec::new();
    let mut unlisted = Vec::new();
    for kind in kinds::ALL.iter().filter(|k| k.namespaced) {
        match ctx
            .client
            .list_value(kind, ns, &ListParams::default())
            .await
        {
            Ok((items, _)) => content.extend(items.iter().map(|o| summarize(kind, o))),
            Err(e) => {
                tracing::warn!(resource = kind.plural, error = %e, "listing namespace content failed");
                unlisted.push(kind);
            }
        }
    }
    (content, unlisted)
}

fn summarize(kind: &'static kinds::ResourceInfo, o: &Value) -> Content {
    let text = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Content {
        kind,
        name: text("/metadata/name"),
        uid: text("/metadata/uid"),
        deleting: o.pointer("/metadata/deletionTimestamp").is_some(),
        finalizers: o
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Deletes `targets` (background propagation; pods gracefully, their agents confirm) in
/// chunks of bounded parallelism; returns the failures. Gone or replaced objects are fine.
async fn delete_all(ctx: &Context, ns: &str, targets: &[Content]) -> Vec<Error> {
    let mut failures = Vec::new();
    for chunk in targets.chunks(ops::PARALLEL_CALLS) {
        let results = futures::future::join_all(chunk.iter().map(|c| delete_one(ctx, ns, c))).await;
        failures.extend(results.into_iter().filter_map(Result::err));
        fail::fail_point!(FAIL_POINT_PURGE);
    }
    failures
}

async fn delete_one(ctx: &Context, ns: &str, c: &Content) -> Result<(), Error> {
    let opts = DeleteOptions {
        propagation: PropagationPolicy::Background,
        uid: Some(c.uid.clone()).filter(|u| !u.is_empty()),
        ..Default::default()
    };
    match ctx.client.delete_value(c.kind, ns, &c.name, opts).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
        Err(e) => Err(api_err(
            "deleting",
            format!("{} \"{ns}/{}\"", c.kind.singular, c.name),
        )(e)),
    }
}

/// Removes the `kubernetes` finalizer through the `finalize` subresource, at the revision
/// just read (a conflict is retried by the queue).
async fn finalize(ctx: &Context, name: &str) -> Result<(), Error> {
    let object = format!("namespace \"{name}\"");
    let mut ns = match ctx.client.get_opt::<Namespace>("", name).await {
        Ok(Some(ns)) => ns,
        Ok(None) => return Ok(()),
        Err(e) => return Err(api_err("reading", object)(e)),
    };
    if let Some(f) = ns.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
        f.retain(|f| f != plan::FINALIZER);
    }
    match ctx.client.finalize_namespace(&ns).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(api_err("finalizing", object)(e)),
    }
}
