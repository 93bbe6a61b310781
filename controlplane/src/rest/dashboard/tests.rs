//! The dashboard's routes, its security headers, and a page with no inline script.

use super::*;

#[test]
fn dashboard_paths_route_to_their_files_and_nothing_else() {
    let get = Method::GET;
    let cases: &[(&Method, &str, Option<&str>)] = &[
        (&get, "/dashboard", Some("redirect")),
        (&get, "/dashboard/", Some("text/html; charset=utf-8")),
        (
            &get,
            "/dashboard/index.html",
            Some("text/html; charset=utf-8"),
        ),
        (
            &get,
            "/dashboard/app.js",
            Some("text/javascript; charset=utf-8"),
        ),
        (
            &Method::HEAD,
            "/dashboard/style.css",
            Some("text/css; charset=utf-8"),
        ),
        (&get, "/dashboard/../api/v1/pods", Some("not found")),
        (&get, "/dashboard/secrets.json", Some("not found")),
        (&Method::POST, "/dashboard/", Some("method")),
        (&get, "/dashboardx", None),
        (&get, "/api/v1/pods", None),
        (&get, "/", None),
    ];
    for (method, path, want) in cases {
        let got = route(method, path).map(|r| match r {
            Route::Asset(ct, _) => ct,
            Route::Redirect => "redirect",
            Route::NotFound => "not found",
            Route::MethodNotAllowed => "method",
        });
        assert_eq!(got, *want, "{method} {path}");
    }
}

#[test]
fn every_dashboard_answer_carries_a_policy_that_forbids_inline_script() {
    for r in [
        route(&Method::GET, "/dashboard/").unwrap(),
        route(&Method::GET, "/dashboard/nope").unwrap(),
        Route::Redirect,
    ] {
        let resp = respond(r);
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(resp.headers()[header::REFERRER_POLICY], "no-referrer");
    }
}

#[test]
fn the_page_has_no_inline_script_or_style_and_loads_only_its_own_files() {
    let html = INDEX.to_ascii_lowercase();
    // The only <script> is the external app.js; no handler attributes, no style blocks.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script src="app.js""#));
    assert!(!html.contains("<style") && !html.contains(" style="));
    for handler in [" onclick=", " onload=", " onerror=", "javascript:"] {
        assert!(!html.contains(handler), "{handler}");
    }
    // Names reach the DOM as text only.
    assert!(!APP.contains("innerHTML") && !APP.contains("outerHTML"));
    assert!(!APP.contains("insertAdjacentHTML") && !APP.contains("document.write"));
    // The token never goes into a URL the page requests.
    assert!(!APP.contains("?token") && !APP.contains("&token"));
}
