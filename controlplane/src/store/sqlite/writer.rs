//! The writer thread: takes queued writes in groups, checks each against memory plus the
//! group's earlier writes, commits the group in one transaction, publishes it to memory and to
//! watchers, then acknowledges. A group that fails is rolled back and every writer in it gets
//! the error; the thread goes on with the next group (a full disk is not fatal).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tracing::error;

use super::{Shared, MAX_GROUP};
use crate::store::{Event, EventType, KeyValue, Result, Revision, StoreError};

pub(super) enum Op {
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
}

impl Op {
    /// What the request weighs in the queue's byte budget.
    pub(super) fn bytes(&self) -> usize {
        match self {
            Op::Create { key, value } | Op::Update { key, value, .. } => key.len() + value.len(),
            Op::Delete { key, .. } => key.len(),
        }
    }
}

pub(super) struct Request {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<KeyValue>>,
    /// Returned to the queue's byte budget when the request is done with.
    pub(super) _bytes: OwnedSemaphorePermit,
}

/// An error that stands for `e` and can be given to each writer of a failed group (rusqlite's
/// error is not `Clone`): same SQLite code, same text.
fn shareable(e: &rusqlite::Error) -> rusqlite::Error {
    let code = match e {
        rusqlite::Error::SqliteFailure(code, _) => *code,
        _ => rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
    };
    rusqlite::Error::SqliteFailure(code, Some(e.to_string()))
}

/// An error injected by a fail point, shaped like an I/O error from SQLite.
// Release builds compile fail points to nothing, and this with them.
#[allow(dead_code)]
fn injected(at: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
        Some(format!("injected failure at {at}")),
    )
}

/// `Some` when a fail point says the acknowledgement is lost.
fn ack_fails() -> Option<rusqlite::Error> {
    fail::fail_point!("store::ack", |_| Some(injected("store::ack")));
    None
}

pub(super) fn run(shared: Arc<Shared>, mut conn: Connection, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let start_rev = shared.revision.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        let failed = match commit_group(&shared, &mut conn, &batch, start_rev) {
            Ok((results, overlay, events, rev)) => {
                crate::metrics::global().commit(batch.len(), started.elapsed());
                // A crash here loses no acknowledged write: none was acknowledged yet.
                fail::fail_point!("store::commit::after");
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
                // Committed and published: an error here is a lost acknowledgement (the writer
                // hears of a failure, the write is stored), as a crash before replying is.
                match ack_fails() {
                    None => {
                        for (req, result) in batch.into_iter().zip(results) {
                            let _ = req.reply.send(result);
                        }
                        None
                    }
                    Some(e) => Some((batch, e)),
                }
            }
            Err(e) => Some((batch, e)),
        };
        if let Some((batch, source)) = failed {
            error!(error = %source, path = %shared.path.display(), writes = batch.len(), "store commit failed");
            for req in batch {
                let _ = req.reply.send(Err(StoreError::Database {
                    path: shared.path.display().to_string(),
                    source: shareable(&source),
                }));
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
    // IMMEDIATE: take the write lock at BEGIN, waiting (busy_timeout) for a compaction batch.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            };
            match outcome {
                Ok((kv, prev, kind)) => {
                    overlay.insert(key.clone(), (kind == EventType::Put).then(|| kv.clone()));
                    events.push(Event {
                        kind,
                        kv: kv.clone(),
                        prev,
                        seen: None,
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
    // An error here rolls the whole group back (the transaction is dropped uncommitted).
    fail::fail_point!("store::commit::before", |_| Err(injected(
        "store::commit::before"
    )));
    tx.commit()?;
    let committed = std::time::Instant::now();
    for e in &mut events {
        e.seen = Some(committed);
    }
    Ok((results, overlay, events, rev))
}
