//! Reads: get, list and watch. Objects are served from their stored bytes (resourceVersion
//! spliced in) and parsed only where a selector or a caller needs the tree.

use corral_api::kinds::ResourceInfo;
use corral_api::selector::{FieldSelector, LabelSelectorExpr};
use serde_json::Value;

use super::{decode_kv, encode_kv, key, prefix, ApiError, Filter, Registry, Result, Subject};
use crate::store::{KeyValue, Revision, WatchStream};

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

    /// The objects of a kind that match the selectors, as Kubernetes JSON. Objects are not
    /// parsed beyond the fields the selectors read, and are served from their stored bytes.
    pub async fn list_raw(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        labels: &LabelSelectorExpr,
        fields: &FieldSelector,
    ) -> Result<(Vec<Vec<u8>>, Revision)> {
        let (kvs, rev) = self.store.list(&prefix(info, namespace)).await?;
        let filter = Filter::new(labels, fields);
        Ok((
            kvs.iter()
                .filter(|kv| filter.matches(kv))
                .map(encode_kv)
                .collect(),
            rev,
        ))
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
