//! Compaction on its own thread and connection: it first records the new compacted revision
//! (watchers needing older history re-list from then on), then deletes old log rows in small
//! batches, each its own short transaction, resting between batches so the writer thread, not
//! compaction, gets the database most of the time. Nothing here runs on the writer thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::{db_err, Shared};
use crate::store::{Result, Revision};

pub(super) struct Job {
    pub(super) revision: Revision,
    pub(super) reply: oneshot::Sender<Result<()>>,
}

pub(super) fn run(shared: Arc<Shared>, conn: Connection, mut rx: mpsc::Receiver<Job>) {
    // Finish what a crash interrupted: the mark is durable before the rows behind it go.
    let mut done_to = 0;
    if let Err(e) = compact(
        &shared,
        &conn,
        shared.compacted.load(Ordering::SeqCst),
        &mut done_to,
    ) {
        warn!(error = %e, "resuming compaction failed");
    }
    while let Some(job) = rx.blocking_recv() {
        let result = compact(&shared, &conn, job.revision, &mut done_to);
        if let Err(e) = &result {
            warn!(error = %e, revision = job.revision, "compaction failed");
        }
        let _ = job.reply.send(result);
    }
}

/// Forgets history at and below `revision` (at most the newest revision). `done_to` is how far
/// the log is known to be empty already.
fn compact(
    shared: &Shared,
    conn: &Connection,
    revision: Revision,
    done_to: &mut Revision,
) -> Result<()> {
    let e = db_err(&shared.path);
    let target = revision.min(shared.revision.load(Ordering::SeqCst));
    if target <= *done_to {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO meta (name, value) VALUES ('compacted', ?1)
         ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
        [target],
    )
    .map_err(&e)?;
    // Before any row goes: a catch-up that read across the gap then sees it was compacted.
    shared.compacted.fetch_max(target, Ordering::SeqCst);
    let batch = shared.options.compact_batch;
    let mut deleted = 0;
    let started = Instant::now();
    loop {
        let t0 = Instant::now();
        let n = conn
            .execute(
                "DELETE FROM log WHERE rev IN
                   (SELECT rev FROM log WHERE rev <= ?1 ORDER BY rev LIMIT ?2)",
                rusqlite::params![target, batch as i64],
            )
            .map_err(&e)?;
        deleted += n;
        fail::fail_point!("store::compact::batch");
        if n < batch {
            break;
        }
        // Leave the database to the writer at least as long as the batch held it.
        std::thread::sleep(t0.elapsed());
    }
    *done_to = target;
    debug!(revision = target, deleted, elapsed = ?started.elapsed(), "compacted");
    Ok(())
}
