//! The proxy's view of the cluster: one shared-runtime reflector store per kind, each change
//! bumping a generation counter that every store of a proxy shares (the sync loop waits on it).

use std::sync::Arc;

use corral_api::client::Object;
use corral_api::runtime::{reflector, watcher, Store, WatcherConfig};
use corral_api::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A store of `K` fed from the API server; any change bumps `changed`.
pub fn follow<K: Object + Sync>(
    client: &Client,
    changed: &watch::Sender<u64>,
) -> (Arc<Store<K>>, JoinHandle<()>) {
    let store = Store::<K>::new();
    let changed = changed.clone();
    store.on_change(move |_| changed.send_modify(|g| *g += 1));
    let events = watcher::<K>(client.clone(), WatcherConfig::all());
    let task = tokio::spawn(reflector::reflect(store.clone(), events));
    (store, task)
}
