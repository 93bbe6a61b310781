//! Delete: preconditions, the plan (remove now, or mark with deletionTimestamp, grace period
//! and propagation finalizers for the agent, the garbage collector or the namespace controller
//! to finish), and the purge of a namespace deleted without finalizers.

use corral_api::client::{DeleteOptions, PropagationPolicy};
use corral_api::kinds::{self, ResourceInfo};
use corral_api::object;
use serde_json::{json, Value};
use tracing::debug;

use super::cas::{Decision, Outcome};
use super::{decode_kv, encode, namespace, prefix, ApiError, Registry, Result, Subject};
use crate::store::StoreError;

const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-node-lease", "kube-public"];

impl Registry {
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<(Value, bool)> {
        let ns = if info.namespaced { namespace } else { "" };
        if info.plural == "namespaces" && PROTECTED_NAMESPACES.contains(&name) {
            return Err(ApiError::MethodNotAllowed(format!(
                "namespace {name:?} may not be deleted"
            )));
        }
        let precondition = opts.resource_version.unwrap_or(0);
        let outcome = self
            .update_with(info, ns, name, precondition, |kv| {
                let current = decode_kv(kv);
                if let Some(uid) = opts.uid.as_deref().filter(|u| !u.is_empty()) {
                    if uid != object::uid(&current) {
                        return Err(ApiError::Conflict {
                            what: Subject::resource(info, name),
                            reason: format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", object::uid(&current)),
                        });
                    }
                }
                let plan = plan_delete(info, &current, &opts);
                if opts.dry_run {
                    let finished = matches!(plan, DeletePlan::Remove);
                    return Ok(Decision::Keep((current, finished)));
                }
                Ok(match plan {
                    DeletePlan::Remove => Decision::Delete,
                    DeletePlan::Mark(mut updated) => Decision::Put(encode(info, &mut updated)?, ()),
                    DeletePlan::AlreadyMarked => Decision::Keep((current, false)),
                })
            })
            .await?;
        let (kv, finished) = match outcome {
            Outcome::Kept(answer) => return Ok(answer),
            Outcome::Put(kv, ()) => (kv, false),
            Outcome::Deleted(kv) => (kv, true),
        };
        debug!(
            resource = info.plural,
            namespace = ns,
            name,
            finished,
            "delete"
        );
        if finished && info.plural == "namespaces" {
            self.purge_namespace(name).await?;
        }
        if finished && info.plural == kinds::SERVICES.plural {
            self.release_deleted_service(&decode_kv(&kv)).await;
        }
        Ok((decode_kv(&kv), finished))
    }

    /// Removes every object in a namespace whose `kubernetes` finalizer was taken off by hand
    /// (`finalize`) while it was Terminating, when it is deleted again. Every other namespace
    /// is emptied by the namespace controller, which resumes after a crash.
    async fn purge_namespace(&self, namespace: &str) -> Result<()> {
        for info in kinds::ALL.iter().filter(|i| i.namespaced) {
            let (kvs, _) = self.store.list(&prefix(info, namespace)).await?;
            for kv in kvs {
                match self.store.delete(&kv.key, None).await {
                    Ok(gone) if info.plural == kinds::SERVICES.plural => {
                        self.release_deleted_service(&decode_kv(&gone)).await
                    }
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// An object marked for deletion goes away once its finalizers are gone (pods: once their
/// grace period has also been confirmed as 0 by the agent).
pub(super) fn deletion_complete(info: &ResourceInfo, object: &Value) -> bool {
    if object.pointer("/metadata/deletionTimestamp").is_none() || !finalizers(object).is_empty() {
        return false;
    }
    if info.plural == "namespaces" {
        return namespace::spec_finalizers(object).is_empty();
    }
    info.plural != "pods"
        || object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            == Some(0)
        || object::str_at(object, "/spec/nodeName").is_none_or(str::is_empty)
}

enum DeletePlan {
    Remove,
    Mark(Value),
    AlreadyMarked,
}

/// Decides what a delete does to `current`: remove it now, or mark it (deletionTimestamp,
/// grace period, propagation finalizers) for the agent or the garbage collector to finish.
fn plan_delete(info: &ResourceInfo, current: &Value, opts: &DeleteOptions) -> DeletePlan {
    let mut updated = current.clone();
    let mut fins = finalizers(current);
    let marked = current.pointer("/metadata/deletionTimestamp").is_some();
    let propagation_finalizer = match opts.propagation {
        PropagationPolicy::Foreground => Some("foregroundDeletion"),
        PropagationPolicy::Orphan => Some("orphan"),
        PropagationPolicy::Default | PropagationPolicy::Background => None,
    };
    if let Some(f) = propagation_finalizer {
        if !marked && !fins.iter().any(|x| x == f) {
            fins.push(f.to_string());
        }
    }
    let bound_pod = info.plural == "pods"
        && object::str_at(current, "/spec/nodeName").is_some_and(|n| !n.is_empty());
    let terminal = matches!(
        object::str_at(current, "/status/phase"),
        Some("Succeeded" | "Failed")
    );
    let grace = if bound_pod && !terminal {
        let requested = opts.grace_period_seconds.unwrap_or_else(|| {
            current
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        let existing = current
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        Some(existing.map_or(requested, |e| e.min(requested)).max(0))
    } else {
        None
    };
    let namespace = info.plural == "namespaces";
    // A namespace stays, Terminating, until the namespace controller has emptied it and
    // removed its spec.finalizers (a first delete adds `kubernetes` if it is missing).
    let held = namespace && (!marked || !namespace::spec_finalizers(current).is_empty());
    if fins.is_empty() && grace.is_none_or(|g| g == 0) && !held {
        return DeletePlan::Remove;
    }
    let existing_grace = current
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    if marked && fins == finalizers(current) && grace == existing_grace {
        return DeletePlan::AlreadyMarked;
    }
    let grace_secs = grace.unwrap_or(0);
    let deadline = if marked {
        current
            .pointer("/metadata/deletionTimestamp")
            .cloned()
            .unwrap_or(Value::Null)
    } else {
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace_secs);
        serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at))
            .unwrap_or_default()
    };
    object::set_meta(&mut updated, "deletionTimestamp", deadline);
    object::set_meta(
        &mut updated,
        "deletionGracePeriodSeconds",
        Value::from(grace_secs),
    );
    object::set_meta(
        &mut updated,
        "finalizers",
        if fins.is_empty() {
            Value::Null
        } else {
            json!(fins)
        },
    );
    if namespace && !marked {
        namespace::mark_terminating(&mut updated);
    }
    DeletePlan::Mark(updated)
}
