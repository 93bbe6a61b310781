use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

use super::*;

fn svc(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32, Option<&str>)]) -> Service {
    let mut s = Service::default();
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some(ns.into());
    s.spec = Some(ServiceSpec {
        cluster_ip: Some(ip.into()).filter(|i: &String| !i.is_empty()),
        ports: Some(
            ports
                .iter()
                .map(|(n, port, proto)| ServicePort {
                    name: n.map(String::from),
                    port: *port,
                    protocol: proto.map(String::from),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    });
    s
}

fn env(services: &[Service], ns: &str, links: bool) -> Vec<String> {
    from_services(&visible(services, ns, links))
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

#[test]
fn single_port_service_gets_kubelet_variables() {
    let s = [svc(
        "default",
        "mi-app-svc",
        "10.96.0.10",
        &[(None, 80, None)],
    )];
    assert_eq!(
        env(&s, "default", true),
        vec![
            "MI_APP_SVC_SERVICE_HOST=10.96.0.10",
            "MI_APP_SVC_SERVICE_PORT=80",
            "MI_APP_SVC_PORT=tcp://10.96.0.10:80",
            "MI_APP_SVC_PORT_80_TCP=tcp://10.96.0.10:80",
            "MI_APP_SVC_PORT_80_TCP_PROTO=tcp",
            "MI_APP_SVC_PORT_80_TCP_PORT=80",
            "MI_APP_SVC_PORT_80_TCP_ADDR=10.96.0.10",
        ]
    );
}

#[test]
fn named_ports_get_their_own_service_port_variables() {
    let s = [svc(
        "default",
        "web",
        "10.96.0.11",
        &[(Some("http"), 80, None), (Some("dns-udp"), 53, Some("UDP"))],
    )];
    let got = env(&s, "default", true);
    for want in [
        "WEB_SERVICE_PORT=80",
        "WEB_SERVICE_PORT_HTTP=80",
        "WEB_SERVICE_PORT_DNS_UDP=53",
        "WEB_PORT=tcp://10.96.0.11:80",
        "WEB_PORT_53_UDP=udp://10.96.0.11:53",
        "WEB_PORT_53_UDP_PROTO=udp",
    ] {
        assert!(got.iter().any(|g| g == want), "{want} missing from {got:?}");
    }
    assert_eq!(got.iter().filter(|g| g.starts_with("WEB_PORT=")).count(), 1);
}

#[test]
fn visibility_follows_namespace_links_and_cluster_ip() {
    let services = [
        svc(
            "default",
            "kubernetes",
            "10.96.0.1",
            &[(Some("https"), 443, None)],
        ),
        svc("default", "b-svc", "10.96.0.3", &[(None, 80, None)]),
        svc("shop", "a-svc", "10.96.0.2", &[(None, 80, None)]),
        svc("shop", "headless", "None", &[(None, 80, None)]),
        svc("shop", "pending", "", &[(None, 80, None)]),
        svc("shop", "noports", "10.96.0.4", &[]),
    ];
    let hosts = |ns: &str, links: bool| -> Vec<String> {
        env(&services, ns, links)
            .into_iter()
            .filter(|e| e.contains("_SERVICE_HOST="))
            .collect()
    };
    // (namespace, enableServiceLinks, expected hosts, sorted by service name)
    let cases: Vec<(&str, bool, Vec<&str>)> = vec![
        (
            "shop",
            true,
            vec![
                "A_SVC_SERVICE_HOST=10.96.0.2",
                "KUBERNETES_SERVICE_HOST=10.96.0.1",
            ],
        ),
        ("shop", false, vec!["KUBERNETES_SERVICE_HOST=10.96.0.1"]),
        (
            "default",
            true,
            vec![
                "B_SVC_SERVICE_HOST=10.96.0.3",
                "KUBERNETES_SERVICE_HOST=10.96.0.1",
            ],
        ),
        ("default", false, vec!["KUBERNETES_SERVICE_HOST=10.96.0.1"]),
        ("empty", true, vec!["KUBERNETES_SERVICE_HOST=10.96.0.1"]),
    ];
    for (ns, links, want) in cases {
        assert_eq!(hosts(ns, links), want, "namespace {ns}, links {links}");
    }
}

#[test]
fn pod_env_wins_over_service_env_in_the_container_spec() {
    use crate::runtime::ImageConfig;
    use crate::spec::{build, SpecInput};
    use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
    let s = [svc(
        "default",
        "mi-app-svc",
        "10.96.0.10",
        &[(None, 80, None)],
    )];
    let mut image = ImageConfig {
        env: vec!["MI_APP_SVC_SERVICE_PORT=1".into()],
        cmd: vec!["sh".into()],
        ..Default::default()
    };
    image.env.extend(env(&s, "default", true));
    let c = Container {
        name: "app".into(),
        env: Some(vec![
            EnvVar {
                name: "MI_APP_SVC_SERVICE_HOST".into(),
                value: Some("mine".into()),
                ..Default::default()
            },
            EnvVar {
                name: "URL".into(),
                value: Some("http://$(MI_APP_SVC_SERVICE_HOST):$(MI_APP_SVC_SERVICE_PORT)".into()),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let mut pod = Pod::default();
    pod.metadata.name = Some("p".into());
    pod.metadata.namespace = Some("default".into());
    let spec = build(&SpecInput {
        pod: &pod,
        container: &c,
        image: &image,
        container_id: "id",
        netns_path: None,
        hosts_file: "/tmp/h".into(),
        resolv_file: "/tmp/r".into(),
        hostname_file: "/tmp/n".into(),
        volume_dirs: Default::default(),
        config_env: Default::default(),
        pod_ip: None,
        node_name: "n".into(),
        host_ip: "127.0.0.1".into(),
        nofile: 1024,
    })
    .unwrap();
    let got: Vec<String> = serde_json::from_value(spec["process"]["env"].clone()).unwrap();
    assert!(
        got.contains(&"MI_APP_SVC_SERVICE_HOST=mine".to_string()),
        "{got:?}"
    );
    assert!(
        got.contains(&"MI_APP_SVC_SERVICE_PORT=80".to_string()),
        "{got:?}"
    );
    assert!(got.contains(&"URL=http://mine:80".to_string()), "{got:?}");
    assert!(
        got.contains(&"MI_APP_SVC_PORT_80_TCP_ADDR=10.96.0.10".to_string()),
        "{got:?}"
    );
}
