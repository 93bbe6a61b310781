//! `corral logs POD [-c NAME] [-f] [--previous] [--tail N] [--timestamps] [--since D]` through
//! the `Logs` RPC.

use corral_api::k8s::api::core::v1::Pod;
use corral_api::kinds;
use corral_api::{ListParams, ResourceInfo};
use corral_proto as pb;
use futures::StreamExt;
use serde_json::Value;

use super::{errln, kind, out_bytes, Ctx};
use crate::args::LogsArgs;
use crate::error::{local, Result};

/// Resolves `POD`, `pod/POD` or `KIND/NAME` of a controller to one pod.
pub(super) async fn pick_pod(ctx: &Ctx, target: &str) -> Result<Pod> {
    let (info, name): (&ResourceInfo, &str) = match target.split_once('/') {
        Some((k, n)) => (kind(k)?, n),
        None => (&kinds::PODS, target),
    };
    if info.plural == "pods" {
        return ctx
            .client
            .get::<Pod>(&ctx.namespace, name)
            .await
            .map_err(|e| ctx.about(info, name, &e));
    }
    let obj: Value = ctx
        .client
        .get_value(info, &ctx.namespace, name)
        .await
        .map_err(|e| ctx.about(info, name, &e))?;
    let selector: corral_api::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector = obj
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .ok_or_else(|| {
            local(format!(
                "cannot get logs of {}/{name}: it selects no pods",
                info.qualified()
            ))
        })?;
    let sel = crate::printers::format::label_selector(Some(&selector));
    let (mut pods, _) = ctx
        .client
        .list::<Pod>(
            &ctx.namespace,
            &ListParams::labels(if sel == "<none>" { String::new() } else { sel }),
        )
        .await
        .map_err(|e| ctx.err(&e))?;
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let count = pods.len();
    let pod = pods
        .into_iter()
        .next()
        .ok_or_else(|| local(format!("no pods found for {}/{name}", info.qualified())))?;
    if count > 1 {
        errln(&format!(
            "Found {count} pods, using pod/{}",
            pod.metadata.name.clone().unwrap_or_default()
        ));
    }
    Ok(pod)
}

pub async fn run(ctx: &Ctx, a: &LogsArgs) -> Result<()> {
    let pod = pick_pod(ctx, &a.pod).await?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let container = pick_container(&pod, a.container.as_deref())?;
    let req = pb::LogsRequest {
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| ctx.namespace.clone()),
        pod: pod_name.clone(),
        container,
        follow: a.follow,
        previous: a.previous,
        tail_lines: a.tail,
        timestamps: a.timestamps,
        since_seconds: a.since.map_or(0, |d| d.as_secs().max(1) as i64),
        since_time: a.since_time.clone().unwrap_or_default(),
        limit_bytes: a.limit_bytes.min(i64::MAX as u64) as i64,
    };
    let mut stream = ctx
        .client
        .raw()
        .logs(req)
        .await
        .map_err(|s| ctx.about(&kinds::PODS, &pod_name, &s.into()))?
        .into_inner();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|s| ctx.err(&s.into()))?;
        out_bytes(&chunk.data)?;
    }
    Ok(())
}

/// The container `requested` names, or the pod's default (its
/// `kubectl.kubernetes.io/default-container` annotation, else its first), with kubectl's
/// "Defaulted container" note when it has several.
pub(super) fn pick_container(pod: &Pod, requested: Option<&str>) -> Result<String> {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let containers: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    match requested {
        Some(c) if containers.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(local(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        None => {
            let default = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
                .filter(|c| containers.contains(c))
                .cloned();
            match default.or_else(|| containers.first().cloned()) {
                Some(c) => {
                    if containers.len() > 1 {
                        errln(&format!(
                            "Defaulted container {c:?} out of: {}",
                            containers.join(", ")
                        ));
                    }
                    Ok(c)
                }
                None => Err(local(format!("pod {pod_name} has no containers"))),
            }
        }
    }
}
