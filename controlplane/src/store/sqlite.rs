//! The embedded store: SQLite on disk in WAL mode, with every live key also held in memory.
//!
//! One writer thread owns the database connection and commits queued writes in groups (one
//! transaction and one fsync for many writes); a write is acknowledged only after its group
//! committed, so it survives `kill -9`. Reads are served from memory. Watchers get committed
//! events through a broadcast channel and catch up from the `log` table when they start from
//! an older revision or fall behind.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc};

use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{broadcast, oneshot};
use tracing::{debug, error};

use super::{Event, EventType, KeyValue, Result, Revision, Store, StoreError, WatchStream};

const MAX_GROUP: usize = 4096;
const BROADCAST_CAPACITY: usize = 4096;

enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<KeyValue>>,
}

struct Shared {
    path: PathBuf,
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
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Database {
        path: path.display().to_string(),
        source,
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and loads the live keys.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let e = db_err(&path);
        let conn = Connection::open(&path).map_err(&e)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA busy_timeout=5000;
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

        let reader = Connection::open(&path).map_err(&e)?;
        reader
            .execute_batch("PRAGMA busy_timeout=5000;")
            .map_err(&e)?;
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let shared = Arc::new(Shared {
            path: path.clone(),
            data: RwLock::new(data),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            events,
            reader: Mutex::new(reader),
        });
        let (tx, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(writer_shared, conn, rx))
            .expect("spawning the store writer thread");
        debug!(path = %path.display(), revision, "store opened");
        Ok(Self { shared, writer: tx })
    }

    async fn submit(&self, op: Op) -> Result<KeyValue> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Request { op, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Reads logged events with `after < rev <= upto` under `prefix`.
    fn read_log(
        shared: &Shared,
        prefix: &str,
        after: Revision,
        upto: Revision,
    ) -> Result<Vec<Event>> {
        let e = db_err(&shared.path);
        let conn = shared.reader.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT rev, key, deleted, value, create_rev, prev_value, prev_mod_rev
                 FROM log WHERE rev > ?1 AND rev <= ?2 AND substr(key, 1, ?3) = ?4 ORDER BY rev",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map(params![after, upto, prefix.len() as i64, prefix], |r| {
                let key: String = r.get(1)?;
                let create_revision: i64 = r.get(4)?;
                let prev_value: Option<Vec<u8>> = r.get(5)?;
                let prev_mod: Option<i64> = r.get(6)?;
                let prev = match (prev_value, prev_mod) {
                    (Some(v), Some(m)) => Some(KeyValue {
                        key: key.clone(),
                        value: v.into(),
                        create_revision,
                        mod_revision: m,
                    }),
                    _ => None,
                };
                Ok(Event {
                    kind: if r.get::<_, bool>(2)? {
                        EventType::Delete
                    } else {
                        EventType::Put
                    },
                    kv: KeyValue {
                        key,
                        value: r.get::<_, Vec<u8>>(3)?.into(),
                        create_revision,
                        mod_revision: r.get(0)?,
                    },
                    prev,
                })
            })
            .map_err(&e)?;
        rows.map(|r| r.map_err(&e)).collect()
    }
}

fn writer_loop(shared: Arc<Shared>, mut conn: Connection, rx: mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let start_rev = shared.revision.load(Ordering::SeqCst);
        match commit_group(&shared, &mut conn, &batch, start_rev) {
            Ok((results, overlay, events, rev)) => {
                {
                    let mut data = shared.data.write();
                    for (key, kv) in overlay {
                        match kv {
                            Some(kv) => data.insert(key, kv),
                            None => data.remove(&key),
                        };
                    }
                    // Published under the lock (lists read a consistent pair) and before the
                    // events (a watcher that subscribed, then read the revision, misses nothing).
                    shared.revision.store(rev, Ordering::SeqCst);
                }
                if !events.is_empty() {
                    let _ = shared.events.send(Arc::new(events));
                }
                for (req, result) in batch.into_iter().zip(results) {
                    let _ = req.reply.send(result);
                }
            }
            Err(source) => {
                error!(error = %source, path = %shared.path.display(), "store commit failed");
                for req in batch {
                    let _ = req.reply.send(Err(StoreError::Database {
                        path: shared.path.display().to_string(),
                        source: rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                            Some(source.to_string()),
                        ),
                    }));
                }
            }
        }
    }
}

type GroupOutcome = (
    Vec<Result<KeyValue>>,
    HashMap<String, Option<KeyValue>>,
    Vec<Event>,
    Revision,
);

/// Applies a group of writes in one transaction. Preconditions are checked against memory plus
/// the group's own earlier writes; nothing in memory changes until the commit succeeded.
fn commit_group(
    shared: &Shared,
    conn: &mut Connection,
    batch: &[Request],
    start_rev: Revision,
) -> rusqlite::Result<GroupOutcome> {
    let tx = conn.transaction()?;
    let mut overlay: HashMap<String, Option<KeyValue>> = HashMap::new();
    let mut results = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    let mut rev = start_rev;
    {
        let data = shared.data.read();
        let mut put = tx.prepare_cached(
            "INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev",
        )?;
        let mut del = tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
        let mut log = tx.prepare_cached(
            "INSERT INTO log (rev, key, deleted, value, create_rev, prev_value, prev_mod_rev)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for req in batch {
            let key = match &req.op {
                Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
                Op::Compact { revision } => {
                    let revision = (*revision).min(rev);
                    tx.execute("DELETE FROM log WHERE rev <= ?1", [revision])?;
                    tx.execute(
                        "INSERT INTO meta (name, value) VALUES ('compacted', ?1)
                         ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
                        [revision],
                    )?;
                    shared.compacted.fetch_max(revision, Ordering::SeqCst);
                    results.push(Ok(KeyValue {
                        key: String::new(),
                        value: Arc::from(&[][..]),
                        create_revision: 0,
                        mod_revision: revision,
                    }));
                    continue;
                }
            };
            let current = match overlay.get(key) {
                Some(v) => v.clone(),
                None => data.get(key).cloned(),
            };
            let outcome = match (&req.op, current) {
                (Op::Create { .. }, Some(_)) => Err(StoreError::AlreadyExists { key: key.clone() }),
                (Op::Update { .. } | Op::Delete { .. }, None) => {
                    Err(StoreError::NotFound { key: key.clone() })
                }
                (Op::Update { expected, .. }, Some(cur))
                | (
                    Op::Delete {
                        expected: Some(expected),
                        ..
                    },
                    Some(cur),
                ) if cur.mod_revision != *expected => Err(StoreError::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    actual: cur.mod_revision,
                }),
                (Op::Create { value, .. }, None) => {
                    rev += 1;
                    let kv = KeyValue {
                        key: key.clone(),
                        value: Arc::from(value.as_slice()),
                        create_revision: rev,
                        mod_revision: rev,
                    };
                    put.execute(params![key, value, rev, rev])?;
                    log.execute(params![
                        rev,
                        key,
                        false,
                        value,
                        rev,
                        None::<Vec<u8>>,
                        None::<i64>
                    ])?;
                    Ok((kv, None, EventType::Put))
                }
                (Op::Update { value, .. }, Some(cur)) => {
                    rev += 1;
                    let kv = KeyValue {
                        key: key.clone(),
                        value: Arc::from(value.as_slice()),
                        create_revision: cur.create_revision,
                        mod_revision: rev,
                    };
                    put.execute(params![key, value, cur.create_revision, rev])?;
                    log.execute(params![
                        rev,
                        key,
                        false,
                        value,
                        cur.create_revision,
                        &*cur.value,
                        cur.mod_revision
                    ])?;
                    Ok((kv, Some(cur), EventType::Put))
                }
                (Op::Delete { .. }, Some(cur)) => {
                    rev += 1;
                    del.execute([key])?;
                    log.execute(params![
                        rev,
                        key,
                        true,
                        &*cur.value,
                        cur.create_revision,
                        &*cur.value,
                        cur.mod_revision
                    ])?;
                    let kv = KeyValue {
                        mod_revision: rev,
                        ..cur.clone()
                    };
                    Ok((kv, Some(cur), EventType::Delete))
                }
                (Op::Compact { .. }, _) => unreachable!("handled above"),
            };
            match outcome {
                Ok((kv, prev, kind)) => {
                    overlay.insert(key.clone(), (kind == EventType::Put).then(|| kv.clone()));
                    events.push(Event {
                        kind,
                        kv: kv.clone(),
                        prev,
                    });
                    results.push(Ok(kv));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if rev != start_rev {
            tx.prepare_cached(
                "INSERT INTO meta (name, value) VALUES ('revision', ?1)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            )?
            .execute([rev])?;
        }
    }
    tx.commit()?;
    Ok((results, overlay, events, rev))
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
        let shared = self.shared.clone();
        // Subscribe before reading the revision: a group committed in between arrives on the
        // channel and is skipped there if the catch-up already read it.
        let live = shared.events.subscribe();
        let now = shared.revision.load(Ordering::SeqCst);
        let after = if after <= 0 { now } else { after };
        let compacted = shared.compacted.load(Ordering::SeqCst);
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let state = WatchState {
            shared,
            prefix: prefix.to_string(),
            live,
            last: after,
            catch_up_to: (now > after).then_some(now),
            pending: std::collections::VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(state, WatchState::next)))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.submit(Op::Compact { revision }).await.map(|_| ())
    }
}

/// One watcher, polled directly by its consumer (no relay task): replays the log when it
/// starts behind or falls behind, otherwise takes committed groups from the broadcast channel.
struct WatchState {
    shared: Arc<Shared>,
    prefix: String,
    live: broadcast::Receiver<Arc<Vec<Event>>>,
    last: Revision,
    catch_up_to: Option<Revision>,
    pending: std::collections::VecDeque<Event>,
    done: bool,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<Event>, Self)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(ev) = self.pending.pop_front() {
                return Some((Ok(ev), self));
            }
            if let Some(upto) = self.catch_up_to.take() {
                let (shared, prefix, from) = (self.shared.clone(), self.prefix.clone(), self.last);
                let events = tokio::task::spawn_blocking(move || {
                    let events = SqliteStore::read_log(&shared, &prefix, from, upto);
                    match events {
                        Ok(_) if from < shared.compacted.load(Ordering::SeqCst) => {
                            Err(StoreError::WatchLagged)
                        }
                        other => other,
                    }
                })
                .await
                .unwrap_or(Err(StoreError::Closed));
                match events {
                    Ok(events) => {
                        self.pending.extend(events);
                        self.last = upto;
                        continue;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some((Err(e), self));
                    }
                }
            }
            match self.live.recv().await {
                Ok(group) => {
                    let last = self.last;
                    self.pending.extend(
                        group
                            .iter()
                            .filter(|ev| {
                                ev.revision() > last && has_prefix(&ev.kv.key, &self.prefix)
                            })
                            .cloned(),
                    );
                    if let Some(ev) = group.last() {
                        self.last = self.last.max(ev.revision());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.catch_up_to = Some(self.shared.revision.load(Ordering::SeqCst));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests;
