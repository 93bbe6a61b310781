//! The one cache of objects of a kind, fed by a [`watcher`](super::watcher) through a
//! synchronous [`Store::apply`]. Readers get cheap `Arc` clones; handlers hear every change.
//! Writers may record their own writes so their next read sees them before the watch does
//! (read-your-writes), without a late response ever resurrecting a deleted object.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use parking_lot::RwLock;
use tokio::sync::watch;

use super::revision;
use super::watcher::Event;
use crate::client::Object;

/// Namespace and name of an object (namespace empty for cluster-scoped kinds).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
    pub fn of<K: Object>(object: &K) -> Self {
        let m = object.metadata();
        Self::new(
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or(""),
        )
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// A change the cache went through, handed to handlers.
#[derive(Debug, Clone)]
pub enum Change<K> {
    Added(Arc<K>),
    Updated { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The newest state (the last one for a deletion).
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Updated { new, .. } => new,
        }
    }
}

pub type Handler<K> = Arc<dyn Fn(&Change<K>) + Send + Sync>;

struct Inner<K> {
    objects: BTreeMap<ObjectKey, Arc<K>>,
    /// Keys deleted (seen or recorded) with the revision of the deletion: events at or below it
    /// are stale and must not bring the object back.
    tombstones: HashMap<ObjectKey, i64>,
    /// Revision of the last list or event applied.
    rv: i64,
}

/// The cache of one kind.
pub struct Store<K> {
    inner: RwLock<Inner<K>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
}

impl<K: Object> Store<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: RwLock::new(Inner {
                objects: BTreeMap::new(),
                tombstones: HashMap::new(),
                rv: 0,
            }),
            handlers: RwLock::new(Vec::new()),
            synced: watch::channel(false).0,
        })
    }

    /// Registers a handler called (outside the lock) on every change.
    pub fn on_change(&self, handler: impl Fn(&Change<K>) + Send + Sync + 'static) {
        self.handlers.write().push(Arc::new(handler));
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.inner.read().objects.get(key).cloned()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.inner.read().objects.values().cloned().collect()
    }

    /// Objects in one namespace (keys are ordered by namespace first).
    pub fn list_ns(&self, namespace: &str) -> Vec<Arc<K>> {
        let inner = self.inner.read();
        let start = ObjectKey::new(namespace, "");
        inner
            .objects
            .range(start..)
            .take_while(|(k, _)| k.namespace == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn resource_version(&self) -> i64 {
        self.inner.read().rv
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    fn notify(&self, changes: &[Change<K>]) {
        if changes.is_empty() {
            return;
        }
        let handlers = self.handlers.read().clone();
        for c in changes {
            for h in &handlers {
                h(c);
            }
        }
    }

    /// Applies one watcher event.
    pub fn apply(&self, event: Event<K>) {
        match event {
            Event::Restarted(items, rv) => self.replace(items, rv),
            Event::Applied(o) => self.upsert_seen(o),
            Event::Deleted(o) => self.delete_seen(o),
            Event::Bookmark(rv) => {
                let mut inner = self.inner.write();
                inner.rv = inner.rv.max(rv);
            }
        }
    }

    /// Replaces the whole content after a list at revision `rv`.
    fn replace(&self, items: Vec<K>, rv: i64) {
        let changes = {
            let mut inner = self.inner.write();
            let fresh: BTreeMap<_, _> = items
                .into_iter()
                .map(|item| (ObjectKey::of(&item), Arc::new(item)))
                .collect();
            let mut changes = Vec::new();
            for (k, old) in &inner.objects {
                match fresh.get(k) {
                    None => changes.push(Change::Deleted(old.clone())),
                    Some(new) if revision(new.metadata()) != revision(old.metadata()) => changes
                        .push(Change::Updated {
                            old: old.clone(),
                            new: new.clone(),
                        }),
                    Some(_) => {}
                }
            }
            for (k, new) in &fresh {
                if !inner.objects.contains_key(k) {
                    changes.push(Change::Added(new.clone()));
                }
            }
            inner.objects = fresh;
            inner.tombstones.clear();
            inner.rv = rv;
            changes
        };
        self.synced.send_replace(true);
        self.notify(&changes);
    }

    fn upsert_seen(&self, object: K) {
        let change = {
            let mut inner = self.inner.write();
            inner.rv = inner.rv.max(revision(object.metadata()));
            upsert(&mut inner, object)
        };
        if let Some(c) = change {
            self.notify(&[c]);
        }
    }

    fn delete_seen(&self, object: K) {
        let change = {
            let mut inner = self.inner.write();
            let rv = revision(object.metadata());
            inner.rv = inner.rv.max(rv);
            let key = ObjectKey::of(&object);
            // Remember the deletion's revision: a write made before the deletion may still be
            // recorded late (record_write) and must not bring the object back.
            let dead = inner.tombstones.get(&key).copied().unwrap_or(0).max(rv);
            inner.tombstones.insert(key.clone(), dead);
            match inner.objects.get(&key) {
                // A newer incarnation (recorded locally) outlives this deletion.
                Some(cur) if revision(cur.metadata()) > rv => None,
                Some(_) => inner.objects.remove(&key).map(Change::Deleted),
                None => None,
            }
        };
        if let Some(c) = change {
            self.notify(&[c]);
        }
    }

    /// Records an object the caller just wrote (a create or update response), so that its
    /// next read sees it even before the watch delivers it.
    pub fn record_write(&self, object: K) {
        let change = {
            let mut inner = self.inner.write();
            upsert(&mut inner, object)
        };
        if let Some(c) = change {
            self.notify(&[c]);
        }
    }

    /// Records that the caller deleted `object` for good (not merely marked it).
    pub fn record_delete(&self, object: &K) {
        let key = ObjectKey::of(object);
        let rv = revision(object.metadata());
        let change = {
            let mut inner = self.inner.write();
            let newer = inner
                .objects
                .get(&key)
                .is_some_and(|cur| revision(cur.metadata()) > rv);
            if newer {
                None
            } else {
                inner.tombstones.insert(key.clone(), rv);
                inner.objects.remove(&key).map(Change::Deleted)
            }
        };
        if let Some(c) = change {
            self.notify(&[c]);
        }
    }
}

fn upsert<K: Object>(inner: &mut Inner<K>, object: K) -> Option<Change<K>> {
    let key = ObjectKey::of(&object);
    let rv = revision(object.metadata());
    if let Some(&dead) = inner.tombstones.get(&key) {
        if rv <= dead {
            return None;
        }
        inner.tombstones.remove(&key);
    }
    let new = Arc::new(object);
    match inner.objects.get(&key) {
        Some(old) if revision(old.metadata()) >= rv => None,
        Some(old) => {
            let old = old.clone();
            inner.objects.insert(key, new.clone());
            Some(Change::Updated { old, new })
        }
        None => {
            inner.objects.insert(key, new.clone());
            Some(Change::Added(new))
        }
    }
}

/// Feeds `store` from `events` (a [`watcher`](super::watcher::watcher)) until the stream ends.
pub async fn reflect<K: Object>(store: Arc<Store<K>>, events: impl Stream<Item = Event<K>>) {
    futures::pin_mut!(events);
    while let Some(ev) = events.next().await {
        store.apply(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use parking_lot::Mutex;

    fn pod(name: &str, rv: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                resource_version: Some(rv.to_string()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_late_write_response_does_not_resurrect_a_deleted_object() {
        let store = Store::<Pod>::new();
        store.apply(Event::Restarted(vec![pod("a", 5)], 5));
        store.apply(Event::Deleted(pod("a", 9)));
        // The response of an update made at revision 7, before the deletion, arrives late.
        store.record_write(pod("a", 7));
        assert!(store.get(&ObjectKey::new("default", "a")).is_none());
        // A new incarnation created after the deletion is seen.
        store.apply(Event::Applied(pod("a", 12)));
        assert!(store.get(&ObjectKey::new("default", "a")).is_some());
    }

    #[test]
    fn store_applies_events_in_revision_order_and_ignores_stale_ones() {
        let store = Store::<Pod>::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        store.on_change(move |c| {
            let tag = match c {
                Change::Added(_) => "add",
                Change::Updated { .. } => "update",
                Change::Deleted(_) => "delete",
            };
            s.lock().push(format!(
                "{tag} {}",
                c.object().metadata.name.as_deref().unwrap()
            ));
        });
        store.apply(Event::Restarted(vec![pod("a", 1), pod("b", 2)], 2));
        assert!(store.is_synced());
        // Our own create is seen at once; the later watch event for it is a no-op.
        store.record_write(pod("c", 5));
        store.apply(Event::Applied(pod("a", 3)));
        store.apply(Event::Applied(pod("c", 5)));
        // Our own delete hides stale modifications that were already in flight.
        store.record_delete(&pod("b", 4));
        store.apply(Event::Applied(pod("b", 4)));
        assert!(store.get(&ObjectKey::new("default", "b")).is_none());
        store.apply(Event::Deleted(pod("b", 6)));
        // A re-created object with a higher revision comes back.
        store.apply(Event::Applied(pod("b", 7)));
        store.apply(Event::Bookmark(9));
        assert_eq!(store.resource_version(), 9);
        assert_eq!(store.list_ns("default").len(), 3);
        assert!(store.list_ns("other").is_empty());
        assert_eq!(
            *seen.lock(),
            vec!["add a", "add b", "add c", "update a", "delete b", "add b"]
        );
        // A re-list computes the difference.
        seen.lock().clear();
        store.apply(Event::Restarted(vec![pod("a", 3), pod("d", 10)], 10));
        let mut got = seen.lock().clone();
        got.sort();
        assert_eq!(got, vec!["add d", "delete b", "delete c"]);
    }
}
