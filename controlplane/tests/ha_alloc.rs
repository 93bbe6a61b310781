//! Service address allocation across two control planes on one etcd (a real 3-member cluster
//! on loopback): NodePort Services created at once through both servers all get distinct
//! ClusterIPs and NodePorts, because the allocations are claimed in the store, not per server.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::etcd::EtcdCluster;
use corral_api::{kinds, Client};
use corral_controlplane::{start, Running, StartError};
use serde_json::json;

const SERVICES: usize = 100;

async fn server(
    etcd: &EtcdCluster,
    dir: &std::path::Path,
    token: Option<String>,
) -> Result<Running, StartError> {
    start(common::on_etcd(etcd, dir, token)).await
}

fn node_port_service(i: usize) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": format!("np-{i:03}"), "namespace": "default"},
           "spec": {"type": "NodePort", "selector": {"app": format!("a{i}")},
                    "ports": [{"port": 80, "protocol": "TCP"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_port_services_created_at_once_through_two_servers_get_distinct_addresses() {
    let Some(etcd) = EtcdCluster::start(3) else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = server(&etcd, dir_a.path(), None)
        .await
        .expect("first server");
    let token = std::fs::read_to_string(dir_a.path().join("server-token")).unwrap();
    let b = server(&etcd, dir_b.path(), Some(token.trim().to_string()))
        .await
        .expect("second server");
    let clients = [
        Client::connect_with(&a.url(), &a.admin_credentials())
            .await
            .unwrap(),
        Client::connect_with(&b.url(), &a.admin_credentials())
            .await
            .unwrap(),
    ];

    // Every create starts at once, alternating between the servers.
    let creates = (0..SERVICES).map(|i| {
        let c = clients[i % 2].clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(60),
                c.create_value(&kinds::SERVICES, "default", &node_port_service(i), false),
            )
            .await
            .unwrap_or_else(|_| panic!("creating np-{i:03} took over 60 s"))
            .unwrap_or_else(|e| panic!("creating np-{i:03}: {e}"))
        }
    });
    let created = futures::future::join_all(creates).await;
    assert_eq!(created.len(), SERVICES);

    // What the store holds, read through the other server, agrees with the answers.
    let (stored, _) = clients[1]
        .list_value(&kinds::SERVICES, "default", &Default::default())
        .await
        .unwrap();
    let stored: Vec<_> = stored
        .into_iter()
        .filter(|s| {
            s["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("np-"))
        })
        .collect();
    assert_eq!(stored.len(), SERVICES);
    for (what, services) in [("answers", &created), ("stored", &stored)] {
        let ips: BTreeSet<&str> = services
            .iter()
            .map(|s| s["spec"]["clusterIP"].as_str().expect("a clusterIP"))
            .collect();
        let ports: BTreeSet<i64> = services
            .iter()
            .map(|s| {
                s["spec"]["ports"][0]["nodePort"]
                    .as_i64()
                    .expect("a nodePort")
            })
            .collect();
        assert_eq!(ips.len(), SERVICES, "{what}: a ClusterIP was given twice");
        assert_eq!(ports.len(), SERVICES, "{what}: a NodePort was given twice");
    }
    drop((a, b));
}
