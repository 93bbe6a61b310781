//! The garbage collector: deletes objects whose owners are gone (Background), deletes the
//! dependents of owners deleted in the Foreground before letting the owner go, and strips
//! ownerReferences for Orphan deletion. One pass over the owner graph per batch of changes.

pub mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::client::Object;
use corral_api::client::PropagationPolicy;
use corral_api::{kinds, DeleteOptions};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::{ops, util, Context, Error};
use corral_api::runtime::Store;
use plan::{Action, GraphNode, Propagation};

const NAME: &str = "garbagecollector";
const RESYNC: Duration = Duration::from_secs(5);
const MIN_INTERVAL: Duration = Duration::from_millis(30);

fn watch<K: Object>(store: &Store<K>, notify: &Arc<Notify>) {
    let n = notify.clone();
    store.on_change(move |_| n.notify_one());
}

fn add_nodes<K: Object>(store: &Store<K>, out: &mut Vec<GraphNode>) {
    for o in store.list() {
        let m = o.metadata();
        out.push(GraphNode {
            kind: K::KIND.to_string(),
            namespace: util::namespace(m).to_string(),
            name: util::name(m).to_string(),
            uid: util::uid(m).to_string(),
            owners: m.owner_references.clone().unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
        });
    }
}

fn graph(ctx: &Context) -> Vec<GraphNode> {
    let mut nodes = Vec::new();
    add_nodes(&ctx.pods, &mut nodes);
    add_nodes(&ctx.replicasets, &mut nodes);
    add_nodes(&ctx.deployments, &mut nodes);
    add_nodes(&ctx.daemonsets, &mut nodes);
    add_nodes(&ctx.statefulsets, &mut nodes);
    add_nodes(&ctx.revisions, &mut nodes);
    add_nodes(&ctx.pvcs, &mut nodes);
    nodes
}

pub fn start(ctx: Arc<Context>) -> Vec<JoinHandle<()>> {
    let notify = Arc::new(Notify::new());
    watch(&ctx.pods, &notify);
    watch(&ctx.replicasets, &notify);
    watch(&ctx.deployments, &notify);
    watch(&ctx.daemonsets, &notify);
    watch(&ctx.statefulsets, &notify);
    watch(&ctx.revisions, &notify);
    watch(&ctx.pvcs, &notify);
    vec![tokio::spawn(async move {
        ctx.pods.wait_synced().await;
        ctx.replicasets.wait_synced().await;
        ctx.deployments.wait_synced().await;
        ctx.daemonsets.wait_synced().await;
        ctx.statefulsets.wait_synced().await;
        ctx.revisions.wait_synced().await;
        ctx.pvcs.wait_synced().await;
        loop {
            let actions = plan::plan(&graph(&ctx));
            if !actions.is_empty() {
                tracing::debug!(controller = NAME, actions = actions.len(), "collecting");
                let mut owners = HashMap::new();
                let mut verified = Vec::new();
                for a in &actions {
                    if let Action::VerifyOwners { node, absent, all } = a {
                        verified.push((node, absent, *all));
                    }
                }
                // Owners are checked against the API once per pass: the cache may lag.
                for (node, absent, _) in &verified {
                    for o in absent.iter() {
                        let key = (o.kind.clone(), node.namespace.clone(), o.name.clone());
                        if let std::collections::hash_map::Entry::Vacant(e) = owners.entry(key) {
                            e.insert(owner_uid(&ctx, &o.kind, &node.namespace, &o.name).await);
                        }
                    }
                }
                let jobs: Vec<_> = actions
                    .into_iter()
                    .map(|a| execute(&ctx, a, &owners))
                    .collect();
                if let Err(e) = ops::run_all(jobs).await {
                    tracing::debug!(controller = NAME, error = %e, "collection step failed, retrying");
                }
            }
            tokio::time::sleep(MIN_INTERVAL).await;
            let _ = tokio::time::timeout(RESYNC, notify.notified()).await;
        }
    })]
}

type OwnerKey = (String, String, String);

/// The uid of the live owner, `Some(None)` when it is gone, `None` when unknown (kind not
/// served, API error): unknown owners are never treated as gone.
async fn owner_uid(ctx: &Context, kind: &str, ns: &str, name: &str) -> Option<Option<String>> {
    let info = kinds::by_kind_name(kind)?;
    match ctx.client.get_value(info, ns, name).await {
        Ok(v) => Some(Some(corral_api::object::uid(&v).to_string())),
        Err(e) if e.is_not_found() => Some(None),
        Err(_) => None,
    }
}

fn object_name(node: &GraphNode) -> String {
    format!(
        "{} \"{}/{}\"",
        node.kind.to_lowercase(),
        node.namespace,
        node.name
    )
}

async fn execute(
    ctx: &Context,
    action: Action,
    owners: &HashMap<OwnerKey, Option<Option<String>>>,
) -> Result<(), Error> {
    match action {
        Action::Delete(node, how) => delete(ctx, &node, how).await,
        Action::VerifyOwners { node, absent, all } => {
            let gone: Vec<String> = absent
                .iter()
                .filter(|o| {
                    let key = (o.kind.clone(), node.namespace.clone(), o.name.clone());
                    matches!(owners.get(&key), Some(Some(live)) if live.as_deref() != Some(o.uid.as_str()))
                })
                .map(|o| o.uid.clone())
                .collect();
            if gone.is_empty() {
                return Ok(());
            }
            if all && gone.len() == absent.len() {
                tracing::info!(controller = NAME, object = %object_name(&node), "owner gone, deleting dependent");
                delete(ctx, &node, Propagation::Background).await
            } else {
                edit(ctx, &node, |v| {
                    remove_owner_refs(v, &gone);
                })
                .await
            }
        }
        Action::RemoveOwnerRef(node, uid) => {
            edit(ctx, &node, |v| {
                remove_owner_refs(v, std::slice::from_ref(&uid))
            })
            .await
        }
        Action::RemoveFinalizer(node, finalizer) => {
            edit(ctx, &node, |v| {
                if let Some(list) = v
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    list.retain(|f| f.as_str() != Some(finalizer));
                }
            })
            .await
        }
    }
}

fn remove_owner_refs(v: &mut Value, uids: &[String]) {
    if let Some(list) = v
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        list.retain(|o| {
            !o.get("uid")
                .and_then(Value::as_str)
                .is_some_and(|u| uids.iter().any(|x| x == u))
        });
    }
}

async fn delete(ctx: &Context, node: &GraphNode, how: Propagation) -> Result<(), Error> {
    let Some(info) = kinds::by_kind_name(&node.kind) else {
        return Ok(());
    };
    let opts = DeleteOptions {
        propagation: match how {
            Propagation::Background => PropagationPolicy::Background,
            Propagation::Foreground => PropagationPolicy::Foreground,
        },
        uid: Some(node.uid.clone()),
        ..Default::default()
    };
    match ctx
        .client
        .delete_value(info, &node.namespace, &node.name, opts)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
        Err(source) => Err(Error::Api {
            action: "deleting",
            object: object_name(node),
            source,
        }),
    }
}

/// Read-modify-write of the live object (compare-and-swap; a conflict retries next pass).
async fn edit(ctx: &Context, node: &GraphNode, change: impl Fn(&mut Value)) -> Result<(), Error> {
    let Some(info) = kinds::by_kind_name(&node.kind) else {
        return Ok(());
    };
    let err = |action, source| Error::Api {
        action,
        object: object_name(node),
        source,
    };
    let mut v = match ctx
        .client
        .get_value(info, &node.namespace, &node.name)
        .await
    {
        Ok(v) => v,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(err("reading", e)),
    };
    if corral_api::object::uid(&v) != node.uid {
        return Ok(());
    }
    change(&mut v);
    match ctx
        .client
        .update_value(info, &node.namespace, &v, false)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(err("updating", e)),
    }
}
