//! `apply`: a three-way merge between the last applied manifest (kept in the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation, as kubectl does), the new
//! manifest and the live object. Fields the manifest sets win; fields it dropped since the
//! last apply are removed; fields others set (status, server defaults, `scale`) are kept.

use corral_api::decode;
use serde_json::{Map, Value};

use super::alloc::Used;
use super::{key, podsecurity, same_except, ApiError, Applied, Registry, Result, Written};

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manifest as recorded in the annotation: no status, no server-owned metadata.
pub fn last_applied_form(manifest: &Value) -> Value {
    let mut v = manifest.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
        ] {
            meta.remove(f);
        }
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            ann.remove(LAST_APPLIED);
            if ann.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    v
}

pub fn annotate(object: &mut Value, applied: &Value) {
    let text = serde_json::to_string(applied).expect("JSON values serialize");
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = Value::Object(Map::new());
    }
    let meta = object["metadata"]
        .as_object_mut()
        .expect("metadata is an object");
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !ann.is_object() {
        *ann = Value::Object(Map::new());
    }
    ann[LAST_APPLIED] = Value::from(text);
}

/// The object to store when `manifest` is applied over `current`.
pub fn merge(current: &Value, manifest: &Value, applied: &Value) -> Value {
    let last: Option<Value> = current
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok());
    let mut merged = merge3(last.as_ref(), applied, current);
    if let Some(status) = current.get("status") {
        merged["status"] = status.clone();
    }
    // The manifest's resourceVersion, if any, is not a precondition for apply.
    if let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    annotate(&mut merged, applied);
    let _ = manifest;
    merged
}

fn merge3(last: Option<&Value>, applied: &Value, current: &Value) -> Value {
    match (applied, current) {
        (Value::Object(a), Value::Object(c)) => {
            let mut out = c.clone();
            for (k, av) in a {
                let merged = match c.get(k) {
                    Some(cv) => merge3(last.and_then(|l| l.get(k)), av, cv),
                    None => av.clone(),
                };
                out.insert(k.clone(), merged);
            }
            if let Some(Value::Object(l)) = last {
                for k in l.keys() {
                    if !a.contains_key(k) {
                        out.remove(k);
                    }
                }
            }
            Value::Object(out)
        }
        _ => applied.clone(),
    }
}

impl Registry {
    /// Creates the object, or merges it over the live one (see [`merge`]).
    pub async fn apply(
        &self,
        namespace: &str,
        object: Value,
        dry_run: bool,
    ) -> Result<(Applied, Written)> {
        let info = decode::kind_of(&object)?;
        let mut object = object;
        let ns = Self::resolve_namespace(info, namespace, &mut object)?;
        let name =
            Self::required_name(info, &object, "Required value: name is required for apply")?;
        let applied = last_applied_form(&object);
        let exists = self.store.get(&key(info, &ns, &name)).await?.is_some();
        if !exists {
            let mut with_annotation = object.clone();
            annotate(&mut with_annotation, &applied);
            return match self.create(info, &ns, with_annotation, dry_run).await {
                Ok(v) => Ok((Applied::Created, v)),
                Err(ApiError::AlreadyExists { .. }) => {
                    Box::pin(self.apply(namespace, object, dry_run)).await
                }
                Err(e) => Err(e),
            };
        }
        let mut before = None;
        let policy = self.pod_security_policy(info, &ns).await?;
        let mut warnings = Vec::new();
        let mut change = |current: &Value, used: &Used| {
            before = Some(current.clone());
            let merged = merge(current, &object, &applied);
            let admitted = self.admit(info, merged)?;
            let updated = self.merge_main(info, current, &admitted, used, None)?;
            if let Some(policy) = &policy {
                warnings = podsecurity::admit(info, &ns, policy, &updated, Some(current))?;
            }
            Ok(updated)
        };
        let mut result = if info.plural == corral_api::kinds::SERVICES.plural {
            self.write_service(info, &ns, &name, 0, dry_run, change)
                .await?
        } else {
            self.write_tree(info, &ns, &name, 0, dry_run, |current| {
                change(current, &Used::default())
            })
            .await?
        };
        if let (Some(old), true) = (&before, info.plural == "namespaces") {
            warnings.extend(self.existing_pod_warnings(old, &result.object).await?);
        }
        result.warnings = warnings;
        let outcome = if before
            .as_ref()
            .is_some_and(|b| same_except(b, &result.object, &[]))
        {
            Applied::Unchanged
        } else {
            Applied::Configured
        };
        Ok((outcome, result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn manifest_fields_win_dropped_fields_go_and_others_stay() {
        let last = json!({"metadata": {"name": "d", "labels": {"a": "1", "old": "x"}}, "spec": {"replicas": 3, "paused": false}});
        let mut current = json!({
            "metadata": {"name": "d", "uid": "u", "labels": {"a": "1", "old": "x", "added-by-hand": "y"},
                         "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"replicas": 5, "paused": false, "revisionHistoryLimit": 10},
            "status": {"replicas": 5}
        });
        annotate(&mut current, &last);
        let manifest =
            json!({"metadata": {"name": "d", "labels": {"a": "2"}}, "spec": {"replicas": 3}});
        let merged = merge(&current, &manifest, &last_applied_form(&manifest));
        assert_eq!(
            merged["metadata"]["labels"],
            json!({"a": "2", "added-by-hand": "y"})
        );
        assert_eq!(merged["metadata"]["uid"], "u");
        assert_eq!(
            merged["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
            "2"
        );
        assert_eq!(
            merged["spec"],
            json!({"replicas": 3, "revisionHistoryLimit": 10})
        );
        assert_eq!(merged["status"], json!({"replicas": 5}));
    }

    #[test]
    fn the_recorded_manifest_reads_back_exactly_so_a_second_apply_sees_no_change() {
        // Found by fuzzing: 7777777000e122 was recorded as `7.777777e131`, which read back as
        // 7.777776999999999e131 (serde_json's float parsing was not exact).
        let manifest: Value = serde_json::from_str(
            r#"{"metadata": {"name": "x"}, "spec": {"x": 7777777000e122, "y": 0.1}}"#,
        )
        .expect("JSON");
        let applied = last_applied_form(&manifest);
        let merged = merge(&json!({"metadata": {"name": "x"}}), &manifest, &applied);
        let recorded = merged["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .expect("recorded");
        let read: Value = serde_json::from_str(recorded).expect("JSON");
        assert_eq!(read, applied);
        assert_eq!(merge(&merged, &manifest, &applied), merged);
    }

    #[test]
    fn replicas_left_out_of_the_manifest_keep_the_scaled_value() {
        let manifest = json!({"metadata": {"name": "rs"}, "spec": {"template": {"x": 1}}});
        let mut current =
            json!({"metadata": {"name": "rs"}, "spec": {"replicas": 5, "template": {"x": 0}}});
        annotate(&mut current, &last_applied_form(&manifest));
        let merged = merge(&current, &manifest, &last_applied_form(&manifest));
        assert_eq!(merged["spec"]["replicas"], 5);
        assert_eq!(merged["spec"]["template"]["x"], 1);
    }
}
