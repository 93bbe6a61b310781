//! `fieldValidation` on the REST API, in-process: Strict refuses unknown and duplicate fields
//! in kube-apiserver's words, Warn (the default) writes without them and says so in `Warning`
//! headers, Ignore drops them silently; the gRPC API still refuses them. Also the OpenAPI v3
//! documents kubectl reads (hashed URLs, Cache-Control).

mod common;

use corral_api::kinds;
use serde_json::Value;

/// One HTTP/1.1 request (`Connection: close`): status code, header block and body.
async fn http1(
    addr: std::net::SocketAddr,
    creds: &corral_api::Credentials,
    request: &str,
) -> (u16, String, String) {
    let a = common::http1::send(addr, creds, request).await;
    (a.code, a.head, a.body)
}

fn send(method: &str, path: &str, content_type: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A ConfigMap named `name` with an unknown top-level field and one in its metadata.
fn config_map(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","bogusMeta":1}},"data":{{"k":"v"}},"bogus":true}}"#
    )
}

fn warnings(head: &str) -> Vec<&str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("warning"))
        .map(|(_, v)| v.trim())
        .collect()
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn rest_writes_apply_field_validation_strict_warn_and_ignore() {
    let (_dir, running, client) = common::boot().await;
    let admin = running.admin_credentials();
    let post = |query: &str, name: &str| {
        send(
            "POST",
            &format!("{CMS}{query}"),
            "application/json",
            &config_map(name),
        )
    };

    // Strict: refused, every unknown field named, in kube-apiserver's words.
    let (code, _, body) = http1(running.addr, &admin, &post("?fieldValidation=Strict", "s")).await;
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (code, &status["reason"]),
        (400, &"BadRequest".into()),
        "{body}"
    );
    assert_eq!(
        status["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"bogus\", unknown field \"metadata.bogusMeta\""
    );

    // Strict: a duplicate field is refused too.
    let dup = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d"},"data":{"k":"v","k":"w"}}"#;
    let (code, _, body) = http1(
        running.addr,
        &admin,
        &send(
            "POST",
            &format!("{CMS}?fieldValidation=Strict"),
            "application/json",
            dup,
        ),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("duplicate field \\\"data.k\\\""), "{body}");

    // Warn is the default: written without the unknown fields, one Warning header each.
    for (query, name) in [("", "w1"), ("?fieldValidation=Warn", "w2")] {
        let (code, head, body) = http1(running.addr, &admin, &post(query, name)).await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(
            warnings(&head),
            [
                r#"299 - "unknown field \"bogus\"""#,
                r#"299 - "unknown field \"metadata.bogusMeta\"""#
            ],
            "{head}"
        );
        let stored = client
            .get_value(&kinds::CONFIGMAPS, "default", name)
            .await
            .unwrap();
        assert!(stored.get("bogus").is_none());
        assert_eq!(stored["data"]["k"], "v");
    }

    // Ignore: written without them, silently.
    let (code, head, body) =
        http1(running.addr, &admin, &post("?fieldValidation=Ignore", "i")).await;
    assert_eq!(code, 201, "{body}");
    assert!(warnings(&head).is_empty(), "{head}");

    // A patch adding an unknown field: Strict refuses it, Warn drops it with a warning.
    let patch = r#"{"spec":{"bogus":1},"data":{"k":"patched"}}"#;
    let path = format!("{CMS}/i");
    let (code, _, body) = http1(
        running.addr,
        &admin,
        &send(
            "PATCH",
            &format!("{path}?fieldValidation=Strict"),
            "application/merge-patch+json",
            patch,
        ),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unknown field \\\"spec\\\""), "{body}");
    let (code, head, body) = http1(
        running.addr,
        &admin,
        &send("PATCH", &path, "application/merge-patch+json", patch),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(warnings(&head), [r#"299 - "unknown field \"spec\"""#]);
    let stored = client
        .get_value(&kinds::CONFIGMAPS, "default", "i")
        .await
        .unwrap();
    assert_eq!(stored["data"]["k"], "patched");

    // An unsupported mode is a BadRequest.
    let (code, _, _) = http1(running.addr, &admin, &post("?fieldValidation=Loose", "l")).await;
    assert_eq!(code, 400);

    // The gRPC API still refuses unknown fields, whatever REST does.
    let obj: Value = serde_json::from_str(&config_map("g")).unwrap();
    let err = client
        .create_value(&kinds::CONFIGMAPS, "default", &obj, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[tokio::test]
async fn openapi_v3_documents_are_served_under_hashed_urls_with_kubernetes_schemas() {
    let (_dir, running, _client) = common::boot().await;
    let admin = running.admin_credentials();
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
    };
    let (code, _, body) = http1(running.addr, &admin, &get("/openapi/v3")).await;
    assert_eq!(code, 200);
    let index: Value = serde_json::from_str(&body).unwrap();
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, head, body) = http1(running.addr, &admin, &get(&url)).await;
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("cache-control: public, immutable"),
        "{head}"
    );
    let doc: Value = serde_json::from_str(&body).unwrap();
    let deploy = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deploy["description"],
        "Deployment enables declarative updates for Pods and ReplicaSets."
    );
}
