//! The cluster identity guard against real control planes (in-process, no root): a node
//! records the cluster it joined, refuses a control plane that serves another (as one started
//! on an empty data dir does), and rejoins only when told to; the control plane keeps its ID
//! across restarts and refuses a data dir that holds something else.

use corral_agent::cluster_id::{ClusterGuard, ClusterIdError, GuardState, FILE};
use corral_api::Client;
use corral_controlplane::{start, Config, Running, StartError};

async fn control_plane(dir: &std::path::Path) -> Result<Running, StartError> {
    start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        controllers: false,
        ..Default::default()
    })
    .await
}

fn guard(cp: &Running, node_dir: &std::path::Path, rejoin: bool) -> ClusterGuard {
    let client = Client::connect_lazy_with(&cp.url(), &cp.admin_credentials()).unwrap();
    ClusterGuard::new(client, &cp.url(), node_dir, rejoin)
}

#[tokio::test]
async fn a_node_refuses_a_control_plane_that_serves_another_cluster_until_told_to_rejoin() {
    let (a_dir, b_dir, node) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let recorded = || std::fs::read_to_string(node.path().join(FILE)).unwrap();

    let a = control_plane(a_dir.path()).await.unwrap();
    let first = guard(&a, node.path(), false);
    first.check().await.expect("a first join is accepted");
    assert_eq!(first.state(), GuardState::Verified);
    assert_eq!(recorded().trim(), a.cluster_id);
    let a_id = a.cluster_id.clone();
    a.shutdown().await;

    // The same store keeps its ID across a restart.
    let a = control_plane(a_dir.path()).await.unwrap();
    assert_eq!(a.cluster_id, a_id);
    guard(&a, node.path(), false).check().await.unwrap();
    a.shutdown().await;

    // Another store (an empty --data-dir) is another cluster: refused, nothing recorded.
    let b = control_plane(b_dir.path()).await.unwrap();
    assert_ne!(b.cluster_id, a_id);
    let refused = guard(&b, node.path(), false);
    let e = refused.check().await.unwrap_err();
    assert!(matches!(e, ClusterIdError::Mismatch { .. }), "{e}");
    assert!(e.is_refusal());
    assert!(refused.refused());
    assert_eq!(recorded().trim(), a_id);

    // Told to rejoin: the new cluster is recorded, and from then on it is the one.
    let rejoining = guard(&b, node.path(), true);
    rejoining.check().await.expect("a rejoin is accepted");
    assert_eq!(recorded().trim(), b.cluster_id);
    guard(&b, node.path(), false).check().await.unwrap();
}

#[tokio::test]
async fn a_control_plane_refuses_a_data_dir_with_files_but_no_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etcd")).unwrap();
    let e = control_plane(dir.path()).await.err().expect("refused");
    let text = e.to_string();
    assert!(
        text.contains(&dir.path().display().to_string()) && text.contains("found: etcd"),
        "{text}"
    );
}
