//! Drill: the store's data dir on a small tmpfs that fills up. Writes then fail with an error
//! (never a false acknowledgement), the store stays up, and writes succeed again once space
//! returns; every acknowledged write is there after reopening. Needs root (it mounts a tmpfs).

use std::path::Path;
use std::time::{Duration, Instant};

use corral_controlplane::store::sqlite::SqliteStore;
use corral_controlplane::store::{Store, StoreError};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A tmpfs mounted on a temporary directory, unmounted when dropped (also when a test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when not root.
    fn mount(size: &str) -> Option<Tmpfs> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("size={size}").as_str()),
        )
        .expect("mounting a tmpfs");
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = umount2(self.dir.path(), MntFlags::MNT_DETACH) {
            eprintln!("unmounting {}: {e}", self.dir.path().display());
        }
    }
}

fn reopen(path: &Path) -> SqliteStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SqliteStore::open(path) {
            Ok(s) => return s,
            Err(e) => {
                assert!(Instant::now() < deadline, "reopening: {e}");
                std::thread::yield_now();
            }
        }
    }
}

/// Eight concurrent creates (so groups form); each key with its answer.
async fn round(s: &SqliteStore, round: usize) -> Vec<(String, Result<(), StoreError>)> {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            let key = format!("/data/{round:04}-{i}");
            tokio::spawn(async move {
                let r = s.create(&key, vec![round as u8; 16 << 10]).await;
                (key, r.map(|_| ()))
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn fill(path: &Path, bytes: usize) {
    std::fs::write(path, vec![0u8; bytes]).expect("writing the spare file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_without_false_acknowledgements_and_recovers() {
    let Some(fs) = Tmpfs::mount("16m") else {
        eprintln!("skipping: mounting a tmpfs for the full-disk drill needs root");
        return;
    };
    let db = fs.path().join("corral.db");
    // Room to give back later: enough for the checkpoint that copies the write-ahead log
    // (up to 4 MiB, SQLite's default checkpoint size) into the database before it is reused.
    let spare = fs.path().join("spare");
    fill(&spare, 8 << 20);
    let s = SqliteStore::open(&db).unwrap();
    let (mut acked, mut failed) = (Vec::new(), Vec::new());
    for r in 0.. {
        assert!(r < 2000, "the disk never filled");
        for (key, result) in round(&s, r).await {
            match result {
                Ok(()) => acked.push(key),
                Err(e) => {
                    // SQLite's own code reaches the caller: "disk full", not a generic I/O error.
                    assert!(
                        matches!(
                            &e,
                            StoreError::Database {
                                source: rusqlite::Error::SqliteFailure(code, _),
                                ..
                            } if code.code == rusqlite::ErrorCode::DiskFull
                        ),
                        "{key}: {e:?}"
                    );
                    failed.push((key, e.to_string()));
                }
            }
        }
        if failed.len() >= 24 {
            break;
        }
    }
    eprintln!(
        "disk full after {} acknowledged writes; {} failed, first: {}",
        acked.len(),
        failed.len(),
        failed[0].1
    );
    // Up, serving reads, and every acknowledged write is readable.
    for k in &acked {
        assert!(s.get(k).await.unwrap().is_some(), "{k} was acknowledged");
    }
    for (k, _) in &failed {
        assert!(
            s.get(k).await.unwrap().is_none(),
            "{k} failed but is visible"
        );
    }
    // Space returns: writes succeed again.
    std::fs::remove_file(&spare).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.create("/after", b"ok".to_vec()).await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "writes did not recover: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    for (key, result) in round(&s, 9999).await {
        result.unwrap_or_else(|e| panic!("{key} after space returned: {e}"));
    }
    drop(s);
    let s = reopen(&db);
    for k in &acked {
        assert!(
            s.get(k).await.unwrap().is_some(),
            "{k} lost after reopening"
        );
    }
    for (k, _) in &failed {
        assert!(
            s.get(k).await.unwrap().is_none(),
            "{k} failed but was stored"
        );
    }
    assert!(s.get("/after").await.unwrap().is_some());
    drop(s);
}
