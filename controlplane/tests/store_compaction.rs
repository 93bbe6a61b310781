//! Compaction of a large history does not stall writes: it runs off the writer thread in small
//! batches, so writes (lease renewals among them) are acknowledged promptly meanwhile.

use std::path::Path;
use std::time::{Duration, Instant};

use corral_controlplane::store::sqlite::SqliteStore;
use corral_controlplane::store::{Store, StoreError};

/// Writes `rows` log rows (revisions 1..=rows) straight into a fresh database: a large history
/// without waiting for `rows` acknowledged writes.
fn large_history(path: &Path, rows: i64) {
    drop(SqliteStore::open(path).unwrap());
    let mut conn = rusqlite::Connection::open(path).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut log = tx
            .prepare(
                "INSERT INTO log (rev, key, deleted, value, create_rev) VALUES (?1, ?2, 0, ?3, ?1)",
            )
            .unwrap();
        let value = vec![b'x'; 300];
        for rev in 1..=rows {
            log.execute(rusqlite::params![rev, format!("/old/{rev}"), value])
                .unwrap();
        }
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('revision', ?1)",
            [rows],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_acknowledged_promptly_while_a_large_compaction_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    let rows = 50_000;
    large_history(&path, rows);
    let s = SqliteStore::open(&path).unwrap();
    let compaction = {
        let s = s.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            s.compact(rows).await.unwrap();
            started.elapsed()
        })
    };
    let (mut during, mut worst) = (0, Duration::ZERO);
    let mut i = 0;
    while !compaction.is_finished() {
        let t0 = Instant::now();
        s.create(&format!("/new/{i}"), vec![1; 100]).await.unwrap();
        let latency = t0.elapsed();
        if !compaction.is_finished() {
            during += 1;
            worst = worst.max(latency);
        }
        i += 1;
    }
    let took = compaction.await.unwrap();
    eprintln!("compaction of {rows} rows took {took:?}; {during} writes acknowledged meanwhile, slowest {worst:?}");
    assert!(
        during >= 5,
        "only {during} writes were acknowledged during a {took:?} compaction"
    );
    assert!(
        worst < took / 4 && worst < Duration::from_secs(1),
        "a write waited {worst:?} during a {took:?} compaction"
    );
    assert!(matches!(
        s.watch("/", rows - 1).await.err(),
        Some(StoreError::Compacted { .. })
    ));
}
