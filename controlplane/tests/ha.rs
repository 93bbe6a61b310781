//! Several control planes on one etcd (a real 3-member cluster on loopback): the second server
//! takes the cluster CA the first sealed in the store (so one kubeconfig works on both), reads
//! and watches what the other writes, a wrong server token is refused, and the controllers'
//! leadership moves to the survivor within the lease when its holder stops.

mod common;

use std::time::Duration;

use common::etcd::EtcdCluster;
use corral_api::k8s::api::coordination::v1::Lease;
use corral_api::{kinds, Client, WatchEvent};
use corral_controlplane::store::etcd::EtcdConfig;
use corral_controlplane::{start, Config, Running, StartError};
use futures::StreamExt;
use serde_json::json;

async fn server(
    etcd: &EtcdCluster,
    dir: &std::path::Path,
    token: Option<String>,
) -> Result<Running, StartError> {
    start(Config {
        controllers: true,
        controllers_config: corral_controllers::Config {
            leader_lease: Duration::from_secs(4),
            ..Default::default()
        },
        ..common::on_etcd(etcd, dir, token)
    })
    .await
}

async fn holder(c: &Client) -> String {
    c.get_opt::<Lease>("kube-system", corral_controllers::LEADER_LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_planes_share_one_etcd_one_ca_and_hand_over_the_controllers() {
    let Some(etcd) = EtcdCluster::start(3) else {
        return;
    };
    let (dir_a, dir_b, dir_c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = server(&etcd, dir_a.path(), None)
        .await
        .expect("first server");
    let token = std::fs::read_to_string(dir_a.path().join("server-token")).unwrap();
    let b = server(&etcd, dir_b.path(), Some(token.trim().to_string()))
        .await
        .expect("second server");
    // A wrong token cannot unseal the cluster CA, and no token at all is refused with advice.
    let wrong = server(&etcd, dir_c.path(), Some("not-the-token".into())).await;
    assert!(
        wrong
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("not this cluster's")),
        "{:?}",
        wrong.err()
    );
    let none = server(&etcd, tempfile::tempdir().unwrap().path(), None).await;
    assert!(
        none.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("server token")),
        "{:?}",
        none.err()
    );

    // The first server's admin credentials work on the second: one CA.
    let ca = Client::connect_with(&a.url(), &a.admin_credentials())
        .await
        .unwrap();
    let cb = Client::connect_with(&b.url(), &a.admin_credentials())
        .await
        .unwrap();
    let mut watch = Box::pin(
        cb.watch_value(&kinds::CONFIGMAPS, "default", &Default::default(), 0)
            .await
            .unwrap(),
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "shared", "namespace": "default"}, "data": {"k": "v"}});
    ca.create_value(&kinds::CONFIGMAPS, "default", &cm, false)
        .await
        .unwrap();
    let got = cb
        .get_value(&kinds::CONFIGMAPS, "default", "shared")
        .await
        .unwrap();
    assert_eq!(got["data"]["k"], "v");
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(ev)) = watch.next().await {
            if let WatchEvent::Added(o) = ev {
                return o["metadata"]["name"].as_str().map(str::to_string);
            }
        }
        None
    })
    .await
    .expect("the second server's watch sees the first server's write");
    assert_eq!(seen.as_deref(), Some("shared"));

    // One leader runs the controllers; when its server stops, the other takes over.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        let h = holder(&cb).await;
        if !h.is_empty() {
            break h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no controllers' leader"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Stop the first server: a renewal after that can only come from the second, which
    // either led already or takes over once the lease (4 s) runs out.
    drop(a);
    let stopped = jiff::Timestamp::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (now_holder, after) = loop {
        let lease = cb
            .get_opt::<Lease>("kube-system", corral_controllers::LEADER_LEASE)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec);
        if let Some(spec) = lease {
            let renewed = spec.renew_time.map(|t| t.0);
            if let (Some(h), Some(t)) = (spec.holder_identity, renewed) {
                if t > stopped && !h.is_empty() {
                    break (h, t.duration_since(stopped));
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no server renewed the controllers' lease after the first stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "controllers' lease: first holder {first}, after the first server stopped {now_holder} (renewed {after:?} later)"
    );
    assert!(after < jiff::SignedDuration::from_secs(10), "{after:?}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_cluster_migrated_to_etcd_keeps_its_objects_uids_tokens_and_ca() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (uid, creds) = {
        let sqlite = start(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            controllers: false,
            ..Default::default()
        })
        .await
        .unwrap();
        let c = sqlite.client().await.unwrap();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "kept", "namespace": "default"}, "data": {"k": "v"}});
        let made = c
            .create_value(&kinds::CONFIGMAPS, "default", &cm, false)
            .await
            .unwrap();
        (
            made["metadata"]["uid"].as_str().unwrap().to_string(),
            sqlite.admin_credentials(),
        )
    };
    let to = EtcdConfig {
        endpoints: etcd.endpoints(),
        ..Default::default()
    };
    let done = corral_controlplane::migrate::migrate(dir.path(), &to, None)
        .await
        .unwrap();
    assert!(done.keys > 5, "{done:?}");
    let again = corral_controlplane::migrate::migrate(dir.path(), &to, None).await;
    assert!(
        again
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("already holds a cluster")),
        "{again:?}"
    );
    // The same data dir on etcd: the old admin credentials (same CA) see the same object.
    let on_etcd = server(&etcd, dir.path(), None)
        .await
        .expect("server on etcd");
    let c = Client::connect_with(&on_etcd.url(), &creds).await.unwrap();
    let got = c
        .get_value(&kinds::CONFIGMAPS, "default", "kept")
        .await
        .unwrap();
    assert_eq!(got["metadata"]["uid"].as_str(), Some(uid.as_str()));
    assert_eq!(got["data"]["k"], "v");
}
