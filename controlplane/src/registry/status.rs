//! The status subresource on stored bytes: a status update replaces the `status` member of
//! the stored object and copies the rest, instead of parsing, cloning and re-serialising it.

use serde_json::Value;

use super::cas::{Decision, Outcome};
use super::raw::Edit;
use super::update::merge_status;
use super::{encode_kv, Registry, Result};
use crate::store::Revision;
use corral_api::kinds::ResourceInfo;

impl Registry {
    /// Writes `admitted`'s status over the stored object. A `precondition` other than 0 is the
    /// resourceVersion the object must still have.
    pub(super) async fn write_status(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        precondition: Revision,
        admitted: &Value,
    ) -> Result<Vec<u8>> {
        let status = admitted
            .get("status")
            .map(|s| serde_json::to_vec(s).expect("JSON values serialize"));
        let outcome = self
            .update_with(info, ns, name, precondition, |kv| {
                // An object being deleted takes the tree path, which also decides whether the
                // write completes the deletion.
                let edit = Edit::new(&kv.value).filter(|o| {
                    o.get("metadata")
                        .and_then(Edit::new)
                        .is_some_and(|m| m.get("deletionTimestamp").is_none())
                });
                let Some(mut edit) = edit else {
                    return Ok(Decision::Keep(None));
                };
                match &status {
                    Some(s) => edit.set("status", s.clone()),
                    None => edit.remove("status"),
                }
                let updated = edit.finish();
                if *updated == *kv.value {
                    return Ok(Decision::Keep(Some(encode_kv(kv))));
                }
                Ok(Decision::Put(updated, ()))
            })
            .await?;
        match outcome {
            Outcome::Put(kv, ()) | Outcome::Deleted(kv) => Ok(encode_kv(&kv)),
            Outcome::Kept(Some(unchanged)) => Ok(unchanged),
            // The tree path.
            Outcome::Kept(None) => {
                let written = self
                    .write_tree(info, ns, name, precondition, false, |current| {
                        Ok(merge_status(current, admitted))
                    })
                    .await?;
                Ok(written.json)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use corral_api::kinds;
    use serde_json::json;

    use super::*;
    use crate::registry::testutil::registry;
    use crate::registry::ApiError;
    use corral_api::client::DeleteOptions;

    #[tokio::test]
    async fn a_status_update_on_bytes_writes_what_the_tree_path_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = registry(&dir).await;
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        r.create(&kinds::PODS, "default", pod, false)
            .await
            .expect("created");
        r.bind("default", "p", "", "n1")
            .await
            .expect_err("no node n1");
        let current = r.get(&kinds::PODS, "default", "p").await.expect("exists");
        let mut request = current.clone();
        request["status"] = json!({"phase": "Running", "podIP": "10.0.0.5"});
        let admitted = corral_api::decode::check_schema(&kinds::PODS, &request).expect("valid");
        let want = merge_status(&current, &admitted);

        let json = r
            .update(&kinds::PODS, "default", request.clone(), true, false)
            .await
            .expect("status written");
        let mut got: Value = serde_json::from_slice(&json).expect("JSON");
        let rv = got["metadata"]["resourceVersion"].take();
        let mut want = want;
        want["metadata"]["resourceVersion"] = Value::Null;
        assert_eq!(got, want);
        assert_eq!(
            r.get(&kinds::PODS, "default", "p").await.expect("exists"),
            {
                let mut w = want.clone();
                w["metadata"]["resourceVersion"] = rv.clone();
                w
            }
        );

        // The same status again changes nothing, not even the revision.
        request["metadata"]["resourceVersion"] = rv.clone();
        let again = r
            .update(&kinds::PODS, "default", request.clone(), true, false)
            .await
            .expect("no-op");
        let again: Value = serde_json::from_slice(&again).expect("JSON");
        assert_eq!(again["metadata"]["resourceVersion"], rv);

        // A stale precondition is a conflict.
        request["metadata"]["resourceVersion"] = json!("1");
        let err = r
            .update(&kinds::PODS, "default", request, true, false)
            .await
            .expect_err("stale");
        assert!(matches!(err, ApiError::Conflict { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_status_update_on_an_object_being_deleted_still_completes_nothing_early() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = registry(&dir).await;
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "finalizers": ["example.com/hold"]},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        r.create(&kinds::PODS, "default", pod, false)
            .await
            .expect("created");
        let (_, finished) = r
            .delete(&kinds::PODS, "default", "p", DeleteOptions::default())
            .await
            .expect("marked");
        assert!(!finished);
        let mut request = r.get(&kinds::PODS, "default", "p").await.expect("exists");
        request["status"] = json!({"phase": "Failed"});
        request["metadata"]["resourceVersion"] = Value::Null;
        r.update(&kinds::PODS, "default", request, true, false)
            .await
            .expect("status written");
        let now = r
            .get(&kinds::PODS, "default", "p")
            .await
            .expect("still held");
        assert_eq!(now["status"]["phase"], "Failed");
        assert!(now.pointer("/metadata/deletionTimestamp").is_some());
    }
}
