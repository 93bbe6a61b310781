//! The node IPAM controller: gives every Node without `spec.podCIDR` a subnet of the cluster
//! CIDR (`--cluster-cidr`, `--node-cidr-mask-size`). One loop over all Nodes, as allocation is
//! global; the planner (`plan.rs`) decides, this file only writes `podCIDR` and `podCIDRs`.

pub mod plan;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::{ops, util, Context, Error};
use plan::{Action, NodeView, Range};

const NAME: &str = "nodeipam";
/// How soon to look again after a failed write or while a node waits for a free subnet.
const RETRY: Duration = Duration::from_secs(1);

fn view(node: &Node) -> NodeView {
    let spec = node.spec.as_ref();
    let mut pod_cidrs = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if pod_cidrs.is_empty() {
        pod_cidrs.extend(spec.and_then(|s| s.pod_cidr.clone()));
    }
    NodeView {
        name: util::name(&node.metadata).to_string(),
        pod_cidrs,
    }
}

pub fn start(ctx: Arc<Context>, range: Range) -> Vec<JoinHandle<()>> {
    let notify = Arc::new(Notify::new());
    {
        // Only what can change the plan: a node without a pod CIDR, or a deletion (which may
        // free one). Heartbeats of thousands of nodes must not make the loop spin.
        let n = notify.clone();
        ctx.nodes.on_change(move |c| {
            let deleted = matches!(c, corral_api::runtime::Change::Deleted(_));
            if deleted || view(c.object()).pod_cidrs.is_empty() {
                n.notify_one();
            }
        });
    }
    vec![tokio::spawn(async move {
        ctx.nodes.wait_synced().await;
        tracing::info!(controller = NAME, cluster_cidr = %range.cluster(), mask = range.mask(), "allocating node pod CIDRs");
        // Nodes already told the range is full, so the event is not repeated every pass.
        let mut waiting = BTreeSet::new();
        loop {
            let nodes = ctx.nodes.list();
            let views: Vec<NodeView> = nodes.iter().map(|n| view(n)).collect();
            let mut again = false;
            for action in plan::plan(&range, &views) {
                match action {
                    Action::Assign { node, cidr } => {
                        waiting.remove(&node);
                        if let Err(e) = assign(&ctx, &node, cidr).await {
                            again = true;
                            if !e.is_conflict() {
                                tracing::warn!(controller = NAME, node = %node, error = %e, "assigning a pod CIDR failed");
                            }
                        }
                    }
                    Action::RangeFull { node } => {
                        again = true;
                        if waiting.insert(node.clone()) {
                            tracing::warn!(controller = NAME, node = %node, cluster_cidr = %range.cluster(), "no free pod CIDR; the node waits until one is freed");
                            if let Some(n) = nodes.iter().find(|n| util::name(&n.metadata) == node)
                            {
                                ctx.recorder.warning(
                                    n.as_ref(),
                                    "CIDRNotAvailable",
                                    format!(
                                        "Node {node} status is now: CIDRNotAvailable (no /{} left in {})",
                                        range.mask(),
                                        range.cluster()
                                    ),
                                );
                            }
                        }
                    }
                }
            }
            waiting.retain(|n| views.iter().any(|v| &v.name == n && v.pod_cidrs.is_empty()));
            if again {
                let _ = tokio::time::timeout(RETRY, notify.notified()).await;
            } else {
                notify.notified().await;
            }
        }
    })]
}

/// Writes `cidr` on the node as the API has it now (compare-and-swap), unless it got a pod
/// CIDR meanwhile: an agent's `--pod-cidr` set at registration wins.
async fn assign(ctx: &Context, name: &str, cidr: ipnet::Ipv4Net) -> Result<(), Error> {
    let fresh = ctx
        .client
        .get_opt::<Node>("", name)
        .await
        .map_err(|source| Error::Api {
            action: "reading",
            object: format!("node \"{name}\""),
            source,
        })?;
    let Some(mut node) = fresh else {
        return Ok(());
    };
    if !view(&node).pod_cidrs.is_empty() {
        ctx.nodes.record_write(node);
        return Ok(());
    }
    let spec = node.spec.get_or_insert_with(Default::default);
    spec.pod_cidr = Some(cidr.to_string());
    spec.pod_cidrs = Some(vec![cidr.to_string()]);
    ops::update(&ctx.client, &ctx.nodes, &node).await?;
    tracing::info!(controller = NAME, node = %name, pod_cidr = %cidr, "assigned pod CIDR");
    Ok(())
}
