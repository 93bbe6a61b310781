//! The binding subresource: a bind changes `spec.nodeName`, adds the PodScheduled condition
//! and bumps `metadata.generation`, so it edits those three members of the stored bytes and
//! copies the rest of the pod; pods of unusual shape take the parsed-tree path.

use corral_api::{kinds, object};
use serde_json::{json, Value};
use tracing::debug;

use super::cas::{Decision, Outcome};
use super::raw::Edit;
use super::{encode_kv, key, ApiError, Registry, Result, Subject, Written};

/// Why a pod cannot be bound, in the words of the tree path.
fn refuse(name: &str, reason: String) -> ApiError {
    ApiError::Conflict {
        what: Subject::resource(&kinds::PODS, name),
        reason,
    }
}

/// The checks of a bind against the current pod (shared with the tree path).
pub(super) fn check(
    name: &str,
    uid: &str,
    current_uid: &str,
    deleting: bool,
    bound: Option<&str>,
) -> Result<(), ApiError> {
    if !uid.is_empty() && current_uid != uid {
        return Err(refuse(
            name,
            "the pod's UID changed: it was deleted and recreated".into(),
        ));
    }
    if deleting {
        return Err(refuse(name, "the pod is being deleted".into()));
    }
    if let Some(bound) = bound.filter(|n| !n.is_empty()) {
        return Err(refuse(
            name,
            format!("pod {name} is already assigned to node {bound:?}"),
        ));
    }
    Ok(())
}

/// The stored pod bound to `node`, or why not; `None` when the stored bytes have an unusual
/// shape (no spec object, say) and the tree path should decide.
pub(super) fn patch(
    stored: &[u8],
    name: &str,
    uid: &str,
    node: &str,
    now: &Value,
) -> Option<Result<Vec<u8>, ApiError>> {
    let mut pod = Edit::new(stored)?;
    let mut meta = Edit::new(pod.get("metadata")?)?;
    let mut spec = Edit::new(pod.get("spec")?)?;
    let current_uid = meta.parse("uid");
    let bound = spec.parse("nodeName");
    if let Err(e) = check(
        name,
        uid,
        current_uid.as_ref().and_then(Value::as_str).unwrap_or(""),
        meta.get("deletionTimestamp").is_some(),
        bound.as_ref().and_then(Value::as_str),
    ) {
        return Some(Err(e));
    }
    let generation = match meta.get("generation") {
        Some(_) => meta.parse("generation")?.as_i64().unwrap_or(0),
        None => 0,
    };
    meta.set("generation", (generation + 1).to_string().into_bytes());
    meta.remove("resourceVersion");
    spec.set("nodeName", serde_json::to_vec(node).ok()?);
    let mut holder = serde_json::Map::new();
    if pod.get("status").is_some() {
        holder.insert("status".into(), pod.parse("status")?);
    }
    let mut holder = Value::Object(holder);
    set_condition_at(&mut holder, "PodScheduled", "True", None, now.clone());
    let status = serde_json::to_vec(&holder["status"]).ok()?;
    let (meta, spec) = (meta.finish(), spec.finish());
    pod.set("metadata", meta);
    pod.set("spec", spec);
    pod.set("status", status);
    Some(Ok(pod.finish()))
}

/// The stored pod is of a shape the byte edit leaves to the tree path.
struct TreePath;

impl Registry {
    /// Binds a pod to a node: once, and only to a node that exists. The pod's stored JSON is
    /// edited in place (see [`patch`]); the tree path handles pods of unusual shape.
    pub async fn bind(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        node: &str,
    ) -> Result<Vec<u8>> {
        if node.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "binding pods {name:?}: target node name is required"
            )));
        }
        if self
            .store
            .get(&key(&kinds::NODES, "", node))
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound {
                what: Subject::resource(&kinds::NODES, node),
            });
        }
        let now = serde_json::to_value(object::now()).unwrap_or_default();
        let outcome = self
            .update_with(&kinds::PODS, namespace, name, 0, |kv| {
                Ok(match patch(&kv.value, name, uid, node, &now) {
                    Some(patched) => Decision::Put(patched?, ()),
                    None => Decision::Keep(TreePath),
                })
            })
            .await?;
        match outcome {
            Outcome::Put(kv, ()) | Outcome::Deleted(kv) => {
                debug!(namespace, pod = name, node, rev = kv.mod_revision, "bound");
                Ok(encode_kv(&kv))
            }
            Outcome::Kept(TreePath) => {
                Ok(self.bind_tree(namespace, name, uid, node, now).await?.json)
            }
        }
    }

    /// A bind on the parsed tree, for stored pods the byte edit does not handle.
    async fn bind_tree(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        node: &str,
        now: Value,
    ) -> Result<Written> {
        self.write_tree(&kinds::PODS, namespace, name, 0, false, |current| {
            check(
                name,
                uid,
                object::uid(current),
                current.pointer("/metadata/deletionTimestamp").is_some(),
                object::str_at(current, "/spec/nodeName"),
            )?;
            let mut updated = current.clone();
            updated["spec"]["nodeName"] = Value::from(node);
            set_condition_at(&mut updated, "PodScheduled", "True", None, now.clone());
            Ok(updated)
        })
        .await
    }
}

/// Sets a condition in `status.conditions`, keeping the transition time when unchanged.
fn set_condition_at(
    object: &mut Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    now: Value,
) {
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({});
    }
    let conditions = object["status"]
        .as_object_mut()
        .expect("status is an object")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("conditions is an array");
    let mut cond = json!({"type": kind, "status": status, "lastTransitionTime": now});
    if let Some(r) = reason {
        cond["reason"] = Value::from(r);
    }
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
    {
        Some(existing) if existing.get("status").and_then(Value::as_str) == Some(status) => {}
        Some(existing) => *existing = cond,
        None => list.push(cond),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the tree path makes of a bind (the registry's write loop, for a pod).
    fn by_tree(current: &Value, node: &str, now: &Value) -> Value {
        let mut updated = current.clone();
        updated["spec"]["nodeName"] = Value::from(node);
        set_condition_at(&mut updated, "PodScheduled", "True", None, now.clone());
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        updated["metadata"]["generation"] = Value::from(generation + 1);
        updated
    }

    #[test]
    fn a_patched_bind_is_byte_for_byte_what_the_tree_path_writes() {
        let now = json!("2026-11-25T22:00:00Z");
        let pods = [
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "default", "uid": "u1", "generation": 1,
                    "labels": {"app": "x"}, "creationTimestamp": "2026-11-25T21:00:00Z"},
                "spec": {"containers": [{"name": "c", "image": "i"}], "schedulerName": "default-scheduler"},
                "status": {"phase": "Pending"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u1"},
                "spec": {"nodeName": "", "containers": []}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u1", "generation": 4},
                "spec": {"containers": []},
                "status": {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": "2026-11-25T21:00:00Z"},
                    {"type": "Other", "status": "True"}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u1"},
                "spec": {"containers": []},
                "status": {"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-25T21:00:00Z"}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p\"q", "uid": "u1"},
                "spec": {"containers": [], "nodeSelector": {"a\\b": "\u{e9}"}}, "status": "odd"}),
        ];
        for pod in pods {
            let stored = serde_json::to_vec(&pod).expect("serialises");
            let patched = patch(&stored, "p", "u1", "node-1", &now)
                .expect("a usual shape")
                .expect("bindable");
            let want = serde_json::to_vec(&by_tree(&pod, "node-1", &now)).expect("serialises");
            assert_eq!(
                String::from_utf8_lossy(&patched),
                String::from_utf8_lossy(&want)
            );
        }
    }

    #[test]
    fn a_patched_bind_refuses_what_the_tree_path_refuses() {
        let now = json!("2026-11-25T22:00:00Z");
        let cases = [
            (
                json!({"metadata": {"uid": "other"}, "spec": {}}),
                "UID changed",
            ),
            (
                json!({"metadata": {"uid": "u1", "deletionTimestamp": "2026-11-25T22:00:00Z"}, "spec": {}}),
                "being deleted",
            ),
            (
                json!({"metadata": {"uid": "u1"}, "spec": {"nodeName": "n0"}}),
                "already assigned to node \"n0\"",
            ),
        ];
        for (pod, reason) in cases {
            let stored = serde_json::to_vec(&pod).expect("serialises");
            let err = patch(&stored, "p", "u1", "node-1", &now)
                .expect("a usual shape")
                .expect_err("refused");
            assert!(err.to_string().contains(reason), "{err}");
        }
        let no_spec = serde_json::to_vec(&json!({"metadata": {"uid": "u1"}})).expect("serialises");
        assert!(patch(&no_spec, "p", "u1", "node-1", &now).is_none());
    }
}
