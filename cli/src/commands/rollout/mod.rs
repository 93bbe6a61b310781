//! `corral rollout status|history|undo|restart|pause|resume`. The status messages and the
//! choice of revision for undo are pure functions with table tests.

use std::pin::pin;
use std::time::Duration;

use corral_api::k8s::api::apps::v1::{ControllerRevision, ReplicaSet};
use corral_api::kinds::{self, ResourceInfo};
use corral_api::rules::owner;
use corral_api::rules::revision::POD_TEMPLATE_HASH_LABEL;
use corral_api::ListParams;
use futures::StreamExt;
use serde_json::{json, Value};

mod status;

use status::status_of;

use super::{out, outln, single_target, Ctx};
use crate::args::RolloutAction;
use crate::error::{local, Result};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The revision `undo --to-revision=N` goes back to: N itself, or for 0 the newest revision
/// before the current (highest) one.
pub fn undo_target(revisions: &[i64], to_revision: i64) -> std::result::Result<i64, String> {
    if to_revision > 0 {
        return if revisions.contains(&to_revision) {
            Ok(to_revision)
        } else {
            Err(format!(
                "unable to find specified revision {to_revision} in history"
            ))
        };
    }
    let mut sorted: Vec<i64> = revisions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() < 2 {
        return Err("no rollout history found".into());
    }
    Ok(sorted[sorted.len() - 2])
}

/// The pod template a ReplicaSet carries, without the controller's `pod-template-hash` label.
pub fn template_for_rollback(rs: &ReplicaSet) -> Value {
    let mut t = serde_json::to_value(
        rs.spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    t
}

/// Annotations the deployment controller owns; a rollback keeps the Deployment's own.
const CONTROLLER_ANNOTATIONS: &[&str] = &[
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// kubectl's `setDeploymentAnnotationsTo`: the ReplicaSet's annotations (its change-cause)
/// replace the Deployment's, except those the controller owns.
pub fn annotations_after_rollback(
    deployment: Option<&Value>,
    rs: Option<&std::collections::BTreeMap<String, String>>,
) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(Value::Object(d)) = deployment {
        for (k, v) in d {
            if CONTROLLER_ANNOTATIONS.contains(&k.as_str()) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, v) in rs.into_iter().flatten() {
        if !CONTROLLER_ANNOTATIONS.contains(&k.as_str()) {
            out.insert(k.clone(), Value::String(v.clone()));
        }
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

/// A template in canonical form, so that equal templates compare equal however spelled.
fn canonical_template(t: &Value) -> Value {
    serde_json::from_value::<corral_api::k8s::api::core::v1::PodTemplateSpec>(t.clone())
        .ok()
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or_else(|| t.clone())
}

async fn owned_replicasets(ctx: &Ctx, d: &Value) -> Result<Vec<ReplicaSet>> {
    let uid = corral_api::object::uid(d);
    let (items, _) = ctx
        .client
        .list_value(&kinds::REPLICASETS, &ctx.namespace, &ListParams::default())
        .await
        .map_err(|e| ctx.err(&e))?;
    Ok(items
        .into_iter()
        .filter_map(|rs| serde_json::from_value::<ReplicaSet>(rs).ok())
        .filter(|rs| owner::is_owned_by(&rs.metadata, uid))
        .collect())
}

async fn owned_revisions(ctx: &Ctx, obj: &Value) -> Result<Vec<ControllerRevision>> {
    let uid = corral_api::object::uid(obj);
    let (items, _) = ctx
        .client
        .list_value(
            &kinds::CONTROLLERREVISIONS,
            &ctx.namespace,
            &ListParams::default(),
        )
        .await
        .map_err(|e| ctx.err(&e))?;
    Ok(items
        .into_iter()
        .filter_map(|r| serde_json::from_value::<ControllerRevision>(r).ok())
        .filter(|r| owner::is_owned_by(&r.metadata, uid))
        .collect())
}

fn workload(args: &[String]) -> Result<(&'static ResourceInfo, String)> {
    let (info, name) = single_target(args)?;
    if !matches!(info.plural, "deployments" | "daemonsets" | "statefulsets") {
        return Err(local(format!(
            "no rollout support for {}: use deployment, daemonset or statefulset",
            crate::error::resource_name(info)
        )));
    }
    Ok((info, name))
}

/// Read-modify-write of one object, retried on conflict.
async fn modify(
    ctx: &Ctx,
    info: &ResourceInfo,
    name: &str,
    mut f: impl FnMut(&mut Value) -> std::result::Result<bool, String>,
) -> Result<bool> {
    for _ in 0..10 {
        let mut obj = ctx
            .client
            .get_value(info, &ctx.namespace, name)
            .await
            .map_err(|e| ctx.about(info, name, &e))?;
        if !f(&mut obj).map_err(local)? {
            return Ok(false);
        }
        match ctx
            .client
            .update_value(info, &ctx.namespace, &obj, false)
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(ctx.about(info, name, &e)),
        }
    }
    Err(local(format!(
        "{}/{name}: too many conflicting updates, try again",
        info.qualified()
    )))
}

pub async fn run(ctx: &Ctx, action: &RolloutAction) -> Result<()> {
    match action {
        RolloutAction::Status {
            resource,
            watch,
            timeout,
        } => status(ctx, resource, *watch, *timeout).await,
        RolloutAction::History { resource, revision } => history(ctx, resource, *revision).await,
        RolloutAction::Undo {
            resource,
            to_revision,
        } => undo(ctx, resource, *to_revision).await,
        RolloutAction::Restart { resource } => {
            let (info, name) = workload(resource)?;
            let now = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            modify(ctx, info, &name, |obj| {
                if obj.pointer("/spec/paused") == Some(&Value::Bool(true)) {
                    return Err(format!(
                        "{} {name:?} can't restart paused deployment (run rollout resume first)",
                        crate::error::resource_name(info)
                    ));
                }
                let t = obj
                    .pointer_mut("/spec/template")
                    .ok_or("the object has no pod template")?;
                if !t.get("metadata").is_some_and(Value::is_object) {
                    t["metadata"] = json!({});
                }
                if !t["metadata"]
                    .get("annotations")
                    .is_some_and(Value::is_object)
                {
                    t["metadata"]["annotations"] = json!({});
                }
                t["metadata"]["annotations"][RESTARTED_AT] = Value::String(now.clone());
                Ok(true)
            })
            .await?;
            outln(&format!("{}/{name} restarted", info.qualified()))
        }
        RolloutAction::Pause { resource } | RolloutAction::Resume { resource } => {
            let pause = matches!(action, RolloutAction::Pause { .. });
            let (info, name) = workload(resource)?;
            if info.plural != "deployments" {
                return Err(local(format!(
                    "{}/{name} is not supported for pause/resume",
                    info.qualified()
                )));
            }
            let changed = modify(ctx, info, &name, |obj| {
                let paused = obj.pointer("/spec/paused") == Some(&Value::Bool(true));
                if paused == pause {
                    return Ok(false);
                }
                obj["spec"]["paused"] = Value::Bool(pause);
                Ok(true)
            })
            .await?;
            let (word, state) = if pause {
                ("paused", "already paused")
            } else {
                ("resumed", "not paused")
            };
            if changed {
                outln(&format!("{}/{name} {word}", info.qualified()))
            } else {
                Err(local(format!(
                    "{} {name:?} is {state}",
                    crate::error::resource_name(info)
                )))
            }
        }
    }
}

async fn status(ctx: &Ctx, resource: &[String], watch: bool, timeout: Duration) -> Result<()> {
    let (info, name) = workload(resource)?;
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    let params = ListParams::fields(format!("metadata.name={name}"));
    let mut last = String::new();
    loop {
        // Subscribe before reading so no change between the read and the wait is missed.
        let stream = ctx
            .client
            .watch_value(info, &ctx.namespace, &params, 0)
            .await
            .map_err(|e| ctx.err(&e))?;
        let mut stream = pin!(stream);
        let obj = ctx
            .client
            .get_value(info, &ctx.namespace, &name)
            .await
            .map_err(|e| ctx.about(info, &name, &e))?;
        let mut current = obj;
        loop {
            let (msg, done) = status_of(info, &current).map_err(local)?;
            if msg != last {
                outln(&msg)?;
                last = msg;
            }
            if done || !watch {
                return Ok(());
            }
            let next = async {
                loop {
                    match stream.next().await {
                        Some(Ok(corral_api::WatchEvent::Added(o)))
                        | Some(Ok(corral_api::WatchEvent::Modified(o))) => return Some(Ok(o)),
                        Some(Ok(corral_api::WatchEvent::Deleted(_))) => return Some(Err(())),
                        Some(Ok(corral_api::WatchEvent::Bookmark(_))) => continue,
                        Some(Err(_)) | None => return None,
                    }
                }
            };
            let ev = match deadline {
                Some(d) => match tokio::time::timeout_at(d, next).await {
                    Ok(ev) => ev,
                    Err(_) => return Err(local("timed out waiting for the condition")),
                },
                None => next.await,
            };
            match ev {
                Some(Ok(o)) => current = o,
                Some(Err(())) => {
                    return Err(local(format!(
                        "{} {name:?} was deleted",
                        crate::error::resource_name(info)
                    )))
                }
                // The watch ended: subscribe again and re-read.
                None => break,
            }
        }
    }
}

async fn history(ctx: &Ctx, resource: &[String], revision: Option<i64>) -> Result<()> {
    let (info, name) = workload(resource)?;
    let obj = ctx
        .client
        .get_value(info, &ctx.namespace, &name)
        .await
        .map_err(|e| ctx.about(info, &name, &e))?;
    // (revision, change-cause, template)
    let mut entries: Vec<(i64, String, Value)> = if info.plural == "deployments" {
        owned_replicasets(ctx, &obj)
            .await?
            .iter()
            .map(|rs| {
                let cause = rs
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CHANGE_CAUSE))
                    .cloned();
                (
                    revision_of(rs),
                    cause.unwrap_or_else(|| "<none>".into()),
                    template_for_rollback(rs),
                )
            })
            .filter(|(r, _, _)| *r > 0)
            .collect()
    } else {
        owned_revisions(ctx, &obj)
            .await?
            .iter()
            .map(|cr| {
                let cause = cr
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CHANGE_CAUSE))
                    .cloned();
                let template = cr
                    .data
                    .as_ref()
                    .and_then(|d| d.0.pointer("/spec/template").cloned())
                    .unwrap_or(Value::Null);
                (
                    cr.revision,
                    cause.unwrap_or_else(|| "<none>".into()),
                    template,
                )
            })
            .collect()
    };
    entries.sort_by_key(|e| e.0);
    if let Some(r) = revision {
        let Some((_, _, template)) = entries.iter().find(|e| e.0 == r) else {
            return Err(local("unable to find the specified revision"));
        };
        out(&format!("{}/{name} with revision #{r}\n", info.qualified()))?;
        return out(&crate::printers::output::yaml(template));
    }
    let mut text = format!("{}/{name} \n", info.qualified());
    let mut rows = String::from("REVISION\tCHANGE-CAUSE\n");
    for (r, cause, _) in &entries {
        rows.push_str(&format!("{r}\t{cause}\n"));
    }
    text.push_str(&crate::printers::table::elastic(&rows, 0, 2));
    text.push('\n');
    out(&text)
}

async fn undo(ctx: &Ctx, resource: &[String], to_revision: i64) -> Result<()> {
    let (info, name) = workload(resource)?;
    if info.plural != "deployments" {
        return Err(local(format!(
            "rollout undo is implemented for deployments only, not {}",
            info.qualified()
        )));
    }
    let obj = ctx
        .client
        .get_value(info, &ctx.namespace, &name)
        .await
        .map_err(|e| ctx.about(info, &name, &e))?;
    if obj.pointer("/spec/paused") == Some(&Value::Bool(true)) {
        return Err(local(format!(
            "you cannot rollback a paused deployment; resume it first with 'corral rollout resume deployment/{name}' and try again"
        )));
    }
    let rss = owned_replicasets(ctx, &obj).await?;
    let revisions: Vec<i64> = rss.iter().map(revision_of).filter(|r| *r > 0).collect();
    let target = undo_target(&revisions, to_revision).map_err(|e| {
        if to_revision == 0 {
            local(format!("no rollout history found for deployment {name:?}"))
        } else {
            local(e)
        }
    })?;
    let rs = rss
        .iter()
        .find(|rs| revision_of(rs) == target)
        .expect("target comes from these revisions");
    let template = template_for_rollback(rs);
    let changed = modify(ctx, info, &name, |d| {
        let current = d.pointer("/spec/template").cloned().unwrap_or(Value::Null);
        if canonical_template(&current) == canonical_template(&template) {
            return Ok(false);
        }
        d["spec"]["template"] = template.clone();
        let annotations = annotations_after_rollback(
            d.pointer("/metadata/annotations"),
            rs.metadata.annotations.as_ref(),
        );
        corral_api::object::set_meta(d, "annotations", annotations);
        Ok(true)
    })
    .await?;
    if changed {
        outln(&format!("{}/{name} rolled back", info.qualified()))
    } else {
        outln(&format!(
            "{}/{name} skipped rollback (current template already matches revision {target})",
            info.qualified()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn undo_goes_to_the_previous_revision_or_the_one_asked_for() {
        assert_eq!(undo_target(&[1, 2, 3], 0), Ok(2));
        assert_eq!(undo_target(&[3, 1], 0), Ok(1));
        assert_eq!(undo_target(&[1, 2, 3], 1), Ok(1));
        assert!(undo_target(&[1], 0).is_err());
        assert_eq!(
            undo_target(&[1, 2], 7),
            Err("unable to find specified revision 7 in history".to_string())
        );
    }

    #[test]
    fn rollback_takes_the_replicasets_change_cause_and_keeps_the_revision() {
        let d = json!({"deployment.kubernetes.io/revision": "3", "kubernetes.io/change-cause": "v3", "team": "a"});
        let rs: std::collections::BTreeMap<String, String> = [
            (
                "deployment.kubernetes.io/revision".to_string(),
                "1".to_string(),
            ),
            ("kubernetes.io/change-cause".to_string(), "v1".to_string()),
        ]
        .into();
        assert_eq!(
            annotations_after_rollback(Some(&d), Some(&rs)),
            json!({"deployment.kubernetes.io/revision": "3", "kubernetes.io/change-cause": "v1"})
        );
    }

    #[test]
    fn rollback_template_drops_the_pod_template_hash() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "d-1"},
            "spec": {"selector": {}, "template": {"metadata": {"labels": {"app": "d", "pod-template-hash": "abc"}},
                     "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}
        }))
        .unwrap();
        let t = template_for_rollback(&rs);
        assert_eq!(t["metadata"]["labels"], json!({"app": "d"}));
        assert_eq!(t["spec"]["containers"][0]["image"], "i:1");
    }
}
