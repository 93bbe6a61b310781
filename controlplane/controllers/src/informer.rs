//! List-and-watch caches, one per kind: a small state machine (list, watch, back off) feeding a
//! synchronous `Store::apply`. Readers get cheap `Arc` clones. Controllers also record their own
//! writes so the next reconcile sees them before the watch does (read-your-writes).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use corral_api::client::Object;
use corral_api::{Client, ListParams, WatchEvent};
use futures::StreamExt;
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::util;

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
        Self::new(util::namespace(m), util::name(m))
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

/// A change the cache went through, handed to event handlers.
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
    /// Keys this controller deleted itself, with the last resourceVersion it saw: watch events
    /// at or below it are stale and must not bring the object back.
    tombstones: HashMap<ObjectKey, i64>,
    /// Revision of the last list or watch event applied.
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

    /// Replaces the whole content after a list at revision `rv`.
    pub fn replace(&self, items: Vec<K>, rv: i64) {
        let changes = {
            let mut inner = self.inner.write();
            let mut fresh = BTreeMap::new();
            for item in items {
                fresh.insert(ObjectKey::of(&item), Arc::new(item));
            }
            let mut changes = Vec::new();
            for (k, old) in &inner.objects {
                match fresh.get(k) {
                    None => changes.push(Change::Deleted(old.clone())),
                    Some(new) if util::rv(new.metadata()) != util::rv(old.metadata()) => changes
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

    /// Applies one watch event.
    pub fn apply(&self, event: WatchEvent<K>) {
        let change = {
            let mut inner = self.inner.write();
            match event {
                WatchEvent::Bookmark(rv) => {
                    inner.rv = inner.rv.max(rv);
                    None
                }
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    let rv = util::rv(o.metadata());
                    inner.rv = inner.rv.max(rv);
                    upsert(&mut inner, o)
                }
                WatchEvent::Deleted(o) => {
                    let rv = util::rv(o.metadata());
                    inner.rv = inner.rv.max(rv);
                    let key = ObjectKey::of(&o);
                    // Remember the deletion's revision: a write this controller made before
                    // the deletion may still come back (record_write) and must not bring the
                    // object back to life in the cache.
                    let dead = inner.tombstones.get(&key).copied().unwrap_or(0).max(rv);
                    inner.tombstones.insert(key.clone(), dead);
                    match inner.objects.get(&key) {
                        // A newer incarnation (recorded locally) outlives this deletion.
                        Some(cur) if util::rv(cur.metadata()) > rv => None,
                        Some(_) => inner.objects.remove(&key).map(Change::Deleted),
                        None => None,
                    }
                }
            }
        };
        if let Some(c) = change {
            self.notify(&[c]);
        }
    }

    /// Records an object this controller just wrote (create/update response), so that the
    /// next reconcile sees it even before the watch delivers it.
    pub fn record_write(&self, object: K) {
        let change = {
            let mut inner = self.inner.write();
            upsert(&mut inner, object)
        };
        if let Some(c) = change {
            self.notify(&[c]);
        }
    }

    /// Records that this controller deleted `object` for good (not merely marked it).
    pub fn record_delete(&self, object: &K) {
        let key = ObjectKey::of(object);
        let rv = util::rv(object.metadata());
        let change = {
            let mut inner = self.inner.write();
            let newer = inner
                .objects
                .get(&key)
                .is_some_and(|cur| util::rv(cur.metadata()) > rv);
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
    let rv = util::rv(object.metadata());
    if let Some(&dead) = inner.tombstones.get(&key) {
        if rv <= dead {
            return None;
        }
        inner.tombstones.remove(&key);
    }
    let new = Arc::new(object);
    match inner.objects.get(&key) {
        Some(old) if util::rv(old.metadata()) >= rv => None,
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

/// States of the list-and-watch loop.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    List,
    Watch { rv: i64 },
    Backoff { delay: Duration, relist: bool },
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Next state after `failed` (a `List` or `Watch`) errs: exponential back-off from the last
/// delay (reset by any success), re-list when the history is gone or the list itself failed.
pub fn after_error(failed: &State, last_delay: Option<Duration>, gone: bool) -> State {
    let delay = match last_delay {
        Some(d) => (d * 2).min(MAX_BACKOFF),
        None => Duration::from_millis(100),
    };
    let relist = gone || matches!(failed, State::List);
    State::Backoff { delay, relist }
}

/// Feeds a [`Store`] from the API server.
pub struct Informer<K: Object> {
    client: Client,
    params: ListParams,
    store: Arc<Store<K>>,
    last_delay: Option<Duration>,
}

impl<K: Object> Informer<K> {
    pub fn new(client: Client, store: Arc<Store<K>>) -> Self {
        Self {
            client,
            params: ListParams::default(),
            store,
            last_delay: None,
        }
    }

    /// One transition of the state machine.
    pub async fn step(&mut self, state: State) -> State {
        match state {
            State::List => match self.client.list::<K>("", &self.params).await {
                Ok((items, rv)) => {
                    self.last_delay = None;
                    self.store.replace(items, rv);
                    State::Watch { rv }
                }
                Err(e) => {
                    tracing::warn!(kind = K::KIND, error = %e, "list failed");
                    self.backoff(&State::List, false)
                }
            },
            State::Watch { rv } => {
                let mut stream = match self.client.watch::<K>("", &self.params, rv).await {
                    Ok(s) => Box::pin(s),
                    Err(e) => {
                        tracing::warn!(kind = K::KIND, error = %e, "watch failed");
                        return self.backoff(&state, e.is_gone());
                    }
                };
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(ev) => {
                            self.last_delay = None;
                            self.store.apply(ev)
                        }
                        Err(e) => {
                            tracing::debug!(kind = K::KIND, error = %e, "watch ended");
                            return self.backoff(&state, e.is_gone());
                        }
                    }
                }
                State::Watch {
                    rv: self.store.resource_version(),
                }
            }
            State::Backoff { delay, relist } => {
                tokio::time::sleep(delay).await;
                if relist {
                    State::List
                } else {
                    State::Watch {
                        rv: self.store.resource_version(),
                    }
                }
            }
        }
    }

    fn backoff(&mut self, failed: &State, gone: bool) -> State {
        let next = after_error(failed, self.last_delay, gone);
        if let State::Backoff { delay, .. } = next {
            self.last_delay = Some(delay);
        }
        next
    }

    pub async fn run(mut self) {
        let mut state = State::List;
        loop {
            state = self.step(state).await;
        }
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
        store.replace(vec![pod("a", 5)], 5);
        store.apply(WatchEvent::Deleted(pod("a", 9)));
        // The response of an update made at revision 7, before the deletion, arrives late.
        store.record_write(pod("a", 7));
        assert!(store.get(&ObjectKey::new("default", "a")).is_none());
        // A new incarnation created after the deletion is seen.
        store.apply(WatchEvent::Added(pod("a", 12)));
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
        store.replace(vec![pod("a", 1), pod("b", 2)], 2);
        // Our own create is seen at once; the later watch event for it is a no-op.
        store.record_write(pod("c", 5));
        store.apply(WatchEvent::Modified(pod("a", 3)));
        store.apply(WatchEvent::Added(pod("c", 5)));
        // Our own delete hides stale modifications that were already in flight.
        store.record_delete(&pod("b", 4));
        store.apply(WatchEvent::Modified(pod("b", 4)));
        assert!(store.get(&ObjectKey::new("default", "b")).is_none());
        store.apply(WatchEvent::Deleted(pod("b", 6)));
        // A re-created object with a higher revision comes back.
        store.apply(WatchEvent::Added(pod("b", 7)));
        store.apply(WatchEvent::Bookmark(9));
        assert_eq!(store.resource_version(), 9);
        assert_eq!(store.list_ns("default").len(), 3);
        assert!(store.list_ns("other").is_empty());
        assert_eq!(
            *seen.lock(),
            vec!["add a", "add b", "add c", "update a", "delete b", "add b"]
        );
        // A re-list computes the difference.
        seen.lock().clear();
        store.replace(vec![pod("a", 3), pod("d", 10)], 10);
        let mut got = seen.lock().clone();
        got.sort();
        assert_eq!(got, vec!["add d", "delete b", "delete c"]);
    }

    #[test]
    fn errors_back_off_and_gone_relists() {
        let watch = State::Watch { rv: 5 };
        let ms = Duration::from_millis;
        let cases = [
            (&watch, None, false, ms(100), false),
            (&watch, Some(ms(100)), false, ms(200), false),
            (&watch, Some(ms(200)), true, ms(400), true),
            (&watch, Some(ms(4000)), false, MAX_BACKOFF, false),
            (&State::List, None, false, ms(100), true),
        ];
        for (failed, last, gone, delay, relist) in cases {
            assert_eq!(
                after_error(failed, last, gone),
                State::Backoff { delay, relist },
                "{failed:?} {last:?} gone={gone}"
            );
        }
    }
}
