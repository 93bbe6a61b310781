//! Lists as of a past revision (consistent `continue` pages, `resourceVersionMatch=Exact`):
//! the current keys with every later change under the prefix undone from the log, whose
//! first event per key after that revision carries the key's state at it.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;

use super::watch::read_page;
use super::{has_prefix, Shared};
use crate::store::{KeyValue, Result, Revision, StoreError};

/// Log events read per page, and their value bytes at most.
const PAGE_EVENTS: usize = 10_000;
const PAGE_BYTES: usize = 64 << 20;

pub(super) fn list_at(shared: &Shared, prefix: &str, revision: Revision) -> Result<Vec<KeyValue>> {
    let (mut items, now): (BTreeMap<String, KeyValue>, Revision) = {
        let data = shared.data.read();
        // Read under the lock: the writer publishes memory before the revision.
        let now = shared.revision.load(Ordering::SeqCst);
        let items = data
            .range(prefix.to_string()..)
            .take_while(|(k, _)| has_prefix(k, prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (items, now)
    };
    if revision > now {
        return Err(StoreError::FutureRevision {
            requested: revision,
            current: now,
        });
    }
    let compacted = || shared.compacted.load(Ordering::SeqCst);
    if revision < compacted() {
        return Err(StoreError::Compacted {
            requested: revision,
            compacted: compacted(),
        });
    }
    let mut restored: HashSet<String> = HashSet::new();
    let mut after = revision;
    while after < now {
        let page = read_page(shared, prefix, after, now, PAGE_EVENTS, PAGE_BYTES)?;
        for ev in page.events {
            if !restored.insert(ev.kv.key.clone()) {
                continue;
            }
            match ev.prev {
                Some(prev) => {
                    items.insert(ev.kv.key, prev);
                }
                None => {
                    items.remove(&ev.kv.key);
                }
            }
        }
        after = page.read_to;
    }
    // A compaction while the log was read may have taken part of it.
    if revision < compacted() {
        return Err(StoreError::Compacted {
            requested: revision,
            compacted: compacted(),
        });
    }
    Ok(items.into_values().collect())
}
