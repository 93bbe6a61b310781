//! The embedded store: SQLite on disk in WAL mode, with every live key also held in memory.
//!
//! One writer thread owns the write connection and commits queued writes in groups (one
//! transaction and one fsync for many writes); a write is acknowledged only after its group
//! committed, so it survives `kill -9`. Reads are served from memory. The write queue is bounded
//! (callers wait, asynchronously, when it is full), compaction runs on its own thread and
//! connection in small batches (`compactor.rs`), and watchers catch up from the `log` table a page
//! at a time and are closed with "re-list" when they fall too far behind (`watch.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tracing::debug;

use super::{Event, KeyValue, Result, Revision, Store, StoreError, WatchStream};

mod compactor;
mod snapshot;
mod watch;
mod writer;

use writer::{Op, Request};

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 4096;
/// Committed groups the broadcast channel keeps for live watchers (shared by all of them).
pub const BROADCAST_CAPACITY: usize = 4096;

/// The store's limits. [`Options::default`] is what the control plane runs with.
#[derive(Debug, Clone)]
pub struct Options {
    /// Writes waiting for the writer thread. When it is full, callers wait (asynchronously)
    /// for room: 4,096, one full group queued while the previous one commits.
    pub queue_writes: usize,
    /// Bytes of values waiting for or inside the writer (64 MiB; at most `u32::MAX`). A single
    /// larger value still goes through, alone.
    pub queue_bytes: usize,
    /// Revisions a watcher may be behind the newest before it is closed with "re-list", as the
    /// API server closes a watcher that cannot keep up (100,000, the history the control plane
    /// keeps).
    pub max_watch_backlog: i64,
    /// Committed groups kept for live watchers; one that lags further catches up from the log.
    pub broadcast_groups: usize,
    /// A catch-up reads at most this many events from the log at a time (1,024)...
    pub catch_up_events: usize,
    /// ...and stops after this many bytes of values (4 MiB), so a watcher holds one page.
    pub catch_up_bytes: usize,
    /// Log rows compaction deletes per transaction (1,000): the writer waits at most one batch.
    pub compact_batch: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            queue_writes: MAX_GROUP,
            queue_bytes: 64 << 20,
            max_watch_backlog: 100_000,
            broadcast_groups: BROADCAST_CAPACITY,
            catch_up_events: 1024,
            catch_up_bytes: 4 << 20,
            compact_batch: 1000,
        }
    }
}

struct Shared {
    path: PathBuf,
    options: Options,
    data: RwLock<BTreeMap<String, KeyValue>>,
    revision: AtomicI64,
    compacted: AtomicI64,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    reader: Mutex<Connection>,
}

/// SQLite-backed [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
    writer: mpsc::Sender<Request>,
    /// Bytes of queued values: a permit per byte travels with each request.
    queue_bytes: Arc<Semaphore>,
    compactor: mpsc::Sender<compactor::Job>,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Database {
        path: path.display().to_string(),
        source,
    }
}

/// A connection with the settings every store connection uses.
fn connect(path: &Path, synchronous: &str) -> Result<Connection> {
    let e = db_err(path);
    let conn = Connection::open(path).map_err(&e)?;
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout=5000; PRAGMA synchronous={synchronous};"
    ))
    .map_err(&e)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and loads the live keys.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, Options::default())
    }

    /// [`SqliteStore::open`] with other limits.
    pub fn open_with(path: impl AsRef<Path>, mut options: Options) -> Result<Self> {
        options.queue_writes = options.queue_writes.max(1);
        options.queue_bytes = options.queue_bytes.clamp(1, u32::MAX as usize);
        options.broadcast_groups = options.broadcast_groups.max(1);
        options.catch_up_events = options.catch_up_events.max(1);
        options.compact_batch = options.compact_batch.max(1);
        let path = path.as_ref().to_path_buf();
        let e = db_err(&path);
        let conn = connect(&path, "FULL")?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS kv (
                key TEXT PRIMARY KEY, value BLOB NOT NULL,
                create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS log (
                rev INTEGER PRIMARY KEY, key TEXT NOT NULL, deleted INTEGER NOT NULL,
                value BLOB NOT NULL, create_rev INTEGER NOT NULL,
                prev_value BLOB, prev_mod_rev INTEGER);
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )
        .map_err(&e)?;
        let mut data = BTreeMap::new();
        {
            let mut stmt = conn
                .prepare("SELECT key, value, create_rev, mod_rev FROM kv")
                .map_err(&e)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(KeyValue {
                        key: r.get(0)?,
                        value: r.get::<_, Vec<u8>>(1)?.into(),
                        create_revision: r.get(2)?,
                        mod_revision: r.get(3)?,
                    })
                })
                .map_err(&e)?;
            for kv in rows {
                let kv = kv.map_err(&e)?;
                data.insert(kv.key.clone(), kv);
            }
        }
        let meta = |name: &str| -> Result<i64> {
            conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(&e)
        };
        let compacted = meta("compacted")?;
        let log_max: i64 = conn
            .query_row("SELECT COALESCE(MAX(rev), 0) FROM log", [], |r| r.get(0))
            .map_err(&e)?;
        let kv_max = data.values().map(|kv| kv.mod_revision).max().unwrap_or(0);
        let revision = log_max.max(kv_max).max(compacted).max(meta("revision")?);

        let reader = connect(&path, "FULL")?;
        // Deleting history needs no fsync of its own: WAL commits are kept in order, so a crash
        // loses a suffix of batches (done again at the next start), never the `compacted` mark
        // without the deletions behind it.
        let compactor_conn = connect(&path, "NORMAL")?;
        let (events, _) = broadcast::channel(options.broadcast_groups);
        let queue_bytes = Arc::new(Semaphore::new(options.queue_bytes));
        let (tx, rx) = mpsc::channel(options.queue_writes);
        let (compact_tx, compact_rx) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            path: path.clone(),
            options,
            data: RwLock::new(data),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            events,
            reader: Mutex::new(reader),
        });
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::run(writer_shared, conn, rx))
            .expect("spawning the store writer thread");
        let compactor_shared = shared.clone();
        std::thread::Builder::new()
            .name("store-compactor".into())
            .spawn(move || compactor::run(compactor_shared, compactor_conn, compact_rx))
            .expect("spawning the store compactor thread");
        debug!(path = %path.display(), revision, compacted, "store opened");
        Ok(Self {
            shared,
            writer: tx,
            queue_bytes,
            compactor: compact_tx,
        })
    }

    /// Writes accepted by the queue and not yet taken by the writer thread.
    pub fn queued_writes(&self) -> usize {
        self.writer.max_capacity() - self.writer.capacity()
    }

    /// The oldest revision still in the log minus one: history at and below it is gone.
    pub fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::SeqCst)
    }

    async fn submit(&self, op: Op) -> Result<KeyValue> {
        let cost = op.bytes().clamp(1, self.shared.options.queue_bytes) as u32;
        let bytes = self
            .queue_bytes
            .clone()
            .acquire_many_owned(cost)
            .await
            .map_err(|_| StoreError::Closed)?;
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Request {
                op,
                reply,
                _bytes: bytes,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn has_prefix(key: &str, prefix: &str) -> bool {
    key.starts_with(prefix)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.shared.data.read().get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        let data = self.shared.data.read();
        // Read the revision under the lock: the writer publishes memory before the revision.
        let rev = self.shared.revision.load(Ordering::SeqCst);
        let items = data
            .range(prefix.to_string()..)
            .take_while(|(k, _)| has_prefix(k, prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Ok((items, rev))
    }

    async fn list_at(&self, prefix: &str, revision: Revision) -> Result<Vec<KeyValue>> {
        let shared = self.shared.clone();
        let prefix = prefix.to_string();
        // Reading the log is SQLite I/O: off the async threads.
        tokio::task::spawn_blocking(move || snapshot::list_at(&shared, &prefix, revision))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.submit(Op::Create {
            key: key.to_string(),
            value,
        })
        .await
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        self.submit(Op::Update {
            key: key.to_string(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.submit(Op::Delete {
            key: key.to_string(),
            expected,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        watch::open(self.shared.clone(), prefix, after)
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.compactor
            .send(compactor::Job { revision, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

#[cfg(test)]
mod tests;
