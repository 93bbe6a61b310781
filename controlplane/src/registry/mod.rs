//! The registry: every API verb on objects of any kind, over the store. It owns object
//! metadata (uid, resourceVersion, generation, deletion), runs defaulting and validation,
//! and keeps each write a single compare-and-swap (`cas.rs`), so nothing is half-applied.

use std::sync::Arc;

use corral_api::kinds::{self, ResourceInfo};
use serde_json::{json, Value};

use crate::store::{KeyValue, Store};
use crate::validate::Defaults;

mod alloc;
pub mod apply;
mod bind;
mod cas;
mod codec;
mod create;
mod delete;
mod error;
pub mod managed;
mod namespace;
mod page;
mod podsecurity;
pub mod raw;
mod read;
mod status;
#[cfg(test)]
pub(crate) mod testutil;
mod update;

pub use alloc::{spawn_repair as spawn_claim_repair, ServiceAllocator};
pub use codec::{decode_kv, encode_kv, Filter};
pub use error::{ApiError, Result, Subject};
pub use managed::FieldManager;
pub use namespace::TERMINATING;
pub use page::{Continue, ListOptions, RevisionChoice};
pub use read::ListPage;
pub use update::Updated;

use codec::{encode, same_except, stamped};

/// An object just written (or, for a no-op or a dry run, the object as it stands): the tree
/// the write produced and its JSON as clients get it, with the resourceVersion.
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    pub json: Vec<u8>,
    /// Admission warnings for the client (Kubernetes' `Warning` headers).
    pub warnings: Vec<String>,
}

impl Written {
    /// After a store write: the JSON is the stored bytes with the revision spliced in.
    fn stored(object: Value, kv: &KeyValue) -> Self {
        Self {
            object: stamped(object, kv),
            json: encode_kv(kv),
            warnings: Vec::new(),
        }
    }

    /// Not written (a dry run): the JSON is serialised from the tree.
    fn unwritten(object: Value) -> Self {
        let json = serde_json::to_vec(&object).expect("JSON values serialize");
        Self {
            object,
            json,
            warnings: Vec::new(),
        }
    }
}

/// Outcome of an apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

pub struct Registry {
    store: Arc<dyn Store>,
    defaults: Defaults,
    services: ServiceAllocator,
    /// Pod Security policy of namespaces without its labels.
    pod_security: crate::admission::podsecurity::Defaults,
}

pub fn key(info: &ResourceInfo, namespace: &str, name: &str) -> String {
    if info.namespaced {
        format!("/registry/{}/{namespace}/{name}", info.plural)
    } else {
        format!("/registry/{}/{name}", info.plural)
    }
}

pub fn prefix(info: &ResourceInfo, namespace: &str) -> String {
    if info.namespaced && !namespace.is_empty() {
        format!("/registry/{}/{namespace}/", info.plural)
    } else {
        format!("/registry/{}/", info.plural)
    }
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, defaults: Defaults, services: ServiceAllocator) -> Self {
        Self {
            store,
            defaults,
            services,
            pod_security: Default::default(),
        }
    }

    /// Sets the Pod Security policy of namespaces without its labels (default: privileged).
    pub fn with_pod_security(mut self, defaults: crate::admission::podsecurity::Defaults) -> Self {
        self.pod_security = defaults;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Creates the namespaces every cluster has, and the default roles and bindings.
    pub async fn bootstrap(&self) -> Result<()> {
        for ns in ["default", "kube-system", "kube-node-lease", "kube-public"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.create(&kinds::NAMESPACES, "", obj, false).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        // Services stored before address claims existed (an older version, a migrated
        // cluster) get theirs before this server allocates anything.
        alloc::Repairer::new(alloc::GRACE)
            .pass(self.store.as_ref(), tokio::time::Instant::now())
            .await?;
        crate::auth::authz::bootstrap::reconcile(self).await
    }
}
