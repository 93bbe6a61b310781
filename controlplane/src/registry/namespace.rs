//! What the registry does for namespaces beyond any object, as kube-apiserver does it: no new
//! content in a Terminating namespace (the NamespaceLifecycle admission), and the `finalize`
//! subresource, the one write that changes `spec.finalizers` (the namespace controller removes
//! the `kubernetes` finalizer through it once the namespace is empty; the namespace then goes).

use corral_api::kinds::{self, ResourceInfo};
use corral_api::object;
use corral_api::status::{CauseType, StatusCause};
use serde_json::{json, Value};

use super::{decode_kv, key, ApiError, Registry, Result, Subject};
use crate::validate::{FieldError, NAMESPACE_FINALIZER};

/// `status.phase` of a namespace being deleted.
pub const TERMINATING: &str = "Terminating";

/// The namespace's `spec.finalizers`.
pub(super) fn spec_finalizers(namespace: &Value) -> Vec<String> {
    namespace
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `spec.finalizers` (removed when empty).
fn set_spec_finalizers(namespace: &mut Value, finalizers: &[String]) {
    if finalizers.is_empty() {
        if let Some(spec) = namespace.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("finalizers");
        }
    } else {
        namespace["spec"]["finalizers"] = json!(finalizers);
    }
}

/// A namespace marked for deletion shows it in its phase, and is held by the `kubernetes`
/// finalizer (added if a namespace stored before finalizers were defaulted lacks it) until
/// the namespace controller has emptied it: the purge resumes after a crash.
pub(super) fn mark_terminating(namespace: &mut Value) {
    namespace["status"]["phase"] = Value::from(TERMINATING);
    let mut finalizers = spec_finalizers(namespace);
    if !finalizers.iter().any(|f| f == NAMESPACE_FINALIZER) {
        finalizers.push(NAMESPACE_FINALIZER.to_string());
        set_spec_finalizers(namespace, &finalizers);
    }
}

/// A main update or apply may not change `spec.finalizers` (only `finalize` does).
pub(super) fn keep_spec_finalizers(current: &Value, updated: &mut Value) {
    set_spec_finalizers(updated, &spec_finalizers(current));
}

fn is_terminating(namespace: &Value) -> bool {
    namespace.pointer("/metadata/deletionTimestamp").is_some()
        || object::str_at(namespace, "/status/phase") == Some(TERMINATING)
}

impl Registry {
    /// New content (`info`, `name`) may go into namespace `ns` only while it exists and is
    /// not being terminated.
    pub(super) async fn check_namespace_open(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
    ) -> Result<()> {
        let Some(kv) = self.store.get(&key(&kinds::NAMESPACES, "", ns)).await? else {
            return Err(ApiError::NotFound {
                what: Subject::resource(&kinds::NAMESPACES, ns),
            });
        };
        if is_terminating(&decode_kv(&kv)) {
            return Err(ApiError::Forbidden {
                what: Subject::resource(info, name),
                reason: format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
                causes: vec![StatusCause {
                    kind: CauseType::Other("NamespaceTerminating".into()),
                    field: "metadata.namespace".into(),
                    message: format!("namespace {ns} is being terminated"),
                }],
            });
        }
        Ok(())
    }

    /// The `finalize` subresource: writes the request's `spec.finalizers` and nothing else. A
    /// resourceVersion in the body is a precondition. A Terminating namespace whose finalizers
    /// (spec and metadata) are all gone is deleted by this write.
    pub async fn finalize_namespace(&self, object: Value, dry_run: bool) -> Result<Vec<u8>> {
        let info = &kinds::NAMESPACES;
        let name = Self::required_name(info, &object, "Required value")?;
        let precondition = object::resource_version(&object);
        let wanted = match object.pointer("/spec/finalizers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, f)| match f.as_str() {
                    Some(s) if !s.is_empty() => Ok(s.to_string()),
                    _ => Err(invalid_finalizer(&name, i, f)),
                })
                .collect::<Result<Vec<_>>>()?,
            Some(other) => {
                return Err(ApiError::Invalid {
                    what: Subject::kind(info, &name),
                    errors: vec![FieldError {
                        path: "spec.finalizers".into(),
                        detail: format!("Invalid value: {other}: must be a list of strings"),
                    }],
                })
            }
        };
        let written = self
            .write_tree(info, "", &name, precondition, dry_run, |current| {
                let mut updated = current.clone();
                set_spec_finalizers(&mut updated, &wanted);
                Ok(updated)
            })
            .await?;
        Ok(written.json)
    }
}

fn invalid_finalizer(name: &str, index: usize, value: &Value) -> ApiError {
    ApiError::Invalid {
        what: Subject::kind(&kinds::NAMESPACES, name),
        errors: vec![FieldError {
            path: format!("spec.finalizers[{index}]"),
            detail: format!("Invalid value: {value}: must be a non-empty string"),
        }],
    }
}

#[cfg(test)]
mod tests {
    use corral_api::client::DeleteOptions;
    use serde_json::json;

    use super::*;
    use crate::registry::testutil::registry;

    fn ns(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    }

    #[tokio::test]
    async fn a_namespace_goes_only_when_finalize_removes_its_last_finalizer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = registry(&dir).await;
        let created = r
            .create(&kinds::NAMESPACES, "", ns("x"), false)
            .await
            .expect("created");
        assert_eq!(spec_finalizers(&created.object), ["kubernetes"]);

        // A main update may not drop the finalizer: it is kept as stored.
        let mut request = r.get(&kinds::NAMESPACES, "", "x").await.expect("exists");
        request["spec"] = json!({"finalizers": []});
        request["metadata"]["labels"] = json!({"a": "b"});
        r.update(&kinds::NAMESPACES, "", request, false, false)
            .await
            .expect("updated");
        let now = r.get(&kinds::NAMESPACES, "", "x").await.expect("exists");
        assert_eq!(spec_finalizers(&now), ["kubernetes"]);
        assert_eq!(now["metadata"]["labels"]["a"], "b");

        let (marked, finished) = r
            .delete(&kinds::NAMESPACES, "", "x", DeleteOptions::default())
            .await
            .expect("marked");
        assert!(!finished);
        assert_eq!(marked["status"]["phase"], TERMINATING);
        assert!(marked.pointer("/metadata/deletionTimestamp").is_some());
        // A status write (conditions) does not finish it either.
        let mut status = marked.clone();
        status["status"]["conditions"] =
            json!([{"type": "NamespaceContentRemaining", "status": "False"}]);
        status["metadata"]["resourceVersion"] = Value::Null;
        r.update(&kinds::NAMESPACES, "", status, true, false)
            .await
            .expect("status written");
        r.get(&kinds::NAMESPACES, "", "x")
            .await
            .expect("still there");

        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}});
        let err = r
            .create(&kinds::CONFIGMAPS, "x", cm, false)
            .await
            .expect_err("terminating");
        assert_eq!(
            err.to_string(),
            "configmaps \"late\" is forbidden: unable to create new content in namespace x because it is being terminated"
        );

        let mut finalize = r.get(&kinds::NAMESPACES, "", "x").await.expect("exists");
        finalize["spec"]["finalizers"] = json!([]);
        r.finalize_namespace(finalize, false)
            .await
            .expect("finalized");
        let err = r.get(&kinds::NAMESPACES, "", "x").await.expect_err("gone");
        assert!(matches!(err, ApiError::NotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn finalize_on_an_active_namespace_only_changes_its_finalizers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = registry(&dir).await;
        r.create(&kinds::NAMESPACES, "", ns("y"), false)
            .await
            .expect("created");
        let mut request = r.get(&kinds::NAMESPACES, "", "y").await.expect("exists");
        request["spec"]["finalizers"] = json!(["kubernetes", "example.com/keep"]);
        request["metadata"]["labels"] = json!({"ignored": "yes"});
        r.finalize_namespace(request, false).await.expect("written");
        let now = r.get(&kinds::NAMESPACES, "", "y").await.expect("exists");
        assert_eq!(spec_finalizers(&now), ["kubernetes", "example.com/keep"]);
        assert!(now.pointer("/metadata/labels").is_none());
        let bad = json!({"metadata": {"name": "y"}, "spec": {"finalizers": [""]}});
        let err = r.finalize_namespace(bad, false).await.expect_err("invalid");
        assert!(err.to_string().contains("spec.finalizers[0]"), "{err}");
    }

    #[tokio::test]
    async fn a_namespace_without_the_finalizer_is_held_by_it_when_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = registry(&dir).await;
        r.create(&kinds::NAMESPACES, "", ns("old"), false)
            .await
            .expect("created");
        // As stored before finalizers were defaulted (or after a manual finalize).
        let mut request = r.get(&kinds::NAMESPACES, "", "old").await.expect("exists");
        request["spec"]["finalizers"] = json!([]);
        r.finalize_namespace(request, false).await.expect("written");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        r.create(&kinds::CONFIGMAPS, "old", cm, false)
            .await
            .expect("content");

        let (marked, finished) = r
            .delete(&kinds::NAMESPACES, "", "old", DeleteOptions::default())
            .await
            .expect("marked");
        assert!(
            !finished,
            "removed at once, its content purged outside any controller"
        );
        assert_eq!(marked["status"]["phase"], TERMINATING);
        assert_eq!(spec_finalizers(&marked), ["kubernetes"]);
        r.get(&kinds::CONFIGMAPS, "old", "c")
            .await
            .expect("left for the namespace controller");
    }
}
