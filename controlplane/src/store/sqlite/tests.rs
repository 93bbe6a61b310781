use super::*;
use crate::store::EventType;
use futures::StreamExt;
use std::time::Duration;

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("corral.db")).unwrap();
    (dir, store)
}

async fn next(stream: &mut WatchStream) -> Event {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("watch event within 5s")
        .expect("stream open")
        .expect("no watch error")
}

#[tokio::test]
async fn every_write_gets_the_next_global_revision() {
    let (_d, s) = open();
    let a = s.create("/pods/default/a", b"1".to_vec()).await.unwrap();
    let b = s.create("/pods/default/b", b"2".to_vec()).await.unwrap();
    assert_eq!((a.mod_revision, b.mod_revision), (1, 2));
    let a2 = s.update("/pods/default/a", b"3".to_vec(), 1).await.unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision), (1, 3));
    assert_eq!(s.current_revision().await.unwrap(), 3);
}

#[tokio::test]
async fn compare_and_swap_rejects_stale_revisions() {
    let (_d, s) = open();
    s.create("/k", b"1".to_vec()).await.unwrap();
    s.update("/k", b"2".to_vec(), 1).await.unwrap();
    let err = s.update("/k", b"3".to_vec(), 1).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(&*s.get("/k").await.unwrap().unwrap().value, b"2");
    assert!(matches!(
        s.create("/k", vec![]).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        s.delete("/k", Some(1)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        s.update("/nope", vec![], 1).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn list_returns_keys_under_a_prefix_only() {
    let (_d, s) = open();
    for k in ["/pods/a/x", "/pods/a/y", "/pods/b/z", "/podsx/a"] {
        s.create(k, vec![]).await.unwrap();
    }
    let (items, rev) = s.list("/pods/a/").await.unwrap();
    assert_eq!(
        items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        ["/pods/a/x", "/pods/a/y"]
    );
    assert_eq!(rev, 4);
    assert_eq!(s.list("/pods/").await.unwrap().0.len(), 3);
}

#[tokio::test]
async fn acknowledged_writes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.create("/a", b"1".to_vec()).await.unwrap();
        s.create("/b", b"2".to_vec()).await.unwrap();
        s.delete("/a", None).await.unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert!(s.get("/a").await.unwrap().is_none());
    assert_eq!(&*s.get("/b").await.unwrap().unwrap().value, b"2");
    assert_eq!(s.current_revision().await.unwrap(), 3);
    assert_eq!(s.create("/c", vec![]).await.unwrap().mod_revision, 4);
}

#[tokio::test]
async fn watch_replays_history_then_follows_live_changes() {
    let (_d, s) = open();
    s.create("/pods/a", b"1".to_vec()).await.unwrap();
    s.create("/nodes/n", b"n".to_vec()).await.unwrap();
    s.update("/pods/a", b"2".to_vec(), 1).await.unwrap();
    let mut w = s.watch("/pods/", 1).await.unwrap();
    let ev = next(&mut w).await;
    assert_eq!(
        (ev.kind, ev.revision(), &*ev.kv.value),
        (EventType::Put, 3, &b"2"[..])
    );
    assert_eq!(&*ev.prev.unwrap().value, b"1");
    s.delete("/pods/a", None).await.unwrap();
    let ev = next(&mut w).await;
    assert_eq!(
        (ev.kind, ev.revision(), &*ev.kv.value),
        (EventType::Delete, 4, &b"2"[..])
    );
}

#[tokio::test]
async fn watch_from_a_compacted_revision_asks_for_a_relist() {
    let (_d, s) = open();
    for i in 0..10 {
        s.create(&format!("/k{i}"), vec![]).await.unwrap();
    }
    s.compact(5).await.unwrap();
    let err = s.watch("/", 2).await.err().unwrap();
    assert!(matches!(
        err,
        StoreError::Compacted {
            requested: 2,
            compacted: 5
        }
    ));
    assert!(err.to_string().contains("re-list"), "{err}");
    let mut w = s.watch("/", 5).await.unwrap();
    assert_eq!(next(&mut w).await.revision(), 6);
}

#[tokio::test]
async fn concurrent_writers_are_grouped_and_all_acknowledged() {
    let (_d, s) = open();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create(&format!("/k/{i:04}"), vec![1; 100]).await
        }));
    }
    let mut revs: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap().mod_revision)
        .collect();
    revs.sort();
    assert_eq!(revs, (1..=200).collect::<Vec<_>>());
    let mut w = s.watch("/k/", 150).await.unwrap();
    assert_eq!(next(&mut w).await.revision(), 151);
}

#[tokio::test]
async fn a_slow_watcher_catches_up_from_the_log() {
    let (_d, s) = open();
    let mut w = s.watch("/", 0).await.unwrap();
    // More groups than the broadcast channel holds, while the watcher reads nothing.
    for i in 0..(BROADCAST_CAPACITY + 1100) {
        s.create(&format!("/k/{i}"), vec![]).await.unwrap();
    }
    let total = (BROADCAST_CAPACITY + 1100) as i64;
    for rev in 1..=total {
        assert_eq!(next(&mut w).await.revision(), rev);
    }
}

mod limits;

#[tokio::test]
async fn a_list_at_a_past_revision_undoes_every_later_change_under_its_prefix() {
    let (_d, s) = open();
    s.create("/pods/a/1", b"one".to_vec()).await.unwrap(); // 1
    s.create("/pods/a/2", b"two".to_vec()).await.unwrap(); // 2
    s.create("/pods/b/1", b"other".to_vec()).await.unwrap(); // 3
    let at = s.current_revision().await.unwrap();
    s.update("/pods/a/1", b"one'".to_vec(), 1).await.unwrap(); // 4
    s.update("/pods/a/1", b"one''".to_vec(), 4).await.unwrap(); // 5
    s.delete("/pods/a/2", None).await.unwrap(); // 6
    s.create("/pods/a/3", b"three".to_vec()).await.unwrap(); // 7
    s.delete("/pods/a/3", None).await.unwrap(); // 8
    s.create("/pods/a/4", b"four".to_vec()).await.unwrap(); // 9
    let then: Vec<(String, String, i64)> = s
        .list_at("/pods/a/", at)
        .await
        .unwrap()
        .into_iter()
        .map(|kv| {
            (
                kv.key,
                String::from_utf8(kv.value.to_vec()).unwrap(),
                kv.mod_revision,
            )
        })
        .collect();
    assert_eq!(
        then,
        [
            ("/pods/a/1".into(), "one".into(), 1),
            ("/pods/a/2".into(), "two".into(), 2)
        ]
    );
    // At the current revision it is the plain list; past it, or below the compacted
    // revision, it says why not.
    let now = s.current_revision().await.unwrap();
    assert_eq!(
        s.list_at("/pods/a/", now).await.unwrap(),
        s.list("/pods/a/").await.unwrap().0
    );
    assert!(matches!(
        s.list_at("/pods/a/", now + 1).await,
        Err(StoreError::FutureRevision { .. })
    ));
    s.compact(5).await.unwrap();
    assert!(matches!(
        s.list_at("/pods/a/", at).await,
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(s.list_at("/pods/a/", 6).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_sqlite_store_passes_the_store_conformance_suite() {
    let (_d, s) = open();
    crate::store::conformance::run(Arc::new(s), "/conformance/").await;
}
