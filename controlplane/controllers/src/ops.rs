//! Thin executors shared by the controllers: create, delete and update objects through the API
//! and record the result in the local cache so the next reconcile sees it.

use std::sync::Arc;

use corral_api::client::Object;
use corral_api::{Client, DeleteOptions};
use futures::stream::{self, StreamExt};

use crate::util;
use crate::Error;
use corral_api::runtime::Store;

/// How many API calls one reconcile keeps in flight.
pub const PARALLEL_CALLS: usize = 64;

fn api_err(
    action: &'static str,
    kind: &str,
    ns: &str,
    name: &str,
) -> impl Fn(corral_api::client::Error) -> Error {
    let object = if ns.is_empty() {
        format!("{} \"{}\"", kind.to_lowercase(), name)
    } else {
        format!("{} \"{}/{}\"", kind.to_lowercase(), ns, name)
    };
    move |source| Error::Api {
        action,
        object: object.clone(),
        source,
    }
}

/// Creates `object`, retrying with a fresh generated name on a name clash.
pub async fn create<K: Object>(
    client: &Client,
    store: &Store<K>,
    object: K,
    name_for: impl Fn(K) -> K,
) -> Result<K, Error> {
    let mut attempt = 0;
    loop {
        let candidate = name_for(object.clone());
        let (ns, name) = (
            util::namespace(candidate.metadata()).to_string(),
            util::name(candidate.metadata()).to_string(),
        );
        match client.create(&candidate).await {
            Ok(created) => {
                store.record_write(created.clone());
                return Ok(created);
            }
            Err(e) if e.is_already_exists() && object.metadata().name.is_none() && attempt < 3 => {
                attempt += 1;
            }
            Err(e) => return Err(api_err("creating", K::KIND, &ns, &name)(e)),
        }
    }
}

/// Deletes `object` (guarded by its uid). Returns false when it was already gone.
pub async fn delete<K: Object>(
    client: &Client,
    store: &Store<K>,
    object: &K,
    mut opts: DeleteOptions,
) -> Result<bool, Error> {
    let meta = object.metadata();
    let (ns, name) = (util::namespace(meta), util::name(meta));
    opts.uid = meta.uid.clone();
    match client.delete_value(K::info(), ns, name, opts).await {
        Ok((value, finished)) => {
            if finished {
                store.record_delete(object);
            } else if let Ok(marked) = serde_json::from_value::<K>(value) {
                store.record_write(marked);
            }
            Ok(true)
        }
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(false),
        Err(e) => Err(api_err("deleting", K::KIND, ns, name)(e)),
    }
}

/// Updates the object (compare-and-swap on its resourceVersion).
pub async fn update<K: Object>(client: &Client, store: &Store<K>, object: &K) -> Result<K, Error> {
    let meta = object.metadata();
    match client.update(object).await {
        Ok(updated) => {
            store.record_write(updated.clone());
            Ok(updated)
        }
        Err(e) => Err(api_err(
            "updating",
            K::KIND,
            util::namespace(meta),
            util::name(meta),
        )(e)),
    }
}

/// Writes the status subresource (last writer wins: each controller owns its kind's status).
pub async fn update_status<K: Object>(
    client: &Client,
    store: &Store<K>,
    object: &K,
) -> Result<K, Error> {
    let mut object = object.clone();
    object.metadata_mut().resource_version = None;
    let meta = object.metadata();
    match client.update_status(&object).await {
        Ok(updated) => {
            store.record_write(updated.clone());
            Ok(updated)
        }
        Err(e) => Err(api_err(
            "updating the status of",
            K::KIND,
            util::namespace(meta),
            util::name(meta),
        )(e)),
    }
}

/// Runs `jobs` with bounded parallelism; returns the first error after all have run.
pub async fn run_all<F>(jobs: Vec<F>) -> Result<(), Error>
where
    F: std::future::Future<Output = Result<(), Error>>,
{
    let results: Vec<Result<(), Error>> = stream::iter(jobs)
        .buffer_unordered(PARALLEL_CALLS)
        .collect()
        .await;
    results.into_iter().collect()
}

pub type Shared<K> = Arc<Store<K>>;
