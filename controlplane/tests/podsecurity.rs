//! Pod Security admission over real gRPC on loopback: namespace labels enforce, warn and
//! refuse invalid values; the cluster default covers unlabelled namespaces; workload
//! templates only warn; tightening a namespace warns about its pods without evicting them.

use corral_api::status::StatusReason;
use corral_api::{kinds, Client};
use corral_controlplane::admission::podsecurity::{Defaults, Level, Policy};
use corral_controlplane::{start, Config, Running};
use serde_json::{json, Value};

async fn boot_with(pod_security: Defaults) -> (tempfile::TempDir, Running, Client) {
    let dir = tempfile::tempdir().unwrap();
    let running = start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        controllers: false,
        pod_security,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = running.client().await.unwrap();
    (dir, running, client)
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox:1"}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn privileged_pod(name: &str) -> Value {
    pod(
        name,
        json!({"containers": [{"name": "c", "image": "busybox:1", "securityContext": {"privileged": true}}]}),
    )
}

fn host_root_pod(name: &str) -> Value {
    pod(
        name,
        json!({"containers": [{"name": "c", "image": "busybox:1", "volumeMounts": [{"name": "root", "mountPath": "/host"}]}],
               "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
    )
}

async fn create(client: &Client, ns: &str, object: &Value) -> corral_api::client::Result<Value> {
    let info = corral_api::decode::kind_of(object).unwrap();
    client.create_value(info, ns, object, false).await
}

/// The refusal's message, checked to be a Forbidden answer.
fn forbidden(result: corral_api::client::Result<Value>) -> String {
    let err = result.expect_err("refused");
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
    assert_eq!(err.reason(), Some(&StatusReason::Forbidden), "{err}");
    err.to_string()
}

#[tokio::test]
async fn a_baseline_namespace_refuses_privileged_and_host_root_pods_and_admits_a_plain_one() {
    let (_d, _cp, client) = boot_with(Defaults::default()).await;
    let labels = json!({"pod-security.kubernetes.io/enforce": "baseline"});
    create(&client, "", &namespace("lab", labels))
        .await
        .unwrap();

    assert_eq!(
        forbidden(create(&client, "lab", &privileged_pod("priv")).await),
        r#"pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
    );
    assert_eq!(
        forbidden(create(&client, "lab", &host_root_pod("root")).await),
        r#"pods "root" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "root")"#
    );
    let (_, warnings) = client
        .create_value_with_warnings(&kinds::PODS, "lab", &pod("plain", json!({})), false)
        .await
        .expect("a plain pod is admitted");
    assert!(warnings.is_empty(), "{warnings:?}");
    // Nothing refused was stored.
    let (pods, _) = client
        .list_value(&kinds::PODS, "lab", &Default::default())
        .await
        .unwrap();
    assert_eq!(pods.len(), 1);
}

#[tokio::test]
async fn a_restricted_namespace_refuses_a_pod_that_may_run_as_root() {
    let (_d, _cp, client) = boot_with(Defaults::default()).await;
    let labels = json!({"pod-security.kubernetes.io/enforce": "restricted"});
    create(&client, "", &namespace("strict", labels))
        .await
        .unwrap();
    let hardened = |run_as_non_root: Option<bool>| {
        let mut sc = json!({"seccompProfile": {"type": "RuntimeDefault"}});
        if let Some(v) = run_as_non_root {
            sc["runAsNonRoot"] = json!(v);
        }
        json!({"securityContext": sc,
               "containers": [{"name": "c", "image": "busybox:1", "securityContext":
                   {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]})
    };
    assert_eq!(
        forbidden(create(&client, "strict", &pod("root", hardened(None))).await),
        r#"pods "root" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)"#
    );
    create(&client, "strict", &pod("nonroot", hardened(Some(true))))
        .await
        .expect("a hardened non-root pod is admitted");
}

fn privileged_deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1",
                                                       "securityContext": {"privileged": true}}]}}}
    })
}

#[tokio::test]
async fn a_privileged_deployment_in_a_warn_restricted_namespace_is_created_with_a_warning() {
    let (_d, _cp, client) = boot_with(Defaults::default()).await;
    let labels = json!({"pod-security.kubernetes.io/warn": "restricted"});
    create(&client, "", &namespace("watched", labels))
        .await
        .unwrap();

    let (created, warnings) = client
        .create_value_with_warnings(
            &kinds::DEPLOYMENTS,
            "watched",
            &privileged_deployment("web"),
            false,
        )
        .await
        .expect("templates are only warned about");
    assert_eq!(created["metadata"]["name"], "web");
    assert_eq!(
        warnings,
        [
            r#"would violate PodSecurity "restricted:latest": privileged (container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        ]
    );
    // Apply (create and configure) warns the same way.
    let (_, _, warnings) = client
        .apply_value_with_warnings("watched", &privileged_deployment("api"), false)
        .await
        .expect("applied");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let mut changed = privileged_deployment("api");
    changed["spec"]["replicas"] = json!(2);
    let (_, _, warnings) = client
        .apply_value_with_warnings("watched", &changed, false)
        .await
        .expect("configured");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("would violate PodSecurity \"restricted:latest\": "));
}

#[tokio::test]
async fn the_cluster_default_applies_to_unlabelled_namespaces_and_a_label_overrides_it() {
    let (_d, _cp, client) = boot_with(Defaults {
        enforce: Policy::latest(Level::Baseline),
        ..Default::default()
    })
    .await;
    assert_eq!(
        forbidden(create(&client, "default", &privileged_pod("p")).await),
        r#"pods "p" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
    );
    let labels = json!({"pod-security.kubernetes.io/enforce": "privileged"});
    create(&client, "", &namespace("system", labels))
        .await
        .unwrap();
    create(&client, "system", &privileged_pod("p"))
        .await
        .expect("a namespace labelled privileged admits it");
}

#[tokio::test]
async fn an_invalid_label_value_is_refused_naming_the_label() {
    let (_d, _cp, client) = boot_with(Defaults::default()).await;
    let labels = json!({"pod-security.kubernetes.io/enforce": "strict"});
    let err = create(&client, "", &namespace("bad", labels))
        .await
        .expect_err("refused");
    assert!(err.is_invalid(), "{err}");
    assert_eq!(
        err.to_string(),
        r#"namespaces "bad" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
    );

    create(&client, "", &namespace("ok", json!({})))
        .await
        .unwrap();
    let mut ns = client
        .get_value(&kinds::NAMESPACES, "", "ok")
        .await
        .unwrap();
    ns["metadata"]["labels"] = json!({"pod-security.kubernetes.io/warn-version": "1.30"});
    let err = client
        .update_value(&kinds::NAMESPACES, "", &ns, false)
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        r#"namespaces "ok" is invalid: metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "1.30": must be "latest" or "v1.x""#
    );
}

#[tokio::test]
async fn tightening_enforce_warns_about_existing_pods_which_stay_and_are_checked_on_spec_changes() {
    let (_d, _cp, client) = boot_with(Defaults::default()).await;
    create(&client, "", &namespace("lab", json!({})))
        .await
        .unwrap();
    for name in ["a", "b"] {
        create(&client, "lab", &privileged_pod(name)).await.unwrap();
    }
    create(&client, "lab", &host_root_pod("h")).await.unwrap();
    create(&client, "lab", &pod("fine", json!({})))
        .await
        .unwrap();

    let mut ns = client
        .get_value(&kinds::NAMESPACES, "", "lab")
        .await
        .unwrap();
    ns["metadata"]["labels"] = json!({"pod-security.kubernetes.io/enforce": "baseline"});
    let (_, warnings) = client
        .update_value_with_warnings(&kinds::NAMESPACES, "", &ns, false)
        .await
        .expect("labelled");
    assert_eq!(
        warnings,
        [
            r#"existing pods in namespace "lab" violate the new PodSecurity enforce level "baseline:latest""#,
            "a (and 1 other pods): privileged",
            "h: hostPath volumes",
        ]
    );
    let (pods, _) = client
        .list_value(&kinds::PODS, "lab", &Default::default())
        .await
        .unwrap();
    assert_eq!(pods.len(), 4, "nothing is evicted");

    // A metadata change of a violating pod is not checked; a spec change is.
    let mut a = client.get_value(&kinds::PODS, "lab", "a").await.unwrap();
    a["metadata"]["labels"] = json!({"team": "x"});
    let a = client
        .update_value(&kinds::PODS, "lab", &a, false)
        .await
        .expect("metadata-only update");
    let mut new_image = a.clone();
    new_image["spec"]["containers"][0]["image"] = json!("busybox:2");
    let err = client
        .update_value(&kinds::PODS, "lab", &new_image, false)
        .await
        .expect_err("refused");
    assert!(
        err.to_string().starts_with(
            r#"pods "a" is forbidden: violates PodSecurity "baseline:latest": privileged"#
        ),
        "{err}"
    );
    // Status updates are never checked.
    let mut status = a;
    status["status"] = json!({"phase": "Running"});
    client
        .update_value(&kinds::PODS, "lab", &status, true)
        .await
        .expect("status written");
}
