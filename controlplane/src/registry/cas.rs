//! The one compare-and-swap every registry update goes through: read the object, let the
//! caller decide what to write, write it at the revision read, and on a conflict read again.
//! A resourceVersion precondition, not-found and retries are handled here and only here;
//! `write_tree` is the parsed-object write on top of it (generation, no-ops, dry runs).

use corral_api::kinds::ResourceInfo;
use corral_api::object;
use serde_json::Value;

use super::{
    decode_kv, encode, encode_kv, key, same_except, ApiError, Registry, Result, Subject, Written,
};
use crate::store::{KeyValue, Revision, StoreError};

const WRITE_RETRIES: usize = 8;

/// What a write makes of the stored object.
pub(super) enum Decision<P, K> {
    /// Store these bytes in its place; `P` is kept for when the write lands.
    Put(Vec<u8>, P),
    /// Delete it.
    Delete,
    /// Write nothing and answer with `K` (a no-op, a dry run, a refusal to decide here).
    Keep(K),
}

/// What a write did: the stored or deleted key-value, or the answer without a write.
pub(super) enum Outcome<P, K> {
    Put(KeyValue, P),
    Deleted(KeyValue),
    Kept(K),
}

/// The object changed between read and write (or a precondition names another revision).
fn conflict(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::Conflict {
        what: Subject::resource(info, name),
        reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

impl Registry {
    /// Read-modify-write of one object with compare-and-swap. `precondition`, when not 0, is
    /// the resourceVersion the object must have; a write that loses a race is decided again
    /// on the new object (and so fails the precondition if one was given).
    pub(super) async fn update_with<P, K>(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        precondition: Revision,
        mut decide: impl FnMut(&KeyValue) -> Result<Decision<P, K>>,
    ) -> Result<Outcome<P, K>> {
        let key = key(info, ns, name);
        let not_found = || ApiError::NotFound {
            what: Subject::resource(info, name),
        };
        for _ in 0..WRITE_RETRIES {
            let kv = self.store.get(&key).await?.ok_or_else(not_found)?;
            if precondition != 0 && precondition != kv.mod_revision {
                return Err(conflict(info, name));
            }
            let written = match decide(&kv)? {
                Decision::Keep(answer) => return Ok(Outcome::Kept(answer)),
                Decision::Put(bytes, p) => self
                    .store
                    .update(&key, bytes, kv.mod_revision)
                    .await
                    .map(|kv| Outcome::Put(kv, p)),
                Decision::Delete => self
                    .store
                    .delete(&key, Some(kv.mod_revision))
                    .await
                    .map(Outcome::Deleted),
            };
            match written {
                Ok(outcome) => return Ok(outcome),
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => return Err(not_found()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(info, name))
    }

    /// A write on the parsed object: `change` maps the current object to the new one. A
    /// change outside metadata and status bumps the generation; an unchanged object is not
    /// written; an object whose deletion the change completes is deleted.
    pub(super) async fn write_tree(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        precondition: Revision,
        dry_run: bool,
        mut change: impl FnMut(&Value) -> Result<Value>,
    ) -> Result<Written> {
        let outcome = self
            .update_with(info, ns, name, precondition, |kv| {
                let current = decode_kv(kv);
                let mut updated = change(&current)?;
                if !same_except(&updated, &current, &["metadata", "status"]) {
                    let generation = current
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if info.has_status || info.has_scale {
                        object::set_meta(&mut updated, "generation", Value::from(generation + 1));
                    }
                }
                if same_except(&updated, &current, &[]) {
                    return Ok(Decision::Keep(Written {
                        object: current,
                        json: encode_kv(kv),
                        warnings: Vec::new(),
                    }));
                }
                if dry_run {
                    return Ok(Decision::Keep(Written::unwritten(updated)));
                }
                if super::delete::deletion_complete(info, &updated) {
                    return Ok(Decision::Delete);
                }
                Ok(Decision::Put(encode(info, &mut updated)?, updated))
            })
            .await?;
        Ok(match outcome {
            Outcome::Put(kv, updated) => Written::stored(updated, &kv),
            Outcome::Deleted(kv) => Written {
                object: decode_kv(&kv),
                json: encode_kv(&kv),
                warnings: Vec::new(),
            },
            Outcome::Kept(answer) => answer,
        })
    }
}
