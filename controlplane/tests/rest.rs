//! The Kubernetes REST API on the gRPC port, in-process and without root: HTTP/1.1 over TLS
//! (ALPN http/1.1), the admin's client certificate, Status errors, Tables, and gRPC still
//! answered on the same listener.

mod common;

use serde_json::{json, Value};

/// One HTTP/1.1 request (`Connection: close`) and its status code and body.
async fn http1(
    addr: std::net::SocketAddr,
    creds: &corral_api::Credentials,
    request: &str,
) -> (u16, String) {
    let a = common::http1::send(addr, creds, request).await;
    (a.code, a.body)
}

fn get(path: &str, accept: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
}

/// The names and `data.v` of a ConfigMap list page, and its continue token.
fn names_and_token(body: &str) -> (Vec<String>, Option<String>) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let names = v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|i| {
            format!(
                "{}={}",
                i["metadata"]["name"].as_str().unwrap(),
                i["data"]["v"].as_str().unwrap()
            )
        })
        .collect();
    let token = v["metadata"]["continue"].as_str().map(str::to_string);
    (names, token)
}

#[tokio::test]
async fn list_pages_are_one_consistent_snapshot_until_its_history_is_compacted() {
    let (_dir, running, client) = common::boot().await;
    let admin = running.admin_credentials();
    let cm = |name: &str, v: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": "default"}, "data": {"v": v}})
    };
    for i in 0..5 {
        client
            .create_value(
                &corral_api::kinds::CONFIGMAPS,
                "default",
                &cm(&format!("cm-{i}"), "old"),
                false,
            )
            .await
            .unwrap();
    }
    let base = "/api/v1/namespaces/default/configmaps";
    let (code, body) = http1(
        running.addr,
        &admin,
        &get(&format!("{base}?limit=2"), "application/json"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (first, token) = names_and_token(&body);
    assert_eq!(first, ["cm-0=old", "cm-1=old"]);
    let snapshot_rv: Value = serde_json::from_str(&body).unwrap();
    let snapshot_rv = snapshot_rv["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // Changes between pages do not show in the rest of the list.
    client
        .delete_value(
            &corral_api::kinds::CONFIGMAPS,
            "default",
            "cm-2",
            Default::default(),
        )
        .await
        .unwrap();
    let mut changed = client
        .get_value(&corral_api::kinds::CONFIGMAPS, "default", "cm-3")
        .await
        .unwrap();
    changed["data"]["v"] = json!("new");
    client
        .update_value(&corral_api::kinds::CONFIGMAPS, "default", &changed, false)
        .await
        .unwrap();
    client
        .create_value(
            &corral_api::kinds::CONFIGMAPS,
            "default",
            &cm("cm-9", "new"),
            false,
        )
        .await
        .unwrap();
    let token = token.expect("a continue token after a full page");
    let (code, body) = http1(
        running.addr,
        &admin,
        &get(
            &format!("{base}?limit=2&continue={token}"),
            "application/json",
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (second, token2) = names_and_token(&body);
    assert_eq!(second, ["cm-2=old", "cm-3=old"]);
    let (code, body) = http1(
        running.addr,
        &admin,
        &get(
            &format!("{base}?limit=2&continue={}", token2.unwrap()),
            "application/json",
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(names_and_token(&body), (vec!["cm-4=old".to_string()], None));

    // The same snapshot by resourceVersionMatch=Exact; a revision not reached yet is 504.
    let (code, body) = http1(
        running.addr,
        &admin,
        &get(
            &format!("{base}?resourceVersion={snapshot_rv}&resourceVersionMatch=Exact"),
            "application/json",
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(names_and_token(&body).0.len(), 5);
    let (code, body) = http1(
        running.addr,
        &admin,
        &get(
            &format!("{base}?resourceVersion=99999999"),
            "application/json",
        ),
    )
    .await;
    assert_eq!(code, 504, "{body}");
    assert!(
        body.contains("Too large resource version: 99999999"),
        "{body}"
    );

    // Once that history is compacted the token has expired: 410, in Kubernetes' words.
    let now = running.registry.store().current_revision().await.unwrap();
    running.registry.store().compact(now).await.unwrap();
    let (code, body) = http1(
        running.addr,
        &admin,
        &get(
            &format!("{base}?limit=2&continue={token}"),
            "application/json",
        ),
    )
    .await;
    assert_eq!(code, 410, "{body}");
    assert!(
        body.contains("The provided continue parameter is too old"),
        "{body}"
    );
    let (code, body) = http1(
        running.addr,
        &admin,
        &get(
            &format!("{base}?limit=2&continue=garbage"),
            "application/json",
        ),
    )
    .await;
    assert_eq!(code, 400, "{body}");
}

#[tokio::test]
async fn kubernetes_rest_requests_share_the_grpc_port_with_status_errors_and_tables() {
    let (_dir, running, client) = common::boot().await;
    let admin = running.admin_credentials();

    let (code, body) = http1(
        running.addr,
        &admin,
        &get("/api/v1/namespaces/default/pods/nope", "application/json"),
    )
    .await;
    let status: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(code, 404);
    assert_eq!(
        (&status["kind"], &status["reason"], &status["message"]),
        (
            &json!("Status"),
            &json!("NotFound"),
            &json!("pods \"nope\" not found")
        )
    );

    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c1","labels":{"a":"b"}},"data":{"k":"v"}}"#;
    let post = format!(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{cm}",
        cm.len()
    );
    let (code, body) = http1(running.addr, &admin, &post).await;
    assert_eq!(code, 201, "{body}");

    let table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let (code, body) = http1(
        running.addr,
        &admin,
        &get(
            "/api/v1/namespaces/default/configmaps?labelSelector=a%3Db",
            table_accept,
        ),
    )
    .await;
    let table: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!((code, table["kind"].as_str()), (200, Some("Table")));
    assert_eq!(table["rows"][0]["cells"][0], "c1");
    assert_eq!(table["rows"][0]["object"]["metadata"]["labels"]["a"], "b");

    let (code, body) = http1(
        running.addr,
        &admin,
        &get("/apis/apps/v1", "application/json"),
    )
    .await;
    let resources: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((code, &resources["kind"]), (200, &json!("APIResourceList")));

    // No credentials: 401 as a Status.
    let anonymous = corral_api::Credentials {
        identity: None,
        ..admin.clone()
    };
    let (code, body) = http1(running.addr, &anonymous, &get("/api", "application/json")).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");

    // gRPC on the same port sees what REST wrote.
    let got = client
        .get_value(&corral_api::kinds::CONFIGMAPS, "default", "c1")
        .await
        .unwrap();
    assert_eq!(got["data"]["k"], "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_verb_resource_and_code_for_admins_and_monitoring_only() {
    use corral_api::runtime::metrics::samples;
    let (_dir, running, client) = common::boot().await;
    for name in ["m1", "m2"] {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        client
            .create_value(&corral_api::kinds::CONFIGMAPS, "default", &cm, false)
            .await
            .unwrap();
    }
    let missing = client
        .get_value(&corral_api::kinds::CONFIGMAPS, "default", "nope")
        .await;
    assert!(missing.is_err());
    // A REST read on an HTTP/1.1 connection (hyper's, not tonic's) is counted too.
    let (code, body) = http1(
        running.addr,
        &running.admin_credentials(),
        &get(
            "/api/v1/namespaces/default/configmaps/m1",
            "application/json",
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");

    let (code, body) = http1(
        running.addr,
        &running.admin_credentials(),
        &get("/metrics", "*/*"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let s = samples(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    // Creates are 201 as kube-apiserver answers them, gRPC ones included.
    let created = r#"apiserver_request_total{verb="create",resource="configmaps",code="201"}"#;
    assert!(s[created] >= 2.0, "{body}");
    let read = r#"apiserver_request_total{verb="get",resource="configmaps",code="200"}"#;
    assert!(s.get(read).copied().unwrap_or(0.0) >= 1.0, "{body}");
    let not_found = r#"apiserver_request_total{verb="get",resource="configmaps",code="404"}"#;
    assert!(s[not_found] >= 1.0, "{body}");
    assert!(s["apiserver_storage_commit_duration_seconds_count"] >= 2.0);

    // The group kube-apiserver lets scrape it, through RBAC's nonResourceURLs.
    let scraper = running
        .credentials_for("prometheus", &["system:monitoring"])
        .unwrap();
    let (code, body) = http1(running.addr, &scraper, &get("/metrics", "*/*")).await;
    assert_eq!(code, 200, "{body}");
    let viewer = running.credentials_for("viewer", &[]).unwrap();
    let (code, body) = http1(running.addr, &viewer, &get("/metrics", "*/*")).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(r#"User \"viewer\" cannot get path \"/metrics\""#),
        "{body}"
    );
}
