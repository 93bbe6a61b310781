//! The store: a revisioned key-value space with compare-and-swap and watch-from-revision,
//! the same semantics as etcd's, so an etcd backend can replace the embedded SQLite one
//! without changing callers.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;

pub mod conformance;
pub mod etcd;
pub mod sqlite;

pub type Revision = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Arc<[u8]>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// One change. For `Delete`, `kv.value` is the last value and `kv.mod_revision` the revision
/// of the deletion. `prev` is the value before the change (None for a create).
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventType,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
    /// When this server learned of the change: the commit (SQLite), etcd's notification;
    /// `None` for history read back. Watches measure their delivery lag from it.
    pub seen: Option<std::time::Instant>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    #[error("key {key:?} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted (oldest available is {compacted}): re-list and watch again")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is newer than the store's {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The watcher fell too far behind the newest revision (or the history it still needed
    /// was compacted): it is closed, as the API server closes a watcher that cannot keep up.
    #[error("watch fell too far behind: re-list and watch again")]
    WatchLagged,
    #[error("database {path}: {source}")]
    Database {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("store is closed")]
    Closed,
    /// etcd refused or could not be reached (its words).
    #[error("etcd: {0}")]
    Etcd(String),
    /// An etcd member took too long to answer (it hangs, or lost its quorum); the next
    /// requests go to another member. A write may or may not have been applied.
    #[error("etcd member {endpoint} did not answer {op} of {key:?} within {after:?}{}", if *.write { ": the write may or may not have been applied" } else { "" })]
    Unanswered {
        endpoint: String,
        op: &'static str,
        key: String,
        after: std::time::Duration,
        write: bool,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// A revisioned key-value store. Every write gets the next global revision.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// All keys under `prefix`, in key order, with the revision they were read at.
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)>;
    /// The keys under `prefix` as they were at `revision`, in key order (a consistent page of
    /// a list begun earlier). `Compacted` when that history is gone, `FutureRevision` when the
    /// store has not reached it.
    async fn list_at(&self, prefix: &str, revision: Revision) -> Result<Vec<KeyValue>>;
    /// Creates `key`; fails with `AlreadyExists` when it is present.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;
    /// Replaces `key` only if its mod revision is still `expected`.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue>;
    /// Deletes `key` (only at revision `expected`, when given). Returns the deleted value with
    /// the deletion's revision as its mod revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;
    /// Changes under `prefix` with revision greater than `after`, then live changes.
    /// `after` older than the compacted revision fails with `Compacted`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;
    async fn current_revision(&self) -> Result<Revision>;
    /// Forgets history at and below `revision` (never stalling writes while it does).
    async fn compact(&self, revision: Revision) -> Result<()>;
}
