use super::*;
use crate::model::testutil::*;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IngressRule, IngressServiceBackend, IngressSpec,
    ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// `(host, [(path, pathType, service)])`.
type Rules<'a> = &'a [(&'a str, &'a [(&'a str, &'a str, &'a str)])];
type Maps = (
    BTreeMap<(String, String), Arc<Service>>,
    BTreeMap<(String, String), Arc<Endpoints>>,
);

fn backend(svc: &str, port: ServiceBackendPort) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: svc.into(),
            port: Some(port),
        }),
        ..Default::default()
    }
}

fn num(n: i32) -> ServiceBackendPort {
    ServiceBackendPort {
        number: Some(n),
        ..Default::default()
    }
}

/// An Ingress created at `age` seconds with rules `(host, [(path, type, service)])`.
fn ingress(name: &str, age: i64, default: Option<&str>, rules: Rules) -> Arc<Ingress> {
    let mut m = meta("default", name);
    m.creation_timestamp = Some(Time(
        jiff::Timestamp::from_second(1_700_000_000 + age).unwrap(),
    ));
    Arc::new(Ingress {
        metadata: m,
        spec: Some(IngressSpec {
            default_backend: default.map(|s| backend(s, num(80))),
            rules: Some(
                rules
                    .iter()
                    .map(|(host, paths)| IngressRule {
                        host: Some(host.to_string()).filter(|h| !h.is_empty()),
                        http: Some(HTTPIngressRuleValue {
                            paths: paths
                                .iter()
                                .map(|(path, ty, svc)| HTTPIngressPath {
                                    path: Some(path.to_string()),
                                    path_type: ty.to_string(),
                                    backend: backend(svc, num(80)),
                                })
                                .collect(),
                        }),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn cluster(names: &[&str]) -> Maps {
    let svcs = names
        .iter()
        .map(|n| {
            (
                ("default".to_string(), n.to_string()),
                service(n, "ClusterIP", "10.43.0.10", &[("http", 80, 0)]),
            )
        })
        .collect();
    let eps: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ip = format!("10.42.0.{}", i + 2);
            let ip: &str = Box::leak(ip.into_boxed_str());
            endpoints(n, &[ip], &[], &[("http", 8080)])
        })
        .collect();
    (svcs, by_key(&eps))
}

#[test]
fn routes_follow_the_ingress_spec_matching_rules() {
    let (svcs, eps) = cluster(&["app", "api", "exact", "wild", "any", "def", "old"]);
    let ings = vec![
        ingress(
            "new",
            10,
            None,
            &[("mi-app.com", &[("/api", "Prefix", "app")])],
        ),
        ingress(
            "main",
            0,
            Some("def"),
            &[
                (
                    "mi-app.com",
                    &[
                        ("/", "Prefix", "app"),
                        ("/api/", "Prefix", "api"),
                        ("/api", "Exact", "exact"),
                        ("/api", "Prefix", "old"),
                    ],
                ),
                ("*.wild.com", &[("/", "Prefix", "wild")]),
                ("", &[("/any", "Prefix", "any")]),
            ],
        ),
    ];
    let t = RouteTable::build(&ings, &svcs, &eps);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    let cases = [
        ("mi-app.com", "/", Some("app")),
        ("MI-APP.com:80", "/index.html", Some("app")),
        ("mi-app.com", "/api", Some("exact")),
        ("mi-app.com", "/api/", Some("api")),
        ("mi-app.com", "/api/v1/users", Some("api")),
        // Whole elements only: /apix is not under /api.
        ("mi-app.com", "/apix", Some("app")),
        ("a.wild.com", "/x", Some("wild")),
        // A wildcard covers exactly one label.
        ("a.b.wild.com", "/any/1", Some("any")),
        ("wild.com", "/any", Some("any")),
        ("other.com", "/any", Some("any")),
        ("other.com", "/anything", Some("def")),
        ("other.com", "/", Some("def")),
    ];
    for (host, path, want) in cases {
        let got = t.route(host, path).map(|b| b.name.clone());
        let want = want.map(|s| format!("default/{s}:80"));
        assert_eq!(got, want, "{host}{path}");
    }
    // Metrics are labelled by the rule's host, never by what a client sent.
    let rule_hosts = [
        ("MI-APP.com:80", "mi-app.com"),
        ("a.wild.com", "*.wild.com"),
        ("a.b.wild.com", ""),
        ("random-1234.attacker.example", ""),
    ];
    for (host, want) in rule_hosts {
        assert_eq!(t.rule_host(host), want, "{host}");
    }
}

#[test]
fn without_default_backend_unmatched_requests_get_nothing() {
    let (svcs, eps) = cluster(&["app"]);
    let t = RouteTable::build(
        &[ingress(
            "i",
            0,
            None,
            &[("mi-app.com", &[("/", "Prefix", "app")])],
        )],
        &svcs,
        &eps,
    );
    assert!(t.route("mi-app.com", "/x").is_some());
    assert!(t.route("otro.com", "/x").is_none());
    assert!(t.route("", "/").is_none());
}

#[test]
fn backends_resolve_ready_endpoints_and_round_robin() {
    let svcs: BTreeMap<_, _> = [
        (
            ("default".to_string(), "app".to_string()),
            service("app", "ClusterIP", "10.43.0.10", &[("http", 80, 0)]),
        ),
        (
            ("default".to_string(), "down".to_string()),
            service("down", "ClusterIP", "10.43.0.11", &[("http", 80, 0)]),
        ),
    ]
    .into_iter()
    .collect();
    let eps = by_key(&[
        endpoints(
            "app",
            &["10.42.0.2", "10.42.0.3"],
            &["10.42.0.4"],
            &[("http", 8080)],
        ),
        endpoints("down", &[], &["10.42.0.5"], &[("http", 8080)]),
    ]);
    let mut by_name = ingress(
        "i",
        0,
        None,
        &[(
            "",
            &[("/down", "Prefix", "down"), ("/missing", "Prefix", "nope")],
        )],
    );
    // A backend port given by name resolves the same way.
    Arc::get_mut(&mut by_name)
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .default_backend = Some(backend(
        "app",
        ServiceBackendPort {
            name: Some("http".into()),
            ..Default::default()
        },
    ));
    let t = RouteTable::build(std::slice::from_ref(&by_name), &svcs, &eps);
    let app = t.route("x", "/").unwrap();
    let picks: Vec<String> = (0..4).map(|_| app.pick().unwrap().to_string()).collect();
    let mut both = picks[..2].to_vec();
    both.sort();
    assert_eq!(both, ["10.42.0.2:8080", "10.42.0.3:8080"], "{picks:?}");
    assert_eq!(picks[2..], picks[..2], "round robin");
    // Each table starts its rotation at a random endpoint (so do several nodes' proxies):
    // over 64 tables both endpoints come first (fails with probability 2^-63).
    let firsts: std::collections::BTreeSet<String> = (0..64)
        .map(|_| {
            let t = RouteTable::build(std::slice::from_ref(&by_name), &svcs, &eps);
            t.route("x", "/").unwrap().pick().unwrap().to_string()
        })
        .collect();
    assert_eq!(firsts.len(), 2, "{firsts:?}");
    // Not-ready endpoints and unknown services leave the backend empty: a 503, not a 404.
    assert_eq!(t.route("x", "/down").unwrap().pick(), None);
    assert_eq!(t.route("x", "/missing/a").unwrap().pick(), None);
}

#[test]
fn invalid_paths_are_skipped_with_a_warning_naming_the_field() {
    let (svcs, eps) = cluster(&["app"]);
    let t = RouteTable::build(
        &[ingress(
            "bad",
            0,
            None,
            &[("h", &[("api", "Prefix", "app"), ("/x", "Regex", "app")])],
        )],
        &svcs,
        &eps,
    );
    assert_eq!(
        t.warnings,
        vec![
            "ingress \"default/bad\": spec.rules[0].http.paths[0].path: must be an absolute path",
            "ingress \"default/bad\": spec.rules[0].http.paths[1].pathType: unsupported value \"Regex\"",
        ]
    );
    assert!(t.route("h", "/x").is_none());
}

#[test]
fn host_header_ports_and_brackets_are_stripped() {
    for (header, want) in [
        ("mi-app.com", "mi-app.com"),
        ("Mi-App.com:8080", "mi-app.com"),
        ("mi-app.com:80", "mi-app.com"),
        ("[::1]:80", "::1"),
        ("10.0.0.1", "10.0.0.1"),
    ] {
        assert_eq!(host_of(header), want);
    }
}
