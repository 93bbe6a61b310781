//! The API server over real gRPC on loopback: verbs, validation, conflicts, watch, binding,
//! graceful deletion, and durability across `kill -9`.

mod common;

use common::boot;
use std::time::Duration;

use corral_api::client::{ApplyResult, DeleteOptions, ListParams, WatchEvent};
use corral_api::k8s::api::apps::v1::ReplicaSet;
use corral_api::k8s::api::core::v1::{Node, Pod};
use corral_api::status::{CauseType, StatusReason};
use corral_api::{kinds, Client};
use futures::StreamExt;
use serde_json::{json, Value};

fn replicaset(name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": image, "resources": {}}],
                                       "dnsPolicy": "ClusterFirst", "restartPolicy": "Always"}}}
    })
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "x"}},
           "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}})
}

async fn count(client: &Client, plural: &str) -> usize {
    let info = kinds::by_plural(plural).unwrap();
    client
        .list_value(info, "", &ListParams::default())
        .await
        .unwrap()
        .0
        .len()
}

#[tokio::test]
async fn apply_reports_created_configured_and_unchanged_and_keeps_scale() {
    let (_d, _cp, client) = boot().await;
    let rs = replicaset("mi-app", 3, "fedek3/workshop-uns:v0.2.0");
    let (r, created) = client.apply_value("default", &rs, false).await.unwrap();
    assert_eq!(r, ApplyResult::Created);
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(
        client.apply_value("default", &rs, false).await.unwrap().0,
        ApplyResult::Unchanged
    );
    client
        .scale(&kinds::REPLICASETS, "default", "mi-app", 5)
        .await
        .unwrap();
    let v3 = replicaset("mi-app", 3, "fedek3/workshop-uns:v0.3.0");
    let (r, updated) = client.apply_value("default", &v3, false).await.unwrap();
    assert_eq!(r, ApplyResult::Configured);
    assert_eq!(
        updated["spec"]["replicas"], 3,
        "the manifest sets replicas, so it wins"
    );
    assert_eq!(updated["metadata"]["generation"], 3);
    let typed: ReplicaSet = client.get("default", "mi-app").await.unwrap();
    let image = typed
        .spec
        .unwrap()
        .template
        .unwrap()
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("fedek3/workshop-uns:v0.3.0"));
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let (_d, _cp, client) = boot().await;
    let mut mismatched = replicaset("mi-app", 3, "i:1");
    mismatched["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    let mut never = replicaset("mi-app", 3, "i:1");
    never["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    let mut unknown = replicaset("mi-app", 3, "i:1");
    unknown["spec"]["replicaz"] = json!(3);
    let cases = [
        (
            replicaset("Mi_App", 1, "i:1"),
            "metadata.name: Invalid value: \"Mi_App\"",
        ),
        (mismatched, "`selector` does not match template `labels`"),
        (
            never,
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\"",
        ),
        (
            replicaset("mi-app", -1, "i:1"),
            "spec.replicas: Invalid value: -1",
        ),
        (unknown, "unknown field spec.replicaz"),
        (
            json!({"apiVersion": "v1", "kind": "Gadget", "metadata": {"name": "g"}}),
            "unknown kind \"Gadget\"",
        ),
    ];
    for (obj, want) in cases {
        let err = client
            .apply_value("default", &obj, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(want), "want {want:?} in {err}");
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    }
    assert_eq!(count(&client, "replicasets").await, 0);
}

#[tokio::test]
async fn a_validation_error_reaches_the_client_as_reason_object_and_field_causes() {
    let (_d, _cp, client) = boot().await;
    let mut bad = replicaset("Mi_App", -1, "i:1");
    bad["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    let err = client
        .create_value(&kinds::REPLICASETS, "default", &bad, false)
        .await
        .unwrap_err();
    assert!(err.is_invalid(), "{err}");
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    let status = err.status().expect("the server sends a Status");
    assert_eq!(status.reason, StatusReason::Invalid);
    assert_eq!(status.code, 422);
    assert_eq!(status.message, err.to_string());
    let d = &status.details;
    assert_eq!(
        (d.group.as_str(), d.kind.as_str(), d.name.as_str()),
        ("apps", "ReplicaSet", "Mi_App")
    );
    let causes: Vec<(&str, CauseType, &str)> = d
        .causes
        .iter()
        .map(|c| (c.field.as_str(), c.kind.clone(), c.message.as_str()))
        .collect();
    for want in [
        (
            "spec.replicas",
            CauseType::FieldValueInvalid,
            "Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            "spec.template.spec.restartPolicy",
            CauseType::FieldValueNotSupported,
            "Unsupported value: \"Never\": supported values: \"Always\"",
        ),
    ] {
        assert!(causes.contains(&want), "want {want:?} in {causes:?}");
    }
    let (field, kind, message) = causes
        .iter()
        .find(|c| c.0 == "metadata.name")
        .expect("a cause for the name");
    assert_eq!(*kind, CauseType::FieldValueInvalid, "{field}");
    assert!(
        message.starts_with("Invalid value: \"Mi_App\": "),
        "{message}"
    );
    // The message is the causes joined, as before.
    let joined: Vec<String> = causes.iter().map(|(f, _, m)| format!("{f}: {m}")).collect();
    assert_eq!(
        status.message,
        format!(
            "ReplicaSet.apps \"Mi_App\" is invalid: {}",
            joined.join(", ")
        )
    );

    let err = client
        .get_value(&kinds::DEPLOYMENTS, "default", "nope")
        .await
        .unwrap_err();
    assert!(err.is_not_found() && !err.is_invalid(), "{err}");
    let status = err.status().expect("the server sends a Status");
    assert_eq!(status.reason, StatusReason::NotFound);
    assert_eq!(
        (
            status.details.group.as_str(),
            status.details.kind.as_str(),
            status.details.name.as_str()
        ),
        ("apps", "deployments", "nope")
    );
    assert_eq!(status.message, "deployments.apps \"nope\" not found");
}

#[tokio::test]
async fn a_quantity_no_component_could_read_is_refused_and_nothing_is_stored() {
    let (_d, _cp, client) = boot().await;
    let with_resources = |name: &str, resources: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"containers": [{"name": "c", "image": "busybox:1", "resources": resources}]}})
    };
    let regex = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
    let mut in_template = replicaset("mi-app", 1, "i:1");
    in_template["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"requests": {"memory": "64MB"}});
    let cases = [
        (
            with_resources("p", json!({"limits": {"cpu": "1x"}})),
            format!("Pod \"p\" is invalid: spec.containers[0].resources.limits[cpu]: Invalid value: \"1x\": {regex}"),
        ),
        (
            in_template,
            format!("spec.template.spec.containers[0].resources.requests[memory]: Invalid value: \"64MB\": {regex}"),
        ),
    ];
    for (obj, want) in cases {
        let err = client
            .apply_value("default", &obj, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&want), "want {want:?} in {err}");
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    }
    assert_eq!(count(&client, "pods").await, 0);
    assert_eq!(count(&client, "replicasets").await, 0);

    // What Kubernetes accepts is accepted, and stored as written.
    let mut ok = with_resources(
        "q",
        json!({"requests": {"cpu": "100n", "memory": "1Ei"}, "limits": {"cpu": "1e3", "memory": "1.5Gi"}}),
    );
    ok["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {"sizeLimit": "1Ei"}}]);
    client.apply_value("default", &ok, false).await.unwrap();
    let pod: Pod = client.get("default", "q").await.unwrap();
    let requests = pod.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(
        (requests["cpu"].0.as_str(), requests["memory"].0.as_str()),
        ("100n", "1Ei")
    );
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict() {
    let (_d, _cp, client) = boot().await;
    let created = client
        .create_value(&kinds::PODS, "default", &pod("p"), false)
        .await
        .unwrap();
    let mut first = created.clone();
    first["metadata"]["labels"]["v"] = json!("1");
    client
        .update_value(&kinds::PODS, "default", &first, false)
        .await
        .unwrap();
    let mut stale = created;
    stale["metadata"]["labels"]["v"] = json!("2");
    let err = client
        .update_value(&kinds::PODS, "default", &stale, false)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(
        err.to_string().contains("the object has been modified"),
        "{err}"
    );
    let now: Pod = client.get("default", "p").await.unwrap();
    assert_eq!(now.metadata.labels.unwrap()["v"], "1");
}

#[tokio::test]
async fn status_updates_touch_only_status_and_main_updates_keep_it() {
    let (_d, _cp, client) = boot().await;
    client
        .create_value(&kinds::PODS, "default", &pod("p"), false)
        .await
        .unwrap();
    let mut p: Pod = client.get("default", "p").await.unwrap();
    p.status.as_mut().unwrap().phase = Some("Running".into());
    p.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("ignored".into(), "yes".into());
    client.update_status(&p).await.unwrap();
    let p: Pod = client.get("default", "p").await.unwrap();
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    assert!(!p.metadata.labels.as_ref().unwrap().contains_key("ignored"));
    let mut q = p.clone();
    q.status.as_mut().unwrap().phase = Some("Failed".into());
    let q = client.update(&q).await.unwrap();
    assert_eq!(q.status.unwrap().phase.as_deref(), Some("Running"));
}

#[tokio::test]
async fn watch_follows_selectors_and_resumes_from_a_revision() {
    let (_d, _cp, client) = boot().await;
    let (_, rv) = client
        .list_value(&kinds::PODS, "default", &ListParams::default())
        .await
        .unwrap();
    let mut w = client
        .watch::<Pod>("default", &ListParams::labels("app=x"), rv)
        .await
        .unwrap();
    client
        .create_value(&kinds::PODS, "default", &pod("a"), false)
        .await
        .unwrap();
    let mut other = pod("b");
    other["metadata"]["labels"] = json!({"app": "y"});
    client
        .create_value(&kinds::PODS, "default", &other, false)
        .await
        .unwrap();
    let mut a = client
        .get_value(&kinds::PODS, "default", "a")
        .await
        .unwrap();
    a["metadata"]["labels"] = json!({"app": "z"});
    client
        .update_value(&kinds::PODS, "default", &a, false)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match ev {
            WatchEvent::Added(p) => seen.push(format!("ADDED {}", p.metadata.name.unwrap())),
            WatchEvent::Deleted(p) => seen.push(format!("DELETED {}", p.metadata.name.unwrap())),
            WatchEvent::Modified(p) => seen.push(format!("MODIFIED {}", p.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
        }
    }
    assert_eq!(
        seen,
        ["ADDED a", "DELETED a"],
        "b never matched; a left the selector"
    );
}

#[tokio::test]
async fn a_pod_is_bound_once_to_a_node_that_exists() {
    let (_d, _cp, client) = boot().await;
    let p = client
        .create_value(&kinds::PODS, "default", &pod("p"), false)
        .await
        .unwrap();
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let err = client
        .bind("default", "p", &uid, "ghost")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    for n in ["n1", "n2"] {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": n}})).unwrap();
        client.create(&node).await.unwrap();
    }
    client.bind("default", "p", &uid, "n1").await.unwrap();
    let err = client.bind("default", "p", &uid, "n2").await.unwrap_err();
    assert!(
        err.is_conflict() && err.to_string().contains("already assigned to node \"n1\""),
        "{err}"
    );
    let p: Pod = client.get("default", "p").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("n1"));
    let cond = &p.status.unwrap().conditions.unwrap()[0];
    assert_eq!(
        (cond.type_.as_str(), cond.status.as_str()),
        ("PodScheduled", "True")
    );
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully_and_confirmed_by_the_agent() {
    let (_d, _cp, client) = boot().await;
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
    client.create(&node).await.unwrap();
    let p = client
        .create_value(&kinds::PODS, "default", &pod("p"), false)
        .await
        .unwrap();
    client
        .bind("default", "p", p["metadata"]["uid"].as_str().unwrap(), "n1")
        .await
        .unwrap();
    let finished = client
        .delete::<Pod>("default", "p", DeleteOptions::default())
        .await
        .unwrap();
    assert!(!finished);
    let marked: Pod = client.get("default", "p").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    assert!(client
        .delete::<Pod>("default", "p", DeleteOptions::grace(0))
        .await
        .unwrap());
    assert!(client
        .get_opt::<Pod>("default", "p")
        .await
        .unwrap()
        .is_none());
    client
        .create_value(&kinds::PODS, "default", &pod("unbound"), false)
        .await
        .unwrap();
    assert!(client
        .delete::<Pod>("default", "unbound", DeleteOptions::default())
        .await
        .unwrap());
}

#[tokio::test]
async fn orphan_and_foreground_deletes_leave_finalizers_for_the_collector() {
    let (_d, _cp, client) = boot().await;
    client
        .apply_value("default", &replicaset("rs", 1, "i:1"), false)
        .await
        .unwrap();
    let opts = DeleteOptions {
        propagation: corral_api::client::PropagationPolicy::Orphan,
        ..Default::default()
    };
    let (obj, finished) = client
        .delete_value(&kinds::REPLICASETS, "default", "rs", opts)
        .await
        .unwrap();
    assert!(!finished);
    assert_eq!(obj["metadata"]["finalizers"], json!(["orphan"]));
    let mut rs = client
        .get_value(&kinds::REPLICASETS, "default", "rs")
        .await
        .unwrap();
    rs["metadata"]["finalizers"] = json!([]);
    let err = client
        .update_value(&kinds::REPLICASETS, "default", &rs, false)
        .await;
    assert!(err.is_ok(), "{err:?}");
    assert!(client
        .get_value(&kinds::REPLICASETS, "default", "rs")
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn services_get_unique_cluster_ips_and_node_ports() {
    let (_d, _cp, client) = boot().await;
    let svc = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"type": "NodePort", "selector": {"app": "a"}, "ports": [{"port": 80, "targetPort": "http"}]}})
    };
    let a = client
        .apply_value("default", &svc("a"), false)
        .await
        .unwrap()
        .1;
    let b = client
        .apply_value("default", &svc("b"), false)
        .await
        .unwrap()
        .1;
    assert_ne!(a["spec"]["clusterIP"], b["spec"]["clusterIP"]);
    assert_ne!(
        a["spec"]["ports"][0]["nodePort"],
        b["spec"]["ports"][0]["nodePort"]
    );
    assert_eq!(a["spec"]["ports"][0]["targetPort"], "http");
    let (r, again) = client
        .apply_value("default", &svc("a"), false)
        .await
        .unwrap();
    assert_eq!(r, ApplyResult::Unchanged);
    assert_eq!(again["spec"]["clusterIP"], a["spec"]["clusterIP"]);
}

#[tokio::test]
async fn acknowledged_objects_survive_kill_9_of_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_corral-controlplane"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    let client = common::connect_when_serving(port, dir.path()).await;
    for i in 0..50 {
        client
            .apply_value("default", &replicaset(&format!("rs-{i}"), 1, "i:1"), false)
            .await
            .unwrap();
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let mut child = spawn();
    let client = common::connect_when_serving(port, dir.path()).await;
    assert_eq!(count(&client, "replicasets").await, 50);
    let rs: ReplicaSet = client.get("default", "rs-49").await.unwrap();
    assert_eq!(rs.spec.unwrap().replicas, Some(1));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn hostile_selectors_and_bodies_get_bad_request_and_the_server_stays_up() {
    use corral_proto as pb;
    let (_d, _cp, client) = boot().await;
    // A field selector 500,000 levels deep overflowed the server's stack.
    let deep = format!("{}a=b", "a.".repeat(500_000));
    let err = client
        .list_value(&kinds::PODS, "default", &ListParams::fields(deep))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    assert!(err.to_string().contains("longer than 256"), "{err}");
    assert!(
        err.to_string().len() < 500,
        "the error does not echo the input"
    );
    // Bodies that are JSON but not objects panicked a server task.
    for body in [&b"[]"[..], b"1", b"\"x\"", b"null", b"true"] {
        let req = pb::UpdateRequest {
            resource: "configmaps".into(),
            namespace: "default".into(),
            json: body.to_vec(),
            subresource: pb::Subresource::Main as i32,
            dry_run: false,
        };
        let status = client.raw().update(req).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("must be a JSON object"),
            "{:?}",
            status.message()
        );
        let req = pb::CreateRequest {
            resource: "configmaps".into(),
            namespace: "default".into(),
            json: body.to_vec(),
            dry_run: false,
        };
        let status = client.raw().create(req).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    // A body over Kubernetes' 3 MiB limit is refused by the server before it is parsed...
    let big = |n: usize| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "big", "annotations": {"a": "x".repeat(n)}}})
    };
    let req = pb::CreateRequest {
        resource: "configmaps".into(),
        namespace: "default".into(),
        json: serde_json::to_vec(&big(3_500_000)).unwrap(),
        dry_run: false,
    };
    let status = client.raw().create(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("more than the limit of 3145728 bytes"),
        "{status:?}"
    );
    let reason = corral_api::status::ApiStatus::from_details(status.details()).map(|s| s.reason);
    assert_eq!(reason, Some(StatusReason::RequestEntityTooLarge));
    // ... and by the client before it is sent (50 MB was stored once).
    let err = client
        .create_value(&kinds::CONFIGMAPS, "default", &big(50_000_000), false)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("ConfigMap \"big\": the request body is"),
        "{err}"
    );
    // Annotations are at most 256 KiB, as in Kubernetes.
    let err = client
        .create_value(&kinds::CONFIGMAPS, "default", &big(300_000), false)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("metadata.annotations: Too long"),
        "{err}"
    );
    // A body under 3 MiB whose object is over 1.5 MiB stored is refused, naming it.
    let fat = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fat"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1",
            "env": [{"name": "E", "value": "x".repeat(2_000_000)}]}]}});
    let err = client
        .create_value(&kinds::PODS, "default", &fat, false)
        .await
        .unwrap_err();
    assert_eq!(
        err.reason(),
        Some(&StatusReason::RequestEntityTooLarge),
        "{err}"
    );
    assert!(err.to_string().starts_with("Pod \"fat\" is 2000"), "{err}");
    // Volume names become directories on the node: a path is refused at admission.
    for (name, want) in [
        (
            "/etc",
            "spec.volumes[0].name: Invalid value: \"/etc\": a lowercase RFC 1123 label",
        ),
        (
            "../../x",
            "spec.volumes[0].name: Invalid value: \"../../x\"",
        ),
    ] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evil"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1",
                "volumeMounts": [{"name": name, "mountPath": "/x"}]}],
                "volumes": [{"name": name, "configMap": {"name": "cm"}}]}});
        let err = client
            .create_value(&kinds::PODS, "default", &pod, true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(want), "want {want:?} in {err}");
    }
    // Still serving.
    let (items, _) = client
        .list_value(&kinds::CONFIGMAPS, "default", &ListParams::default())
        .await
        .unwrap();
    assert!(items.is_empty());
}
