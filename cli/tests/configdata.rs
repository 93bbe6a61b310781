//! ConfigMaps and Secrets through the CLI and the API server: kubectl's create commands,
//! `stringData` folded into `data`, and bad keys refused with their path, storing nothing.

mod common;

use common::{cells, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmaps_and_secrets_are_created_listed_and_stored_as_kubernetes_does() {
    let c = Cluster::start_with(false).await;
    let env = c.file("app.env", "MODE=prod\n# comment\nWORKERS=4\n");
    assert_eq!(
        c.corral(&["create", "configmap", "mi-config", "--from-env-file", &env])
            .await
            .ok()
            .trim(),
        "configmap/mi-config created"
    );
    assert_eq!(
        c.corral(&[
            "create",
            "secret",
            "generic",
            "mi-secret",
            "--from-literal=user=admin",
            "--from-literal=pass=s3cr3t",
        ])
        .await
        .ok()
        .trim(),
        "secret/mi-secret created"
    );
    let cms = c.corral(&["get", "cm"]).await;
    let row = cms
        .ok()
        .lines()
        .find(|l| l.starts_with("mi-config"))
        .unwrap()
        .to_string();
    assert_eq!(cells(&row)[..2], ["mi-config", "2"], "{}", cms.ok());
    let secrets = c.corral(&["get", "secrets"]).await;
    assert!(
        secrets
            .ok()
            .starts_with("NAME        TYPE     DATA   AGE\nmi-secret   Opaque   2      "),
        "{}",
        secrets.ok()
    );

    let cm = c.corral(&["describe", "configmap", "mi-config"]).await;
    let text = cm.ok();
    assert!(
        text.starts_with("Name:         mi-config\nNamespace:    default\n"),
        "{text}"
    );
    assert!(
        text.contains("\nData\n====\nMODE:\n----\nprod\nWORKERS:\n----\n4\n\nBinaryData\n====\n\nEvents:  <none>\n"),
        "{text}"
    );
    let sec = c.corral(&["describe", "secret", "mi-secret"]).await;
    assert!(
        sec.ok()
            .ends_with("\nType:  Opaque\n\nData\n====\npass:  6 bytes\nuser:  5 bytes\n"),
        "{}",
        sec.ok()
    );
    assert!(
        !sec.ok().contains("s3cr3t"),
        "describe never shows a secret's values"
    );

    // stringData is written into data (base64 on the wire) and not stored itself.
    let f = c.file(
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: from-yaml\ndata:\n  user: b2xk\nstringData:\n  user: admin\n  token: abc\n",
    );
    c.corral(&["apply", "-f", &f]).await.ok();
    let yaml = c
        .corral(&["get", "secret", "from-yaml", "-o", "yaml"])
        .await
        .ok()
        .to_string();
    assert!(yaml.contains("  user: YWRtaW4=\n"), "{yaml}");
    assert!(yaml.contains("  token: YWJj\n"), "{yaml}");
    assert!(yaml.contains("type: Opaque"), "{yaml}");
    assert!(!yaml.contains("\nstringData:"), "{yaml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_and_missing_tls_keys_are_refused_with_their_path() {
    let c = Cluster::start_with(false).await;
    let f = c.file(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  \"a b\": x\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: half-tls\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: x\n",
    );
    let out = c.corral(&["apply", "-f", &f]).await;
    let err = out.failed();
    assert!(
        err.contains(
            "ConfigMap \"bad\" is invalid: data[a b]: Invalid value: \"a b\": a valid config key"
        ),
        "{err}"
    );
    assert!(
        err.contains("Secret \"half-tls\" is invalid: data[tls.key]: Required value"),
        "{err}"
    );
    let cms = c.corral(&["get", "cm", "bad"]).await;
    assert!(cms.failed().contains("not found"), "nothing stored");
}
