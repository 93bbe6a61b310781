//! `corral cordon|uncordon|drain NODE`.

use std::time::Duration;

use corral_api::k8s::api::core::v1::{Node, Pod};
use corral_api::kinds;
use corral_api::{DeleteOptions, ListParams};

use super::{errln, outln, wait_gone, Ctx};
use crate::args::DrainArgs;
use crate::error::{local, CliError, Result};

/// Sets `spec.unschedulable`; prints `node/x cordoned` or `node/x already cordoned`.
pub async fn cordon(ctx: &Ctx, node: &str, on: bool) -> Result<()> {
    let word = if on { "cordoned" } else { "uncordoned" };
    for _ in 0..10 {
        let mut n: Node = ctx
            .client
            .get("", node)
            .await
            .map_err(|e| ctx.about(&kinds::NODES, node, &e))?;
        let spec = n.spec.get_or_insert_with(Default::default);
        if spec.unschedulable.unwrap_or(false) == on {
            return outln(&format!("node/{node} already {word}"));
        }
        spec.unschedulable = if on { Some(true) } else { None };
        match ctx.client.update(&n).await {
            Ok(_) => return outln(&format!("node/{node} {word}")),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(ctx.about(&kinds::NODES, node, &e)),
        }
    }
    Err(local(format!(
        "node/{node}: too many conflicting updates, try again"
    )))
}

/// Why a pod blocks a drain, if it does (kubectl's filters, in its order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delete,
    /// DaemonSet pod skipped with --ignore-daemonsets (a warning).
    SkipDaemonSet,
    Refuse(&'static str),
}

pub fn judge(pod: &Pod, a: &DrainArgs) -> Verdict {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded") | Some("Failed")) {
        return Verdict::Delete;
    }
    let controller = corral_api::rules::owner::controller_of(&pod.metadata);
    if controller.is_some_and(|c| c.kind == "DaemonSet") {
        return if a.ignore_daemonsets {
            Verdict::SkipDaemonSet
        } else {
            Verdict::Refuse(
                "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)",
            )
        };
    }
    if controller.is_none() && !a.force {
        return Verdict::Refuse(
            "cannot delete Pods that declare no controller (use --force to override)",
        );
    }
    let empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| v.iter().any(|v| v.empty_dir.is_some()));
    if empty_dir && !a.delete_emptydir_data {
        return Verdict::Refuse(
            "cannot delete Pods with local storage (use --delete-emptydir-data to override)",
        );
    }
    Verdict::Delete
}

fn pod_ref(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default()
    )
}

pub async fn drain(ctx: &Ctx, a: &DrainArgs) -> Result<()> {
    cordon(ctx, &a.node, true).await?;
    let (pods, _) = ctx
        .client
        .list::<Pod>("", &ListParams::fields(format!("spec.nodeName={}", a.node)))
        .await
        .map_err(|e| ctx.err(&e))?;
    let mut refused: Vec<(&'static str, Vec<String>)> = Vec::new();
    let mut skipped = Vec::new();
    let mut victims = Vec::new();
    for p in &pods {
        match judge(p, a) {
            Verdict::Delete => victims.push(p),
            Verdict::SkipDaemonSet => skipped.push(pod_ref(p)),
            Verdict::Refuse(why) => match refused.iter_mut().find(|(w, _)| *w == why) {
                Some((_, list)) => list.push(pod_ref(p)),
                None => refused.push((why, vec![pod_ref(p)])),
            },
        }
    }
    if !refused.is_empty() {
        let detail: Vec<String> = refused
            .iter()
            .map(|(why, list)| format!("{why}: {}", list.join(", ")))
            .collect();
        errln(&format!(
            "error: unable to drain node {:?} due to error: {}, continuing command...",
            a.node,
            detail.join("; ")
        ));
        errln("There are pending nodes to be drained:");
        errln(&format!(" {}", a.node));
        for d in detail {
            errln(&format!("error: {d}"));
        }
        return Err(CliError::Reported);
    }
    if !skipped.is_empty() {
        errln(&format!(
            "Warning: ignoring DaemonSet-managed Pods: {}",
            skipped.join(", ")
        ));
    }
    let opts = DeleteOptions {
        grace_period_seconds: (a.grace_period >= 0).then_some(a.grace_period),
        ..Default::default()
    };
    let mut pending = Vec::new();
    for p in victims {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        outln(&format!("evicting pod {ns}/{name}"))?;
        match ctx
            .client
            .delete_value(&kinds::PODS, &ns, &name, opts.clone())
            .await
        {
            Ok(_) => pending.push((ns, name, p.metadata.uid.clone().unwrap_or_default())),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(ctx.about(&kinds::PODS, &name, &e)),
        }
    }
    let deadline = super::deadline_or(a.timeout, Duration::from_secs(24 * 3600));
    for (ns, name, uid) in pending {
        if !wait_gone(ctx, &kinds::PODS, &ns, &name, &uid, deadline).await? {
            return Err(local(format!(
                "unable to drain node {:?}: timed out waiting for pod {ns}/{name} to terminate",
                a.node
            )));
        }
        outln(&format!("pod/{name} evicted"))?;
    }
    outln(&format!("node/{} drained", a.node))
}
