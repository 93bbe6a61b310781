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
