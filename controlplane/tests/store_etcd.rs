//! The etcd store against real etcd (a 3-member cluster on loopback): the store conformance
//! suite the SQLite store also passes, the leader killed under writes, and a member that hangs
//! (SIGSTOP, as a partitioned host) while writes, reads and a watch go on through the others.

mod common;

use std::sync::Arc;

use common::etcd::EtcdCluster;
use corral_controlplane::store::etcd::{EtcdConfig, EtcdStore};
use corral_controlplane::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_store_passes_the_store_conformance_suite() {
    let Some(etcd) = EtcdCluster::start(3) else {
        return;
    };
    let store = EtcdStore::connect(&EtcdConfig {
        endpoints: etcd.endpoints(),
        ..Default::default()
    })
    .await
    .expect("connect to etcd");
    let store: Arc<dyn Store> = Arc::new(store);
    corral_controlplane::store::conformance::run(store, "/conformance/").await;
}

/// kill -9 of the etcd leader while 8 writers make 1,000 writes: every acknowledged write is
/// there afterwards, and a watcher that resumes from its last revision after each error sees
/// the store's history exactly (no gap, no duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_killing_the_etcd_leader_and_a_watcher_misses_none() {
    use futures::StreamExt;
    use std::time::Duration;

    let Some(mut etcd) = EtcdCluster::start(3) else {
        return;
    };
    let store = Arc::new(
        EtcdStore::connect(&EtcdConfig {
            endpoints: etcd.endpoints(),
            ..Default::default()
        })
        .await
        .expect("connect to etcd"),
    );
    let prefix = "/registry/configmaps/kill/";
    let from = store.current_revision().await.unwrap();

    // The watcher: resumes from the last revision it saw whenever its stream breaks.
    let watcher = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen: Vec<i64> = Vec::new();
            let mut last = from;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while seen.len() < 1_000 && tokio::time::Instant::now() < deadline {
                let Ok(mut w) = store.watch(prefix, last).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                while let Ok(Some(Ok(ev))) =
                    tokio::time::timeout(Duration::from_secs(5), w.next()).await
                {
                    last = ev.revision();
                    seen.push(last);
                    if seen.len() == 1_000 {
                        break;
                    }
                }
            }
            seen
        })
    };

    // 8 writers, 125 keys each; a write that errors is retried until acknowledged (or it
    // turns out to have been applied: AlreadyExists).
    let mut writers = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..125 {
                let key = format!("{prefix}w{w}-{i:03}");
                loop {
                    match store.create(&key, format!("{w}/{i}").into_bytes()).await {
                        Ok(kv) => {
                            acked.push((key.clone(), kv.mod_revision));
                            break;
                        }
                        Err(corral_controlplane::store::StoreError::AlreadyExists { .. }) => break,
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
            acked
        }));
    }
    // Kill the leader once writes are under way.
    while store.list(prefix).await.map(|(l, _)| l.len()).unwrap_or(0) < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let leader = etcd.leader().expect("a leader");
    etcd.members[leader].kill();

    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let (all, _) = store.list(prefix).await.unwrap();
    assert_eq!(all.len(), 1_000, "every key written once");
    for (key, rev) in &acked {
        let got = all
            .iter()
            .find(|kv| &kv.key == key)
            .unwrap_or_else(|| panic!("acknowledged {key} is missing"));
        assert_eq!(got.mod_revision, *rev, "{key}");
    }
    let mut history: Vec<i64> = all.iter().map(|kv| kv.mod_revision).collect();
    history.sort_unstable();
    let seen = watcher.await.unwrap();
    assert_eq!(
        seen, history,
        "the watcher's events are the store's history"
    );
}

/// The member to hang.
#[derive(Debug, Clone, Copy)]
enum Hang {
    Follower,
    Leader,
}

/// SIGSTOP of one member, the one the store is talking to: every write is answered within a
/// bound (at most a few fail, with an error that names the member; none hangs), reads and a
/// watch go on, and after SIGCONT the member converges with the others and the watcher's
/// events are the store's history.
async fn writes_reads_and_watches_go_on_while_a_member_hangs(hang: Hang) {
    use corral_controlplane::store::etcd::REQUEST_TIMEOUT;
    use corral_controlplane::store::StoreError;
    use futures::StreamExt;
    use std::time::Duration;
    use tokio::time::Instant;

    let Some(mut etcd) = EtcdCluster::start(3) else {
        return;
    };
    let leader = etcd.leader().expect("a leader");
    let victim = match hang {
        Hang::Leader => leader,
        Hang::Follower => (leader + 1) % 3,
    };
    // The store starts on the victim (requests stay on the first endpoint until it fails).
    let mut endpoints = etcd.endpoints();
    endpoints.rotate_left(victim);
    let store = Arc::new(
        EtcdStore::connect(&EtcdConfig {
            endpoints,
            ..Default::default()
        })
        .await
        .expect("connect to etcd"),
    );
    let prefix = "/registry/configmaps/hang/";
    let from = store.current_revision().await.unwrap();

    // The watcher resumes from the last revision it saw whenever its stream ends.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let seen = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let watcher = {
        let (store, seen) = (store.clone(), seen.clone());
        tokio::spawn(async move {
            let mut last = from;
            while !*stop_rx.borrow() {
                let Ok(mut w) = store.watch(prefix, last).await else {
                    continue;
                };
                loop {
                    tokio::select! {
                        ev = w.next() => match ev {
                            Some(Ok(ev)) => {
                                last = ev.revision();
                                seen.lock().unwrap().push(last);
                            }
                            _ => break,
                        },
                        _ = stop_rx.changed() => return,
                    }
                }
            }
        })
    };
    let seen_up_to = |rev: i64| {
        let seen = seen.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while seen.lock().unwrap().last().copied().unwrap_or(0) < rev {
                assert!(
                    Instant::now() < deadline,
                    "the watcher never saw revision {rev}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // Writes one key, retrying an error; returns the attempts that failed and the revision.
    let bound = REQUEST_TIMEOUT + Duration::from_secs(2);
    let write = |i: usize| {
        let store = store.clone();
        async move {
            let key = format!("{prefix}k{i:03}");
            let mut failed = Vec::new();
            for _ in 0..5 {
                let started = Instant::now();
                let result = tokio::time::timeout(bound, store.create(&key, vec![b'x'; 16]))
                    .await
                    .unwrap_or_else(|_| panic!("a write of {key} hung for {bound:?}"));
                match result {
                    Ok(kv) => return (kv.mod_revision, failed),
                    // An earlier attempt that failed had landed after all.
                    Err(StoreError::AlreadyExists { .. }) => {
                        let kv = store.get(&key).await.unwrap().expect("the key");
                        return (kv.mod_revision, failed);
                    }
                    Err(e) => failed.push((e.to_string(), started.elapsed())),
                }
            }
            panic!("{key}: five writes failed: {failed:?}");
        }
    };

    for i in 0..10 {
        write(i).await;
    }
    etcd.members[victim].stop();
    let stopped = Instant::now();
    let mut failures = Vec::new();
    let mut last = 0;
    for i in 10..40 {
        let (rev, failed) = write(i).await;
        failures.extend(failed);
        last = rev;
        // Reads go on as well.
        let got = tokio::time::timeout(bound, store.get(&format!("{prefix}k{i:03}")))
            .await
            .expect("a read hung")
            .unwrap();
        assert_eq!(got.map(|kv| kv.mod_revision), Some(rev));
    }
    let took = stopped.elapsed();
    seen_up_to(last).await;
    eprintln!("{hang:?} m{victim} stopped: 30 writes in {took:?}; failed attempts: {failures:?}");
    assert!(failures.len() <= 3, "{failures:?}");
    for (e, _) in &failures {
        assert!(e.contains("etcd"), "{e}");
    }
    assert!(took < Duration::from_secs(40), "{took:?}");
    let (listed, _) = tokio::time::timeout(bound, store.list(prefix))
        .await
        .expect("a list hung")
        .unwrap();
    assert_eq!(listed.len(), 40);

    // Continued, the member catches up: read through it alone, it has every key.
    etcd.members[victim].cont();
    for i in 40..45 {
        last = write(i).await.0;
    }
    let alone = EtcdStore::connect(&EtcdConfig {
        endpoints: vec![etcd.members[victim].client_url.clone()],
        ..Default::default()
    })
    .await
    .expect("the continued member answers");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (all, _) = store.list(prefix).await.unwrap();
    loop {
        if alone.list(prefix).await.map(|(l, _)| l).ok().as_ref() == Some(&all) {
            break;
        }
        assert!(Instant::now() < deadline, "m{victim} did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen_up_to(last).await;
    stop_tx.send(true).unwrap();
    watcher.await.unwrap();
    let mut history: Vec<i64> = all.iter().map(|kv| kv.mod_revision).collect();
    history.sort_unstable();
    assert_eq!(
        *seen.lock().unwrap(),
        history,
        "the watcher's events are the store's history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reads_and_watches_go_on_through_the_majority_while_a_follower_hangs() {
    writes_reads_and_watches_go_on_while_a_member_hangs(Hang::Follower).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reads_and_watches_go_on_through_the_majority_while_the_leader_hangs() {
    writes_reads_and_watches_go_on_while_a_member_hangs(Hang::Leader).await;
}
