//! A third-party client: Python `grpcio` stubs generated from Corral's `.proto` connect with
//! the cluster CA and the token of a user made by `corral config create-user --role view`;
//! the user may read and may not delete, and without the token nothing is answered.

mod common;

use std::path::Path;
use std::process::Command;

use common::Cluster;

const PYTHON: &str = "/usr/bin/python3";

/// Python modules for `corral/v1/api.proto`, made by protoc and grpc's Python plugin (both
/// installed by scripts/setup.sh).
fn generate_stubs(out: &Path) {
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
    let status = Command::new("protoc")
        .arg(format!("-I{}", proto_dir.display()))
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .arg("--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin")
        .arg("corral/v1/api.proto")
        .status()
        .expect("protoc runs (scripts/setup.sh installs protobuf-compiler-grpc)");
    assert!(
        status.success(),
        "protoc failed to generate the Python stubs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_stubs_connect_with_the_ca_and_a_view_users_token() {
    let c = Cluster::start().await;
    c.corral(&["create", "configmap", "settings", "--from-literal", "k=v"])
        .await
        .ok();
    let kubeconfig = c.home().join("alice.kubeconfig");
    let out = c
        .corral(&[
            "config",
            "create-user",
            "alice",
            "--role",
            "view",
            "--output-file",
            kubeconfig.to_str().unwrap(),
        ])
        .await;
    out.ok();
    // kubectl's columns for the binding create-user made.
    let bindings = c.corral(&["get", "rolebindings", "-o", "wide"]).await;
    let line = bindings
        .ok()
        .lines()
        .find(|l| l.contains("alice"))
        .unwrap_or_else(|| panic!("no binding for alice: {bindings:?}"))
        .to_string();
    let cells = common::cells(&line);
    assert_eq!(cells[1], "ClusterRole/view", "{line}");
    assert_eq!(cells[3], "alice", "{line}");
    let (server, creds) = corral_api::kubeconfig::load(&kubeconfig).unwrap();
    let target = server.strip_prefix("https://").expect("an https:// server");
    let ca_file = c.home().join("ca.crt");
    std::fs::write(
        &ca_file,
        creds.ca_pem.expect("the CA is in the user's kubeconfig"),
    )
    .unwrap();
    let token = creds.token.expect("the user's kubeconfig carries a token");

    let stubs = tempfile::tempdir().unwrap();
    generate_stubs(stubs.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/corral_client.py");
    let run = tokio::process::Command::new(PYTHON)
        .arg(&script)
        .arg(stubs.path())
        .arg(target)
        .arg(&ca_file)
        .arg(&token)
        .output()
        .await
        .expect("python3 runs (scripts/setup.sh installs python3-grpcio)");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let line = |call: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{call} ")))
            .unwrap_or_else(|| panic!("no {call} line in:\n{stdout}\n{stderr}"))
            .to_string()
    };
    assert!(line("version").starts_with("version OK"), "{stdout}");
    assert_eq!(line("list-configmaps"), "list-configmaps OK ['settings']");
    assert_eq!(
        line("delete-configmap"),
        "delete-configmap PERMISSION_DENIED configmaps \"settings\" is forbidden: User \"alice\" \
         cannot delete resource \"configmaps\" in API group \"\" in the namespace \"default\"",
    );
    assert!(
        line("version-without-token").starts_with("version-without-token UNAUTHENTICATED"),
        "{stdout}"
    );
}
