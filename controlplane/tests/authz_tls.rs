//! Authorization over real TLS connections, each identity a client certificate signed by
//! the cluster CA: node A may write the status of its own pods only and read only the
//! Secrets its pods use; a user bound to `view` reads and may not delete.

use corral_api::k8s::api::core::v1::{Pod, Secret};
use corral_api::{kinds, Client, DeleteOptions};
use corral_controlplane::auth::NODES;
use corral_controlplane::{start, Config, Running};
use serde_json::json;

async fn boot() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().unwrap();
    let running = start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        controllers: false,
        ..Config::default()
    })
    .await
    .unwrap();
    (dir, running)
}

async fn client_as(running: &Running, cn: &str, orgs: &[&str]) -> Client {
    let creds = running.credentials_for(cn, orgs).unwrap();
    Client::connect_with(&running.url(), &creds).await.unwrap()
}

/// A pod bound to `node` whose container reads Secret `secret`.
fn pod(name: &str, node: &str, secret: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
            "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]}]}})
}

fn secret(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"}, "stringData": {"k": "v"}})
}

#[tokio::test]
async fn a_node_writes_only_its_own_pods_status_and_reads_only_the_secrets_its_pods_use() {
    let (_dir, running) = boot().await;
    let admin = running.client().await.unwrap();
    for s in ["used-by-a", "used-by-b"] {
        admin
            .create_value(&kinds::SECRETS, "default", &secret(s), false)
            .await
            .unwrap();
    }
    admin
        .create_value(&kinds::PODS, "default", &pod("pa", "a", "used-by-a"), false)
        .await
        .unwrap();
    admin
        .create_value(&kinds::PODS, "default", &pod("pb", "b", "used-by-b"), false)
        .await
        .unwrap();

    let node_a = client_as(&running, "system:node:a", &[NODES]).await;
    let mut own: Pod = node_a.get("default", "pa").await.unwrap();
    own.status.get_or_insert_with(Default::default).phase = Some("Running".into());
    node_a.update_status(&own).await.unwrap();

    let mut other: Pod = node_a.get("default", "pb").await.unwrap();
    other.status.get_or_insert_with(Default::default).phase = Some("Failed".into());
    let err = node_a.update_status(&other).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
    assert!(
        err.to_string().contains(
            "User \"system:node:a\" cannot update resource \"pods/status\" in API group \"\" in the namespace \"default\""
        ),
        "{err}"
    );

    node_a.get::<Secret>("default", "used-by-a").await.unwrap();
    let err = node_a
        .get::<Secret>("default", "used-by-b")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
}

#[tokio::test]
async fn a_user_bound_to_view_reads_but_cannot_delete() {
    let (_dir, running) = boot().await;
    let admin = running.client().await.unwrap();
    admin
        .create_value(&kinds::SECRETS, "default", &secret("s"), false)
        .await
        .unwrap();
    admin
        .create_value(&kinds::PODS, "default", &pod("p", "a", "s"), false)
        .await
        .unwrap();
    admin
        .create_value(
            &kinds::CLUSTERROLEBINDINGS,
            "",
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "viewer-view"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "viewer"}]}),
            false,
        )
        .await
        .unwrap();

    let viewer = client_as(&running, "viewer", &[]).await;
    viewer.get::<Pod>("default", "p").await.unwrap();
    let err = viewer
        .delete::<Pod>("default", "p", DeleteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
    assert!(
        err.to_string().contains(
            "User \"viewer\" cannot delete resource \"pods\" in API group \"\" in the namespace \"default\""
        ),
        "{err}"
    );
    // view does not read Secrets.
    let err = viewer.get::<Secret>("default", "s").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
    // The pod is still there.
    admin.get::<Pod>("default", "p").await.unwrap();
}

#[tokio::test]
async fn the_agent_token_joins_but_cannot_administer_the_cluster() {
    let (dir, running) = boot().await;
    let token = std::fs::read_to_string(dir.path().join("agent-token")).unwrap();
    let creds = corral_api::Credentials {
        ca_pem: running.admin_credentials().ca_pem,
        identity: None,
        token: Some(token.trim().to_string()),
    };
    let bootstrapper = Client::connect_with(&running.url(), &creds).await.unwrap();
    bootstrapper.version().await.unwrap();
    let err = bootstrapper
        .list::<Secret>("kube-system", &Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
    assert!(
        err.to_string().contains("cannot list resource \"secrets\""),
        "{err}"
    );
    let err = bootstrapper
        .create_value(&kinds::SECRETS, "default", &secret("s"), false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
}
