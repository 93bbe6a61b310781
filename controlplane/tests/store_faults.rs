//! Fault injection at the store's commit and acknowledgement (the `fail` crate): a failed
//! commit stores nothing and fails every writer of its group, a crash after the commit loses no
//! acknowledged write, and the store goes on working after an injected error. Fail points are
//! process-wide, so they live in this test binary alone and each test holds a `FailScenario`.

use std::path::Path;
use std::time::{Duration, Instant};

use corral_controlplane::store::sqlite::SqliteStore;
use corral_controlplane::store::{Store, StoreError};
use fail::FailScenario;

fn path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("corral.db")
}

/// Concurrent creates of `keys`, each answered.
async fn create_all(s: &SqliteStore, keys: &[String]) -> Vec<Result<i64, StoreError>> {
    let tasks: Vec<_> = keys
        .iter()
        .map(|k| {
            let (s, k) = (s.clone(), k.clone());
            tokio::spawn(async move { s.create(&k, k.clone().into_bytes()).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap().map(|kv| kv.mod_revision));
    }
    out
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/{prefix}/{i:03}")).collect()
}

/// Reopens the database at `path` after the store there was dropped and its threads ended.
fn reopen(path: &Path) -> SqliteStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SqliteStore::open(path) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("reopen: {e}");
                std::thread::yield_now();
            }
            Err(e) => panic!("reopening {}: {e}", path.display()),
        }
    }
}

#[tokio::test]
async fn a_failed_commit_fails_every_writer_of_the_group_and_stores_nothing() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(path(&dir)).unwrap();
    s.create("/before", vec![1]).await.unwrap();
    fail::cfg("store::commit::before", "return").unwrap();
    let failed = keys("failed", 50);
    for r in create_all(&s, &failed).await {
        let err = r.expect_err("no write of a failed group is acknowledged");
        assert!(matches!(err, StoreError::Database { .. }), "{err}");
        assert!(err.to_string().contains("store::commit::before"), "{err}");
    }
    fail::remove("store::commit::before");
    // Nothing of the failed groups is visible, the revision did not move, and the store works.
    assert_eq!(s.list("/failed/").await.unwrap().0.len(), 0);
    assert_eq!(s.current_revision().await.unwrap(), 1);
    let later = keys("later", 10);
    let revs: Vec<_> = create_all(&s, &later)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(revs.iter().all(|r| (2..=11).contains(r)), "{revs:?}");
    drop(s);
    let s = reopen(&path(&dir));
    assert_eq!(s.list("/failed/").await.unwrap().0.len(), 0);
    assert_eq!(s.list("/later/").await.unwrap().0.len(), 10);
    assert_eq!(s.current_revision().await.unwrap(), 11);
    scenario.teardown();
}

#[tokio::test]
async fn a_crash_after_the_commit_before_the_acknowledgement_loses_no_acknowledged_write() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(path(&dir)).unwrap();
    let acked = keys("acked", 40);
    for r in create_all(&s, &acked).await {
        r.unwrap();
    }
    // The writer thread dies between the commit and the replies: nobody hears back.
    fail::cfg("store::commit::after", "panic").unwrap();
    let crashed = keys("crashed", 20);
    let answers = create_all(&s, &crashed).await;
    assert!(
        answers.iter().all(|r| matches!(r, Err(StoreError::Closed))),
        "{answers:?}"
    );
    fail::remove("store::commit::after");
    drop(s);
    // Restarted: every acknowledged write is there; the unanswered ones may be (they were
    // committed), and nothing that is there was acknowledged without being stored.
    let s = reopen(&path(&dir));
    let (stored, rev) = s.list("/").await.unwrap();
    for k in &acked {
        assert!(stored.iter().any(|kv| &kv.key == k), "{k} was acknowledged");
    }
    assert!(stored.iter().all(|kv| &*kv.value == kv.key.as_bytes()));
    assert_eq!(rev, stored.len() as i64);
    s.create("/after", vec![]).await.unwrap();
    scenario.teardown();
}

#[tokio::test]
async fn a_lost_acknowledgement_leaves_the_write_stored_and_the_store_working() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(path(&dir)).unwrap();
    fail::cfg("store::ack", "1*return").unwrap();
    let err = s.create("/unacked", b"v".to_vec()).await.unwrap_err();
    assert!(err.to_string().contains("store::ack"), "{err}");
    // Committed and published although its writer heard of an error, as after a lost reply.
    assert_eq!(&*s.get("/unacked").await.unwrap().unwrap().value, b"v");
    let kv = s.create("/next", vec![]).await.unwrap();
    assert_eq!(kv.mod_revision, 2);
    fail::remove("store::ack");
    drop(s);
    let s = reopen(&path(&dir));
    assert!(s.get("/unacked").await.unwrap().is_some());
    assert!(s.get("/next").await.unwrap().is_some());
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_acknowledged_while_compaction_is_stopped_between_batches() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(path(&dir)).unwrap();
    for chunk in keys("old", 300).chunks(100) {
        for r in create_all(&s, chunk).await {
            r.unwrap();
        }
    }
    fail::cfg("store::compact::batch", "pause").unwrap();
    let compaction = {
        let s = s.clone();
        tokio::spawn(async move { s.compact(300).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.compacted_revision() < 300 {
        assert!(Instant::now() < deadline, "compaction did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Compaction is stopped inside its first batch; the writer is not waiting for it.
    let writes = async {
        for i in 0..20 {
            s.create(&format!("/new/{i}"), vec![]).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(10), writes)
        .await
        .expect("writes acknowledged while compaction is stopped");
    assert!(!compaction.is_finished());
    fail::remove("store::compact::batch");
    compaction.await.unwrap().unwrap();
    scenario.teardown();
}
