//! Server-side apply over the REST API, in-process: two appliers conflicting (409 with the
//! API server's message and causes), force, shared ownership, removal of a dropped field,
//! updaters recorded by their `fieldManager`, and the PatchOptions the API server refuses.

mod common;

use serde_json::{json, Value};

const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments/web";

/// One HTTP/1.1 request (`Connection: close`): its status code and JSON body.
async fn request(
    running: &corral_controlplane::Running,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: rest-test/1.0\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let a = common::http1::send(running.addr, &running.admin_credentials(), &req).await;
    let json =
        serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}\n\n{}", a.head, a.body));
    (a.code, json)
}

async fn apply(
    running: &corral_controlplane::Running,
    manager: &str,
    force: bool,
    manifest: &Value,
) -> (u16, Value) {
    let path = format!("{DEPLOY}?fieldManager={manager}&force={force}");
    request(
        running,
        "PATCH",
        &path,
        "application/apply-patch+yaml",
        manifest,
    )
    .await
}

fn deploy(replicas: i64, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}
            }
        }
    })
}

/// The managers of an object, as (manager, operation).
fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or("").to_string(),
                e["operation"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn owns_replicas(obj: &Value, manager: &str) -> bool {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["manager"] == manager && e["fieldsV1"]["f:spec"].get("f:replicas").is_some())
}

#[tokio::test]
async fn a_second_applier_conflicts_until_it_forces_and_then_owns_the_field() {
    let (_dir, running, _client) = common::boot().await;
    let (code, created) = apply(&running, "a", false, &deploy(2, json!({"app": "web"}))).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(managers(&created), [("a".into(), "Apply".into())]);
    assert!(owns_replicas(&created, "a"), "{created}");

    let (code, status) = apply(&running, "b", false, &deploy(3, json!({"app": "web"}))).await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(
        status["message"],
        "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"
    );
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"a\"",
                "field": ".spec.replicas"}])
    );

    let (code, forced) = apply(&running, "b", true, &deploy(3, json!({"app": "web"}))).await;
    assert_eq!(code, 200, "{forced}");
    assert_eq!(forced["spec"]["replicas"], 3);
    assert!(owns_replicas(&forced, "b") && !owns_replicas(&forced, "a"));
    assert_eq!(
        managers(&forced),
        [("a".into(), "Apply".into()), ("b".into(), "Apply".into())]
    );
}

#[tokio::test]
async fn equal_values_are_shared_and_a_dropped_field_goes_once_nobody_applies_it() {
    let (_dir, running, _client) = common::boot().await;
    let both = json!({"app": "web", "tier": "front"});
    assert_eq!(
        apply(&running, "a", false, &deploy(2, both.clone()))
            .await
            .0,
        201
    );
    let (code, shared) = apply(&running, "b", false, &deploy(2, both)).await;
    assert_eq!(code, 200, "{shared}");
    assert!(owns_replicas(&shared, "a") && owns_replicas(&shared, "b"));

    let (_, kept) = apply(&running, "a", false, &deploy(2, json!({"app": "web"}))).await;
    assert_eq!(
        kept["metadata"]["labels"]["tier"], "front",
        "b still applies it"
    );
    let (code, dropped) = apply(&running, "b", false, &deploy(2, json!({"app": "web"}))).await;
    assert_eq!(code, 200, "{dropped}");
    assert_eq!(dropped["metadata"]["labels"], json!({"app": "web"}));
}

#[tokio::test]
async fn an_update_with_a_field_manager_takes_the_field_and_the_applier_then_conflicts() {
    let (_dir, running, _client) = common::boot().await;
    assert_eq!(
        apply(&running, "kubectl", false, &deploy(2, json!({})))
            .await
            .0,
        201
    );
    let (code, edited) = request(
        &running,
        "PATCH",
        &format!("{DEPLOY}?fieldManager=kubectl-edit"),
        "application/merge-patch+json",
        &json!({"spec": {"replicas": 5}}),
    )
    .await;
    assert_eq!(code, 200, "{edited}");
    assert_eq!(
        managers(&edited),
        [
            ("kubectl".into(), "Apply".into()),
            ("kubectl-edit".into(), "Update".into())
        ]
    );
    assert!(owns_replicas(&edited, "kubectl-edit") && !owns_replicas(&edited, "kubectl"));

    let (code, status) = apply(&running, "kubectl", false, &deploy(2, json!({}))).await;
    assert_eq!(code, 409, "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1 at "
        ) && message.ends_with(": .spec.replicas"),
        "{message}"
    );

    // Without fieldManager the User-Agent's product names the writer; a PUT of what was read
    // keeps the managers.
    let (_, live) = request(&running, "GET", DEPLOY, "application/json", &Value::Null).await;
    let mut put = live.clone();
    put["metadata"]["labels"] = json!({"by": "put"});
    let (code, updated) = request(&running, "PUT", DEPLOY, "application/json", &put).await;
    assert_eq!(code, 200, "{updated}");
    assert!(
        managers(&updated).contains(&("rest-test".into(), "Update".into())),
        "{updated}"
    );
    assert!(managers(&updated).contains(&("kubectl".into(), "Apply".into())));
}

#[tokio::test]
async fn patch_options_the_api_server_refuses_are_refused_in_its_words() {
    let (_dir, running, _client) = common::boot().await;
    let (code, status) = request(
        &running,
        "PATCH",
        DEPLOY,
        "application/apply-patch+yaml",
        &deploy(1, json!({})),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    assert_eq!(
        status["details"]["causes"][0],
        json!({"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"})
    );
    let (code, status) = request(
        &running,
        "PATCH",
        &format!("{DEPLOY}?force=true"),
        "application/merge-patch+json",
        &json!({}),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );
    let mut with_managed = deploy(1, json!({}));
    with_managed["metadata"]["managedFields"] = json!([]);
    let (code, status) = apply(&running, "a", false, &with_managed).await;
    assert_eq!(
        (code, &status["message"]),
        (400, &json!("metadata.managedFields must be nil"))
    );
}

#[tokio::test]
async fn a_scale_takes_the_replicas_and_a_dry_run_apply_writes_nothing() {
    let (_dir, running, _client) = common::boot().await;
    assert_eq!(
        apply(&running, "kubectl", false, &deploy(2, json!({})))
            .await
            .0,
        201
    );
    let (code, scaled) = request(
        &running,
        "PATCH",
        &format!("{DEPLOY}/scale?fieldManager=kubectl-scale"),
        "application/merge-patch+json",
        &json!({"spec": {"replicas": 4}}),
    )
    .await;
    assert_eq!(code, 200, "{scaled}");
    let (_, live) = request(&running, "GET", DEPLOY, "application/json", &Value::Null).await;
    assert!(owns_replicas(&live, "kubectl-scale") && !owns_replicas(&live, "kubectl"));
    let (code, status) = apply(&running, "kubectl", false, &deploy(2, json!({}))).await;
    assert_eq!(code, 409, "{status}");

    let path = format!("{DEPLOY}?fieldManager=kubectl&force=true&dryRun=All");
    let (code, dry) = request(
        &running,
        "PATCH",
        &path,
        "application/apply-patch+yaml",
        &deploy(2, json!({})),
    )
    .await;
    assert_eq!((code, &dry["spec"]["replicas"]), (200, &json!(2)), "{dry}");
    let (_, after) = request(&running, "GET", DEPLOY, "application/json", &Value::Null).await;
    assert_eq!(after["spec"]["replicas"], 4);
    assert_eq!(
        after["metadata"]["managedFields"],
        live["metadata"]["managedFields"]
    );
}
