//! Reads: get, list and watch. Objects are served from their stored bytes (resourceVersion
//! spliced in) and parsed only where a selector or a caller needs the tree.

use corral_api::kinds::ResourceInfo;
use corral_api::selector::{FieldSelector, LabelSelectorExpr};
use serde_json::Value;

use super::page::{self, ListOptions, RevisionChoice};
use super::{decode_kv, encode_kv, key, prefix, ApiError, Filter, Registry, Result, Subject};
use crate::store::{KeyValue, Revision, StoreError, WatchStream};

/// One page of a list: stored objects as Kubernetes JSON, the revision they were read at, and
/// the token of the next page when there is one.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Vec<u8>>,
    pub revision: Revision,
    pub continue_token: Option<String>,
}

impl Registry {
    pub async fn get(&self, info: &ResourceInfo, namespace: &str, name: &str) -> Result<Value> {
        Ok(decode_kv(&self.get_stored(info, namespace, name).await?))
    }

    /// An object as Kubernetes JSON, without parsing it.
    pub async fn get_json(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<u8>> {
        Ok(encode_kv(&self.get_stored(info, namespace, name).await?))
    }

    async fn get_stored(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<KeyValue> {
        self.store
            .get(&key(info, namespace, name))
            .await?
            .ok_or_else(|| ApiError::NotFound {
                what: Subject::resource(info, name),
            })
    }

    pub async fn list(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        labels: &LabelSelectorExpr,
        fields: &FieldSelector,
    ) -> Result<(Vec<Value>, Revision)> {
        let (kvs, rev) = self.store.list(&prefix(info, namespace)).await?;
        let items = kvs
            .iter()
            .map(decode_kv)
            .filter(|v| labels.matches_object(v) && fields.matches(v))
            .collect();
        Ok((items, rev))
    }

    /// The objects of a kind that match the selectors, as Kubernetes JSON, one page of them
    /// at the revision `opts` choose. Objects are not parsed beyond the fields the selectors
    /// read, and are served from their stored bytes.
    pub async fn list_raw(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        labels: &LabelSelectorExpr,
        fields: &FieldSelector,
        opts: &ListOptions,
    ) -> Result<ListPage> {
        let prefix = prefix(info, namespace);
        let (kvs, revision) = self.read_at(&prefix, opts).await?;
        let filter = Filter::new(labels, fields);
        let after = opts.continue_from.as_ref().map(|c| c.after.as_str());
        let keyed = kvs
            .iter()
            .map(|kv| (kv.key[prefix.len()..].to_string(), kv));
        let (items, continue_token) =
            page::paginate(keyed, after, opts.limit, revision, |kv| filter.matches(kv));
        Ok(ListPage {
            items: items.into_iter().map(encode_kv).collect(),
            revision,
            continue_token,
        })
    }

    /// The keys under `prefix` at the revision a list asks for, and that revision.
    async fn read_at(&self, prefix: &str, opts: &ListOptions) -> Result<(Vec<KeyValue>, Revision)> {
        if let Some(c) = &opts.continue_from {
            return match self.store.list_at(prefix, c.revision).await {
                Ok(kvs) => Ok((kvs, c.revision)),
                Err(StoreError::Compacted { .. }) => Err(ApiError::ContinueExpired),
                Err(e) => Err(e.into()),
            };
        }
        match opts.revision {
            RevisionChoice::Newest => Ok(self.store.list(prefix).await?),
            RevisionChoice::NotOlderThan(wanted) => {
                let (kvs, current) = self.store.list(prefix).await?;
                if current < wanted {
                    return Err(ApiError::TooNew { wanted, current });
                }
                Ok((kvs, current))
            }
            RevisionChoice::Exact(wanted) => match self.store.list_at(prefix, wanted).await {
                Ok(kvs) => Ok((kvs, wanted)),
                Err(StoreError::FutureRevision { requested, current }) => Err(ApiError::TooNew {
                    wanted: requested,
                    current,
                }),
                Err(e) => Err(e.into()),
            },
        }
    }

    pub async fn watch(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        after: Revision,
    ) -> Result<WatchStream> {
        Ok(self.store.watch(&prefix(info, namespace), after).await?)
    }
}
