//! Watchers: each replays the `log` table from its revision a page at a time, then follows the
//! broadcast channel of committed groups. A watcher that lags the channel catches up from the
//! log again; one that is more than `max_watch_backlog` revisions behind the newest is closed
//! with "re-list" (`WatchLagged`), so no watcher ever holds more than a page of history.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rusqlite::params;
use tokio::sync::broadcast;
use tracing::info;

use super::{db_err, has_prefix, Shared};
use crate::store::{Event, EventType, KeyValue, Result, Revision, StoreError, WatchStream};

/// Opens a watch on `prefix` for changes after `after` (0: from now).
pub(super) fn open(shared: Arc<Shared>, prefix: &str, after: Revision) -> Result<WatchStream> {
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
        pending: VecDeque::new(),
        done: false,
    };
    if let Some(err) = state.too_far_behind() {
        return Err(err);
    }
    Ok(Box::pin(futures::stream::unfold(state, WatchState::next)))
}

/// One page of the log: the events read, and the revision the page covers up to.
#[derive(Debug)]
pub(super) struct Page {
    pub(super) events: Vec<Event>,
    pub(super) read_to: Revision,
}

/// Reads logged events with `after < rev <= upto` under `prefix`, stopping after
/// `max_events` events or once `max_bytes` bytes of values were read (at least one event).
pub(super) fn read_page(
    shared: &Shared,
    prefix: &str,
    after: Revision,
    upto: Revision,
    max_events: usize,
    max_bytes: usize,
) -> Result<Page> {
    let e = db_err(&shared.path);
    let conn = shared.reader.lock();
    let mut stmt = conn
        .prepare_cached(
            "SELECT rev, key, deleted, value, create_rev, prev_value, prev_mod_rev
             FROM log WHERE rev > ?1 AND rev <= ?2 AND substr(key, 1, ?3) = ?4
             ORDER BY rev LIMIT ?5",
        )
        .map_err(&e)?;
    let mut rows = stmt
        .query(params![
            after,
            upto,
            prefix.len() as i64,
            prefix,
            max_events as i64
        ])
        .map_err(&e)?;
    let mut events = Vec::new();
    let mut bytes = 0;
    while let Some(r) = rows.next().map_err(&e)? {
        let ev = event(r).map_err(&e)?;
        bytes += ev.kv.value.len() + ev.prev.as_ref().map_or(0, |p| p.value.len());
        events.push(ev);
        if bytes >= max_bytes {
            break;
        }
    }
    let full = events.len() >= max_events || bytes >= max_bytes;
    let read_to = match events.last() {
        Some(last) if full => last.revision(),
        _ => upto,
    };
    Ok(Page { events, read_to })
}

fn event(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
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
        seen: None,
    })
}

/// One watcher, polled directly by its consumer (no relay task).
struct WatchState {
    shared: Arc<Shared>,
    prefix: String,
    live: broadcast::Receiver<Arc<Vec<Event>>>,
    /// Every change up to here was read (handed out or waiting in `pending`).
    last: Revision,
    /// Catching up from the log up to this revision.
    catch_up_to: Option<Revision>,
    /// At most one log page or one committed group.
    pending: VecDeque<Event>,
    done: bool,
}

impl WatchState {
    /// `WatchLagged` when this watcher is further behind the newest revision than allowed.
    fn too_far_behind(&self) -> Option<StoreError> {
        let head = self.shared.revision.load(Ordering::SeqCst);
        let limit = self.shared.options.max_watch_backlog;
        let behind = head - self.last;
        (behind > limit).then(|| {
            info!(prefix = %self.prefix, behind, limit, "watcher too far behind: closing it with re-list");
            StoreError::WatchLagged
        })
    }

    async fn next(mut self) -> Option<(Result<Event>, Self)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(ev) = self.pending.pop_front() {
                return Some((Ok(ev), self));
            }
            if let Some(upto) = self.catch_up_to {
                match self.read_page(upto).await {
                    Ok(page) => {
                        self.pending.extend(page.events);
                        self.last = page.read_to;
                        if page.read_to >= upto {
                            self.catch_up_to = None;
                        }
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

    /// The next page of the catch-up, unless this watcher is too far behind or the history it
    /// needs was compacted meanwhile.
    async fn read_page(&self, upto: Revision) -> Result<Page> {
        if let Some(err) = self.too_far_behind() {
            return Err(err);
        }
        let (shared, prefix, from) = (self.shared.clone(), self.prefix.clone(), self.last);
        tokio::task::spawn_blocking(move || {
            let opts = &shared.options;
            let page = read_page(
                &shared,
                &prefix,
                from,
                upto,
                opts.catch_up_events,
                opts.catch_up_bytes,
            )?;
            // Checked after reading: compaction marks the revision before deleting any row.
            if from < shared.compacted.load(Ordering::SeqCst) {
                return Err(StoreError::WatchLagged);
            }
            Ok(page)
        })
        .await
        .unwrap_or(Err(StoreError::Closed))
    }
}
