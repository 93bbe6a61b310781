//! A list-and-watch cache per kind, as small as the proxy needs: objects by namespace/name,
//! a generation counter bumped on every change (the sync loop waits on it), re-list when the
//! watch history is gone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::client::Object;
use corral_api::{Client, ListParams, WatchEvent};
use futures::StreamExt;
use parking_lot::RwLock;
use tokio::sync::watch;

type Key = (String, String);

fn key<K: Object>(o: &K) -> Key {
    let m = o.metadata();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// The cache of one kind.
pub struct Cache<K> {
    objects: RwLock<BTreeMap<Key, Arc<K>>>,
    synced: watch::Sender<bool>,
    changed: watch::Sender<u64>,
}

impl<K: Object + Sync> Cache<K> {
    /// `changed` is shared by every cache of a proxy: any change wakes the sync loop.
    pub fn new(changed: watch::Sender<u64>) -> Arc<Self> {
        Arc::new(Self {
            objects: RwLock::new(BTreeMap::new()),
            synced: watch::channel(false).0,
            changed,
        })
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.objects.read().values().cloned().collect()
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.objects
            .read()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    fn bump(&self) {
        self.changed.send_modify(|g| *g += 1);
    }

    fn replace(&self, items: Vec<K>) {
        let fresh = items.into_iter().map(|o| (key(&o), Arc::new(o))).collect();
        *self.objects.write() = fresh;
        self.synced.send_replace(true);
        self.bump();
    }

    fn apply(&self, event: WatchEvent<K>) {
        match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                self.objects.write().insert(key(&o), Arc::new(o));
            }
            WatchEvent::Deleted(o) => {
                self.objects.write().remove(&key(&o));
            }
            WatchEvent::Bookmark(_) => return,
        }
        self.bump();
    }

    /// Lists and watches forever, backing off on errors.
    pub async fn run(self: Arc<Self>, client: Client) {
        let params = ListParams::default();
        let mut delay = Duration::from_millis(100);
        let mut rv: Option<i64> = None;
        loop {
            let from = match rv {
                Some(rv) => rv,
                None => match client.list::<K>("", &params).await {
                    Ok((items, list_rv)) => {
                        self.replace(items);
                        list_rv
                    }
                    Err(e) => {
                        tracing::warn!(kind = K::KIND, error = %e, "list failed");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
            };
            rv = Some(from);
            match client.watch::<K>("", &params, from).await {
                Ok(stream) => {
                    let mut stream = Box::pin(stream);
                    while let Some(ev) = stream.next().await {
                        match ev {
                            Ok(ev) => {
                                delay = Duration::from_millis(100);
                                let ev_rv = match &ev {
                                    WatchEvent::Bookmark(r) => *r,
                                    WatchEvent::Added(o)
                                    | WatchEvent::Modified(o)
                                    | WatchEvent::Deleted(o) => o
                                        .metadata()
                                        .resource_version
                                        .as_deref()
                                        .and_then(|s| s.parse().ok())
                                        .unwrap_or(0),
                                };
                                rv = Some(rv.unwrap_or(0).max(ev_rv));
                                self.apply(ev);
                            }
                            Err(e) => {
                                if e.is_gone() {
                                    rv = None;
                                }
                                tracing::debug!(kind = K::KIND, error = %e, "watch ended");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    if e.is_gone() {
                        rv = None;
                    }
                    tracing::warn!(kind = K::KIND, error = %e, "watch failed");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}
