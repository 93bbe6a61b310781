//! The `Store` contract as one suite every backend must pass (SQLite in unit tests, etcd in
//! `controlplane/tests/store_etcd.rs`): revisions, compare-and-swap, prefix lists, lists at a
//! past revision, watch replay with previous values, compaction, concurrent writers. Cases use
//! keys under their own prefix and only relative revisions, so they run on a shared etcd.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{Event, EventType, Store, StoreError, WatchStream};

async fn next(w: &mut WatchStream, case: &str) -> Event {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("{case}: watch error {e}"),
        Ok(None) => panic!("{case}: watch ended"),
        Err(_) => panic!("{case}: no watch event within 10 s"),
    }
}

fn text(v: &[u8]) -> &str {
    std::str::from_utf8(v).unwrap_or("<binary>")
}

/// Runs every case against `store`, each under `prefix` plus its own name.
pub async fn run(store: Arc<dyn Store>, prefix: &str) {
    let s = store.as_ref();
    revisions_grow_and_compare_and_swap_holds(s, &format!("{prefix}cas/")).await;
    lists_hold_only_their_prefix_in_key_order(s, &format!("{prefix}list/")).await;
    deletes_return_the_last_value_at_the_deletion_revision(s, &format!("{prefix}del/")).await;
    watches_replay_history_then_follow_with_previous_values(s, &format!("{prefix}watch/")).await;
    lists_at_a_past_revision_show_that_revision(s, &format!("{prefix}at/")).await;
    concurrent_writers_are_each_acknowledged_once(store.clone(), &format!("{prefix}many/")).await;
    compacted_history_asks_for_a_relist(s, &format!("{prefix}compact/")).await;
}

async fn revisions_grow_and_compare_and_swap_holds(s: &dyn Store, p: &str) {
    let case = "revisions_grow_and_compare_and_swap_holds";
    let before = s.current_revision().await.unwrap();
    let a = s.create(&format!("{p}a"), b"1".to_vec()).await.unwrap();
    let b = s.create(&format!("{p}b"), b"2".to_vec()).await.unwrap();
    assert!(
        a.mod_revision > before && b.mod_revision > a.mod_revision,
        "{case}"
    );
    assert_eq!(a.create_revision, a.mod_revision, "{case}");
    let a2 = s
        .update(&format!("{p}a"), b"3".to_vec(), a.mod_revision)
        .await
        .unwrap();
    assert_eq!(a2.create_revision, a.mod_revision, "{case}");
    assert!(a2.mod_revision > b.mod_revision, "{case}");
    assert!(
        s.current_revision().await.unwrap() >= a2.mod_revision,
        "{case}"
    );
    let got = s.get(&format!("{p}a")).await.unwrap().unwrap();
    assert_eq!(
        (text(&got.value), got.mod_revision),
        ("3", a2.mod_revision),
        "{case}"
    );
    // A stale revision conflicts and changes nothing.
    match s
        .update(&format!("{p}a"), b"4".to_vec(), a.mod_revision)
        .await
    {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!(
            (expected, actual),
            (a.mod_revision, a2.mod_revision),
            "{case}"
        ),
        other => panic!("{case}: stale update gave {other:?}"),
    }
    assert_eq!(
        text(&s.get(&format!("{p}a")).await.unwrap().unwrap().value),
        "3",
        "{case}"
    );
    assert!(
        matches!(
            s.create(&format!("{p}a"), vec![]).await,
            Err(StoreError::AlreadyExists { .. })
        ),
        "{case}"
    );
    assert!(
        matches!(
            s.delete(&format!("{p}a"), Some(a.mod_revision)).await,
            Err(StoreError::Conflict { .. })
        ),
        "{case}"
    );
    assert!(
        matches!(
            s.update(&format!("{p}nope"), vec![], 1).await,
            Err(StoreError::NotFound { .. })
        ),
        "{case}"
    );
    assert!(
        matches!(
            s.delete(&format!("{p}nope"), None).await,
            Err(StoreError::NotFound { .. })
        ),
        "{case}"
    );
    assert!(
        s.get(&format!("{p}nope")).await.unwrap().is_none(),
        "{case}"
    );
}

async fn lists_hold_only_their_prefix_in_key_order(s: &dyn Store, p: &str) {
    let case = "lists_hold_only_their_prefix_in_key_order";
    for k in ["a/y", "a/x", "b/z"] {
        s.create(&format!("{p}{k}"), k.as_bytes().to_vec())
            .await
            .unwrap();
    }
    // A key that only shares the prefix's text without its separator is not under it.
    s.create(&format!("{}x/a", p.trim_end_matches('/')), vec![])
        .await
        .unwrap();
    let (items, rev) = s.list(&format!("{p}a/")).await.unwrap();
    let keys: Vec<String> = items
        .iter()
        .map(|kv| kv.key.trim_start_matches(p).to_string())
        .collect();
    assert_eq!(keys, ["a/x", "a/y"], "{case}");
    assert!(
        rev >= items.iter().map(|kv| kv.mod_revision).max().unwrap(),
        "{case}"
    );
    assert_eq!(s.list(p).await.unwrap().0.len(), 3, "{case}");
}

async fn deletes_return_the_last_value_at_the_deletion_revision(s: &dyn Store, p: &str) {
    let case = "deletes_return_the_last_value_at_the_deletion_revision";
    let k = format!("{p}k");
    let created = s.create(&k, b"v".to_vec()).await.unwrap();
    let deleted = s.delete(&k, Some(created.mod_revision)).await.unwrap();
    assert_eq!(text(&deleted.value), "v", "{case}");
    assert!(deleted.mod_revision > created.mod_revision, "{case}");
    assert!(s.get(&k).await.unwrap().is_none(), "{case}");
    // Created again: a new object with a new create revision.
    let again = s.create(&k, b"w".to_vec()).await.unwrap();
    assert!(again.create_revision > deleted.mod_revision, "{case}");
}

async fn watches_replay_history_then_follow_with_previous_values(s: &dyn Store, p: &str) {
    let case = "watches_replay_history_then_follow_with_previous_values";
    let a = s.create(&format!("{p}w/a"), b"1".to_vec()).await.unwrap();
    s.create(&format!("{p}other"), b"n".to_vec()).await.unwrap();
    let a2 = s
        .update(&format!("{p}w/a"), b"2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    let mut w = s.watch(&format!("{p}w/"), a.mod_revision).await.unwrap();
    let ev = next(&mut w, case).await;
    assert_eq!(
        (ev.kind, ev.revision(), text(&ev.kv.value)),
        (EventType::Put, a2.mod_revision, "2"),
        "{case}"
    );
    assert_eq!(ev.kv.create_revision, a.mod_revision, "{case}");
    assert_eq!(
        ev.prev.as_ref().map(|p| text(&p.value)),
        Some("1"),
        "{case}"
    );
    let deleted = s.delete(&format!("{p}w/a"), None).await.unwrap();
    let ev = next(&mut w, case).await;
    assert_eq!(
        (ev.kind, ev.revision(), text(&ev.kv.value)),
        (EventType::Delete, deleted.mod_revision, "2"),
        "{case}"
    );
    let made = s.create(&format!("{p}w/b"), b"3".to_vec()).await.unwrap();
    let ev = next(&mut w, case).await;
    assert_eq!(
        (ev.kind, ev.revision(), ev.prev.is_none()),
        (EventType::Put, made.mod_revision, true),
        "{case}"
    );
    // From now (0): only later changes.
    let mut live = s.watch(&format!("{p}w/"), 0).await.unwrap();
    let later = s
        .update(&format!("{p}w/b"), b"4".to_vec(), made.mod_revision)
        .await
        .unwrap();
    assert_eq!(
        next(&mut live, case).await.revision(),
        later.mod_revision,
        "{case}"
    );
}

async fn lists_at_a_past_revision_show_that_revision(s: &dyn Store, p: &str) {
    let case = "lists_at_a_past_revision_show_that_revision";
    let one = s.create(&format!("{p}1"), b"one".to_vec()).await.unwrap();
    s.create(&format!("{p}2"), b"two".to_vec()).await.unwrap();
    let at = s.current_revision().await.unwrap();
    s.update(&format!("{p}1"), b"one'".to_vec(), one.mod_revision)
        .await
        .unwrap();
    s.delete(&format!("{p}2"), None).await.unwrap();
    s.create(&format!("{p}3"), b"three".to_vec()).await.unwrap();
    let then: Vec<(String, String)> = s
        .list_at(p, at)
        .await
        .unwrap()
        .into_iter()
        .map(|kv| {
            (
                kv.key.trim_start_matches(p).to_string(),
                text(&kv.value).to_string(),
            )
        })
        .collect();
    assert_eq!(
        then,
        [("1".into(), "one".into()), ("2".into(), "two".into())],
        "{case}"
    );
    let now = s.current_revision().await.unwrap();
    assert!(
        matches!(
            s.list_at(p, now + 1000).await,
            Err(StoreError::FutureRevision { .. })
        ),
        "{case}"
    );
}

async fn concurrent_writers_are_each_acknowledged_once(s: Arc<dyn Store>, p: &str) {
    let case = "concurrent_writers_are_each_acknowledged_once";
    let from = s.current_revision().await.unwrap();
    let mut w = s.watch(p, from).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        let key = format!("{p}{i:04}");
        tasks.push(tokio::spawn(
            async move { s.create(&key, vec![1; 100]).await },
        ));
    }
    let mut revs: Vec<i64> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap().mod_revision)
        .collect();
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(revs.len(), 200, "{case}: revisions must be distinct");
    // The watcher sees each write once, in revision order.
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen.push(next(&mut w, case).await.revision());
    }
    assert_eq!(seen, revs, "{case}");
}

async fn compacted_history_asks_for_a_relist(s: &dyn Store, p: &str) {
    let case = "compacted_history_asks_for_a_relist";
    let first = s.create(&format!("{p}0"), vec![]).await.unwrap();
    for i in 1..5 {
        s.create(&format!("{p}{i}"), vec![]).await.unwrap();
    }
    let now = s.current_revision().await.unwrap();
    s.compact(now).await.unwrap();
    match s.watch(p, first.mod_revision).await {
        Err(e @ StoreError::Compacted { .. }) => {
            assert!(e.to_string().contains("re-list"), "{case}: {e}")
        }
        Err(e) => panic!("{case}: watch from a compacted revision gave {e}"),
        Ok(mut w) => {
            // etcd reports the compaction on the stream rather than at the call.
            match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
                Ok(Some(Err(StoreError::Compacted { .. }))) => {}
                other => panic!("{case}: expected Compacted, got {other:?}"),
            }
        }
    }
    assert!(
        matches!(
            s.list_at(p, first.mod_revision).await,
            Err(StoreError::Compacted { .. })
        ),
        "{case}"
    );
    let mut w = s.watch(p, now).await.unwrap();
    let after = s.create(&format!("{p}9"), vec![]).await.unwrap();
    assert_eq!(
        next(&mut w, case).await.revision(),
        after.mod_revision,
        "{case}"
    );
}
