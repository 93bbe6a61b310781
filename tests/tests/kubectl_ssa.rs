//! `kubectl apply --server-side` with field managers against a Corral cluster: a second
//! manager conflicts (kubectl prints the API server's message and its advice),
//! `--force-conflicts` takes the field, a label dropped from the manifest goes, and
//! `--show-managed-fields` shows both managers; a client-side applied object moves to
//! server-side apply. One step runs kubectl v1.32.

use std::path::Path;
use std::process::Command;

use corral_tests::{skip_unless_e2e, TestCluster};

/// Runs kubectl with its own HOME and the admin kubeconfig: (stdout, stderr, success).
fn kubectl(bin: &Path, kubeconfig: &Path, home: &Path, args: &[&str]) -> (String, String, bool) {
    let out = Command::new(bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .current_dir(home)
        .output()
        .unwrap_or_else(|e| panic!("running kubectl {}: {e}", args.join(" ")));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// A Deployment manifest with `replicas` and the given extra labels.
fn manifest(replicas: u32, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa-web
  labels:
    app: ssa-web
{labels}spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: ssa-web
  template:
    metadata:
      labels:
        app: ssa-web
    spec:
      containers:
      - name: web
        image: corral.test/none:1
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_tracks_field_managers() {
    skip_unless_e2e!();
    let Some(bin) = corral_tests::kubectl::on_path() else {
        eprintln!("SKIPPED: kubectl is not installed");
        return;
    };
    let cluster = TestCluster::create("kubectl-ssa", 0).await;
    let admin = cluster
        .state
        .layout
        .dir
        .join("controlplane")
        .join("admin.kubeconfig");
    let home = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: String| {
        std::fs::write(home.path().join(name), text).expect("write manifest");
        name.to_string()
    };
    let k = |args: &[&str]| kubectl(&bin, &admin, home.path(), args);
    let ok = |args: &[&str]| {
        let (out, err, success) = k(args);
        assert!(success, "kubectl {} failed:\n{out}\n{err}", args.join(" "));
        out
    };

    let first = write("first.yaml", manifest(2, "    tier: front\n"));
    assert_eq!(
        ok(&["apply", "--server-side", "-f", &first]).trim(),
        "deployment.apps/ssa-web serverside-applied"
    );

    // Another manager setting replicas to another value conflicts, in the API server's words
    // and with kubectl's advice.
    let other = write("other.yaml", manifest(3, ""));
    let (out, err, success) = k(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        &other,
    ]);
    assert!(!success, "{out}");
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{err}"
    );
    assert!(
        err.contains("Please review the fields above--they currently have other managers"),
        "{err}"
    );

    // --force-conflicts takes it.
    let out = ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        &other,
    ]);
    assert_eq!(out.trim(), "deployment.apps/ssa-web serverside-applied");
    assert_eq!(
        ok(&[
            "get",
            "deploy",
            "ssa-web",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "3"
    );

    // The first manager drops its label (kubectl v1.32, where present): the label goes; its
    // replicas now agree with the other manager's, so they share it.
    let dropped = write("dropped.yaml", manifest(3, ""));
    let old = Path::new(corral_tests::kubectl::V1_32);
    let (out, err, success) = if old.exists() {
        kubectl(
            old,
            &admin,
            home.path(),
            &["apply", "--server-side", "-f", &dropped],
        )
    } else {
        eprintln!(
            "SKIPPED (kubectl v1.32 step): {} is not installed",
            corral_tests::kubectl::V1_32
        );
        k(&["apply", "--server-side", "-f", &dropped])
    };
    assert!(success, "{out}\n{err}");
    assert_eq!(
        ok(&[
            "get",
            "deploy",
            "ssa-web",
            "-o",
            "jsonpath={.metadata.labels}"
        ]),
        r#"{"app":"ssa-web"}"#
    );

    // Both managers show with --show-managed-fields, and only with it.
    let yaml = ok(&[
        "get",
        "deploy",
        "ssa-web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    for want in [
        "manager: kubectl\n",
        "manager: other\n",
        "operation: Apply",
        "fieldsType: FieldsV1",
        "f:replicas: {}",
    ] {
        assert!(yaml.contains(want), "{want:?} missing:\n{yaml}");
    }
    let plain = ok(&["get", "deploy", "ssa-web", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");

    // An update by another writer (kubectl scale records nothing; kubectl patch does) takes
    // the field: the applier then conflicts with it.
    ok(&[
        "patch",
        "deploy",
        "ssa-web",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":1}}"#,
    ]);
    let (_, err, success) = k(&["apply", "--server-side", "-f", &dropped]);
    assert!(!success);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl-patch\" using apps/v1"),
        "{err}"
    );
    ok(&["delete", "deploy", "ssa-web"]);

    // From client-side to server-side apply: kubectl's own manager takes over what it last
    // applied client-side without a conflict, and kubectl's follow-up requests (the
    // annotation under `kubectl-last-applied`, the managedFields migration) succeed quietly.
    let csa = write("csa.yaml", manifest(1, "").replace("ssa-web", "csa-web"));
    assert_eq!(
        ok(&["apply", "-f", &csa]).trim(),
        "deployment.apps/csa-web created"
    );
    let ssa = write("ssa.yaml", manifest(2, "").replace("ssa-web", "csa-web"));
    let (out, err, success) = k(&["apply", "--server-side", "-f", &ssa]);
    assert!(success && err.is_empty(), "{out}\n{err}");
    assert_eq!(out.trim(), "deployment.apps/csa-web serverside-applied");
    let yaml = ok(&[
        "get",
        "deploy",
        "csa-web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(yaml.contains("replicas: 2"), "{yaml}");
    assert!(yaml.contains("manager: kubectl-last-applied"), "{yaml}");
    assert!(
        !yaml.contains("manager: kubectl-client-side-apply"),
        "migrated:\n{yaml}"
    );
    ok(&["delete", "deploy", "csa-web"]);
}
