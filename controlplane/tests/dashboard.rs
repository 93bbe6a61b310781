//! Who may read what through `/dashboard/`: the page's static files are public (over TLS),
//! every data request is authenticated and authorized as any REST call, and the token
//! `corral dashboard` mints reads nodes, pods and ReplicaSets and nothing else.

mod common;

use corral_api::token::{self, Token, TokenKind, TokenRecord};

/// One HTTP/1.1 request over TLS without a client certificate, with an optional bearer
/// token; the status code, the head and the body.
async fn request(
    addr: std::net::SocketAddr,
    ca: &corral_api::Credentials,
    method: &str,
    path: &str,
    bearer: Option<&str>,
) -> (u16, String, String) {
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = if method == "POST" {
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#
    } else {
        ""
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let a = common::http1::send(addr, ca, &req).await;
    (a.code, a.head.to_ascii_lowercase(), a.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_page_is_public_and_its_data_needs_a_token_that_reads_only_what_it_shows() {
    let (_dir, running, client) = common::boot().await;
    let admin = running.admin_credentials();
    // Trust the server, present no certificate.
    let anonymous = corral_api::Credentials {
        ca_pem: admin.ca_pem.clone(),
        identity: None,
        token: None,
    };
    let t = Token::generate(None);
    let mut record = TokenRecord::new(&t, TokenKind::User, "dashboard test");
    record.user = Some("corral:dashboard:test".into());
    record.groups = vec![token::DASHBOARD_GROUP.into()];
    client
        .create_value(
            &corral_api::kinds::SECRETS,
            token::NAMESPACE,
            &record.to_secret(),
            false,
        )
        .await
        .unwrap();
    let bearer = format!("{}.{}", t.id, t.secret);
    let addr = running.addr;
    let call = |method: &'static str, path: &'static str, bearer: Option<String>| {
        let anonymous = anonymous.clone();
        async move { request(addr, &anonymous, method, path, bearer.as_deref()).await }
    };

    // The static files: no credentials needed, a CSP on each.
    let (code, head, body) = call("GET", "/dashboard/", None).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(body.contains(r#"<script src="app.js""#), "{body}");
    let (code, head, _) = call("GET", "/dashboard/app.js", None).await;
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    let (code, head, _) = call("GET", "/dashboard", None).await;
    assert_eq!(code, 301);
    assert!(head.contains("location: /dashboard/"), "{head}");

    // Data: as every REST call.
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        ("GET", "/api/v1/pods", None, 401),
        ("GET", "/api/v1/pods", Some("abcdef.0123456789abcdef"), 401),
        ("GET", "/healthz", None, 401),
        ("GET", "/api/v1/pods", Some(&bearer), 200),
        ("GET", "/api/v1/nodes", Some(&bearer), 200),
        ("GET", "/apis/apps/v1/replicasets", Some(&bearer), 200),
        ("GET", "/apis/apps/v1/deployments", Some(&bearer), 403),
        (
            "GET",
            "/api/v1/namespaces/kube-system/secrets",
            Some(&bearer),
            403,
        ),
        ("GET", "/api/v1/configmaps", Some(&bearer), 403),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(&bearer),
            403,
        ),
    ];
    for (method, path, token, want) in cases {
        let (code, _, body) = request(addr, &anonymous, method, path, *token).await;
        let who = if token.is_some() {
            "with a token"
        } else {
            "anonymous"
        };
        assert_eq!(code, *want, "{method} {path} {who}: {body}");
    }
}
