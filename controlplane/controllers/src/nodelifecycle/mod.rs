//! The node lifecycle controller: watches Leases in `kube-node-lease`, marks silent nodes
//! Unknown and taints them unreachable (rate-limited per zone, `ratelimit.rs`), evicts pods
//! whose tolerations run out, and deletes pods bound to nodes that were deleted.

pub mod plan;
pub mod ratelimit;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::DeleteOptions;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::{ops, util, Context, Error};
use plan::Action;

const NAME: &str = "nodelifecycle";
const TICK: Duration = Duration::from_millis(200);

/// What the controller remembers of each node's heartbeats: the last lease renewTime and
/// Ready heartbeat it saw, and when (on its own clock) either last changed.
#[derive(Default)]
struct Health {
    seen: HashMap<String, (Option<String>, Timestamp)>,
}

impl Health {
    fn observe(&mut self, ctx: &Context, now: Timestamp) -> HashMap<String, Timestamp> {
        let mut out = HashMap::new();
        for node in ctx.nodes.list() {
            let name = util::name(&node.metadata).to_string();
            let lease = ctx.leases.get(&corral_api::runtime::ObjectKey::new(
                "kube-node-lease",
                name.clone(),
            ));
            let renew = lease
                .as_ref()
                .and_then(|l| l.spec.as_ref())
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0.to_string());
            let heartbeat = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .map(|t| t.0.to_string());
            let mark = format!("{renew:?}/{heartbeat:?}");
            let entry = self.seen.entry(name.clone()).or_insert((None, now));
            if entry.0.as_deref() != Some(mark.as_str()) {
                *entry = (Some(mark), now);
            }
            out.insert(name, entry.1);
        }
        self.seen.retain(|n, _| out.contains_key(n));
        out
    }
}

pub fn start(ctx: Arc<Context>) -> Vec<JoinHandle<()>> {
    let notify = Arc::new(Notify::new());
    {
        let n = notify.clone();
        ctx.nodes.on_change(move |_| n.notify_one());
    }
    vec![tokio::spawn(async move {
        ctx.nodes.wait_synced().await;
        ctx.leases.wait_synced().await;
        ctx.pods.wait_synced().await;
        let mut health = Health::default();
        let mut limiters = ratelimit::ZoneLimiters::new();
        loop {
            let now = Timestamp::now();
            let last_seen = health.observe(&ctx, now);
            let nodes = ctx.nodes.list();
            let pods = ctx.pods.list();
            let actions = plan::plan(
                &plan::Input {
                    nodes: &nodes,
                    last_seen: &last_seen,
                    pods: &pods,
                    now,
                    grace: ctx.config.node_monitor_grace,
                    default_toleration: ctx.config.pod_eviction_timeout,
                    rates: &ctx.config.eviction,
                },
                &mut limiters,
            );
            let jobs: Vec<_> = actions.into_iter().map(|a| execute(&ctx, a)).collect();
            if let Err(e) = ops::run_all(jobs).await {
                if !e.is_conflict() {
                    tracing::warn!(controller = NAME, error = %e, "node lifecycle step failed");
                }
            }
            let _ = tokio::time::timeout(TICK, notify.notified()).await;
        }
    })]
}

fn set_conditions(node: &mut Node, status: &str, reason: &str, message: &str, only_ready: bool) {
    let now = Time(Timestamp::now());
    let conds = node
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    if !conds.iter().any(|c| c.type_ == "Ready") {
        conds.push(NodeCondition {
            type_: "Ready".into(),
            ..Default::default()
        });
    }
    for c in conds.iter_mut() {
        if only_ready && c.type_ != "Ready" {
            continue;
        }
        if c.status != status {
            c.last_transition_time = Some(now.clone());
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
    }
}

/// Writes of an eviction taint before giving up (each after re-reading the node).
const TAINT_ATTEMPTS: usize = 3;

async fn execute(ctx: &Context, action: Action) -> Result<(), Error> {
    match action {
        Action::MarkUnknown(node) => {
            let name = util::name(&node.metadata).to_string();
            tracing::warn!(controller = NAME, node = %name, "node stopped renewing its lease");
            let mut n = (*node).clone();
            set_conditions(
                &mut n,
                "Unknown",
                plan::STATUS_UNKNOWN,
                "Kubelet stopped posting node status.",
                false,
            );
            ops::update_status(&ctx.client, &ctx.nodes, &n).await?;
            ctx.recorder.normal(
                node.as_ref(),
                "NodeNotReady",
                format!("Node {name} status is now: NodeNotReady"),
            );
        }
        Action::MarkReady(node) => {
            let name = util::name(&node.metadata).to_string();
            tracing::info!(controller = NAME, node = %name, "node renews its lease again");
            let mut n = (*node).clone();
            set_conditions(&mut n, "True", "KubeletReady", "lease renewed", true);
            ops::update_status(&ctx.client, &ctx.nodes, &n).await?;
            ctx.recorder.normal(
                node.as_ref(),
                "NodeReady",
                format!("Node {name} status is now: NodeReady"),
            );
        }
        Action::AddTaint(node, taint) => {
            // The zone's token is spent: a write lost to a race (the same pass marks the node
            // Unknown) is retried on the node as it now is, not left for a later token.
            let mut n = (*node).clone();
            for attempt in 1..=TAINT_ATTEMPTS {
                let taints = n
                    .spec
                    .get_or_insert_with(Default::default)
                    .taints
                    .get_or_insert_with(Vec::new);
                if !taints
                    .iter()
                    .any(|t| t.key == taint.key && t.effect == taint.effect)
                {
                    taints.push(taint.clone());
                }
                match ops::update(&ctx.client, &ctx.nodes, &n).await {
                    Err(e) if e.is_conflict() && attempt < TAINT_ATTEMPTS => {
                        let name = util::name(&node.metadata);
                        match ctx.client.get_opt::<Node>("", name).await {
                            Ok(Some(fresh)) => n = fresh,
                            _ => return Err(e),
                        }
                    }
                    other => {
                        other?;
                        break;
                    }
                }
            }
        }
        Action::RemoveTaint(node, key) => {
            let mut n = (*node).clone();
            if let Some(t) = n.spec.as_mut().and_then(|s| s.taints.as_mut()) {
                t.retain(|t| t.key != key);
            }
            ops::update(&ctx.client, &ctx.nodes, &n).await?;
        }
        Action::Evict(pod, reason) => {
            tracing::info!(controller = NAME, pod = util::name(&pod.metadata), %reason, "evicting");
            if ops::delete(
                &ctx.client,
                &ctx.pods,
                pod.as_ref(),
                DeleteOptions::default(),
            )
            .await?
            {
                ctx.recorder.normal(
                    pod.as_ref(),
                    "TaintManagerEviction",
                    format!(
                        "Marking for deletion Pod {}/{}",
                        util::namespace(&pod.metadata),
                        util::name(&pod.metadata)
                    ),
                );
            }
        }
        Action::DeleteOrphaned(pod, node) => {
            // The cache may not know a brand-new node yet: ask the API before deleting.
            match ctx.client.get_opt::<Node>("", &node).await {
                Ok(None) => {
                    tracing::info!(controller = NAME, pod = util::name(&pod.metadata), node = %node, "deleting pod of a deleted node");
                    ops::delete(
                        &ctx.client,
                        &ctx.pods,
                        pod.as_ref(),
                        DeleteOptions::grace(0),
                    )
                    .await?;
                }
                Ok(Some(_)) => {}
                Err(source) => {
                    return Err(Error::Api {
                        action: "reading",
                        object: format!("node \"{node}\""),
                        source,
                    })
                }
            }
        }
    }
    Ok(())
}
