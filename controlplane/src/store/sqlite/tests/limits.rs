//! The store's limits: watchers too far behind are closed with "re-list" and catch up a page at
//! a time, and a full write queue (in writes or in bytes) makes callers wait.

use super::*;
use std::time::Instant;

fn open_with(options: Options) -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(dir.path().join("corral.db"), options).unwrap();
    (dir, store)
}

/// Many writes at once (grouped by the writer), all acknowledged.
async fn write_many(s: &SqliteStore, prefix: &str, n: usize, size: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let s = s.clone();
            let key = format!("{prefix}{i:06}");
            tokio::spawn(async move { s.create(&key, vec![7; size]).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_watcher_too_far_behind_is_closed_with_relist_instead_of_buffering_history() {
    let (_d, s) = open_with(Options {
        broadcast_groups: 4,
        max_watch_backlog: 100,
        ..Options::default()
    });
    let mut w = s.watch("/k/", 0).await.unwrap();
    // The watcher reads nothing while 300 revisions pass in many groups.
    for i in 0..30 {
        write_many(&s, &format!("/k/{i:02}-"), 10, 10).await;
    }
    let err = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("an answer within 5s")
        .expect("an error, not the end of the stream")
        .expect_err("a watcher 300 revisions behind is closed");
    assert!(matches!(err, StoreError::WatchLagged), "{err}");
    assert!(err.to_string().contains("re-list"), "{err}");
    assert!(w.next().await.is_none(), "the watch ends after the error");
}

#[tokio::test]
async fn a_watch_from_further_back_than_the_backlog_asks_for_a_relist() {
    let (_d, s) = open_with(Options {
        max_watch_backlog: 50,
        ..Options::default()
    });
    write_many(&s, "/k/", 80, 10).await;
    let err = s.watch("/k/", 10).await.err().expect("70 revisions behind");
    assert!(matches!(err, StoreError::WatchLagged), "{err}");
    let mut w = s
        .watch("/k/", 40)
        .await
        .expect("40 revisions behind is allowed");
    assert_eq!(next(&mut w).await.revision(), 41);
}

#[tokio::test]
async fn a_lagging_watcher_within_the_backlog_catches_up_every_event_a_page_at_a_time() {
    let (_d, s) = open_with(Options {
        broadcast_groups: 2,
        catch_up_events: 7,
        ..Options::default()
    });
    let mut w = s.watch("/k/", 0).await.unwrap();
    for i in 0..20 {
        s.create(&format!("/k/{i:02}"), vec![]).await.unwrap();
        s.create(&format!("/other/{i:02}"), vec![]).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(next(&mut w).await.revision());
    }
    assert_eq!(got, (0..20).map(|i| 2 * i + 1).collect::<Vec<_>>());
}

#[test]
fn a_catch_up_page_holds_at_most_its_event_and_byte_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = SqliteStore::open(&path).unwrap();
    // Revisions 1..=10 under /k/ with 100-byte values, 11..=15 elsewhere.
    rt.block_on(async {
        for i in 0..10 {
            s.create(&format!("/k/{i}"), vec![1; 100]).await.unwrap();
        }
        for i in 0..5 {
            s.create(&format!("/o/{i}"), vec![1; 100]).await.unwrap();
        }
    });
    // (after, upto, max events, max bytes) -> (revisions read, read to)
    type Case = ((i64, i64, usize, usize), (Vec<i64>, i64));
    let cases: [Case; 6] = [
        ((0, 15, 100, 1 << 20), ((1..=10).collect(), 15)),
        ((0, 15, 4, 1 << 20), (vec![1, 2, 3, 4], 4)),
        ((4, 15, 4, 1 << 20), (vec![5, 6, 7, 8], 8)),
        ((0, 15, 100, 250), (vec![1, 2, 3], 3)),
        ((0, 15, 100, 1), (vec![1], 1)),
        ((10, 15, 4, 1 << 20), (vec![], 15)),
    ];
    for ((after, upto, events, bytes), (want, read_to)) in cases {
        let page = watch::read_page(&s.shared, "/k/", after, upto, events, bytes).unwrap();
        let got: Vec<_> = page.events.iter().map(Event::revision).collect();
        assert_eq!(
            (got, page.read_to),
            (want, read_to),
            "after {after}, upto {upto}, {events} events, {bytes} bytes"
        );
    }
}

#[tokio::test]
// The held lock is the point: it stops the writer thread, not this task.
#[allow(clippy::await_holding_lock)]
async fn a_full_write_queue_makes_callers_wait_without_blocking_the_runtime() {
    // A current-thread runtime: a caller blocking its thread would stop the test itself.
    let (_dir, s) = open_with(Options {
        queue_writes: 8,
        ..Options::default()
    });
    // Holding the in-memory state stops the writer: it takes one group (at most 8 writes), then
    // waits to check it against memory.
    let stall = s.shared.data.write();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.create(&format!("/k/{i}"), vec![]).await })
        })
        .collect();
    wait_for("the queue to fill", || {
        let done = tasks.iter().filter(|t| t.is_finished()).count();
        assert_eq!(done, 0, "queued {}", s.queued_writes());
        s.queued_writes() >= 8
    })
    .await;
    // The runtime goes on running other tasks while at least four callers wait for room.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(s.queued_writes(), 8, "the queue holds at most its capacity");
    assert!(tasks.iter().all(|t| !t.is_finished()));
    drop(stall);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(s.list("/k/").await.unwrap().0.len(), 20);
}

#[tokio::test]
// The held lock is the point: it stops the writer thread, not this task.
#[allow(clippy::await_holding_lock)]
async fn a_write_queue_full_of_bytes_makes_callers_wait() {
    let (_dir, s) = open_with(Options {
        queue_bytes: 10_000,
        ..Options::default()
    });
    let stall = s.shared.data.write();
    // Keys of 4 bytes, values of 4,000: two fit in 10,000 bytes, the third waits.
    let spawn = |i: usize| {
        let s = s.clone();
        tokio::spawn(async move { s.create(&format!("/k/{i}"), vec![0; 4000]).await })
    };
    let mut tasks = vec![spawn(0)];
    wait_for("the writer to take the first write", || {
        s.queue_bytes.available_permits() == 10_000 - 4004 && s.queued_writes() == 0
    })
    .await;
    tasks.extend([spawn(1), spawn(2)]);
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(s.queued_writes(), 1, "the third write waits for bytes");
    assert!(tasks.iter().all(|t| !t.is_finished()));
    drop(stall);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // The writer hands the bytes back when it drops a request, just after replying.
    wait_for("the budget to be whole again", || {
        s.queue_bytes.available_permits() == 10_000
    })
    .await;
}
