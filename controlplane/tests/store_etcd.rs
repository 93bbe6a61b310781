//! The etcd store against real etcd (a 3-member cluster on loopback): the store conformance
//! suite the SQLite store also passes.

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
