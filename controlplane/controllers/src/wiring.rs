//! What every controller's `start` wires the same way: which cache changes queue which keys,
//! and a worker pool that begins once the caches it reads have synced.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use corral_api::client::Object;
use corral_api::rules::owner;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use tokio::task::JoinHandle;

use crate::queue::WorkQueue;
use crate::{util, Error};
use corral_api::runtime::{ObjectKey, Store};

pub type Queue = Arc<WorkQueue<ObjectKey>>;

/// Queues the key of every object of `store` that changes (the controller's own kind).
pub fn enqueue_changes<K: Object>(store: &Store<K>, queue: &Queue) {
    let q = queue.clone();
    store.on_change(move |c| q.add(ObjectKey::of(c.object().as_ref())));
}

/// Queues the controlling owner, when it is of `kind`, of every object of `store` that changes.
pub fn enqueue_controller<K: Object>(store: &Store<K>, kind: &'static str, queue: &Queue) {
    let q = queue.clone();
    store.on_change(move |c| {
        let meta = c.object().metadata();
        if let Some(o) = owner::controller_of(meta).filter(|o| o.kind == kind) {
            q.add(ObjectKey::new(util::namespace(meta), o.name.clone()));
        }
    });
}

/// Queues the owners of kind `kind` that a pod change concerns (see
/// [`util::owners_of_pod_change`]): the pod's controller, or the controllers that would adopt it.
pub fn enqueue_pod_owners<O: Object + Sync + 'static>(
    pods: &Store<Pod>,
    owners: &Arc<Store<O>>,
    kind: &'static str,
    selector: fn(&O) -> Option<&LabelSelector>,
    queue: &Queue,
) {
    let (q, owners) = (queue.clone(), owners.clone());
    pods.on_change(move |c| {
        for key in util::owners_of_pod_change(c, kind, |ns| owners.list_ns(ns), selector) {
            q.add(key);
        }
    });
}

/// Waits for `synced` (the caches the controller reads), then runs `workers` reconcile loops
/// on `queue` for as long as the process lives.
pub fn spawn_workers<S, F, Fut>(
    name: &'static str,
    queue: Queue,
    workers: usize,
    synced: S,
    reconcile: F,
) -> JoinHandle<()>
where
    S: Future<Output = ()> + Send + 'static,
    F: Fn(ObjectKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Duration>, Error>> + Send + 'static,
{
    tokio::spawn(async move {
        synced.await;
        futures::future::join_all(crate::run_workers(name, queue, workers, reconcile)).await;
    })
}
