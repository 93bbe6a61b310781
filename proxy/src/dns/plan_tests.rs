use super::*;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn svc(ns: &str, name: &str, cluster_ip: &str, ports: &[(&str, &str, i32)]) -> Arc<Service> {
    Arc::new(Service {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, proto, port)| ServicePort {
                        name: Some(n.to_string()).filter(|n| !n.is_empty()),
                        protocol: Some(proto.to_string()),
                        port: *port,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn eps(
    ns: &str,
    name: &str,
    addrs: &[(&str, Option<&str>)],
    ports: &[(&str, &str, i32)],
) -> ((String, String), Arc<Endpoints>) {
    let e = Endpoints {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        subsets: Some(vec![EndpointSubset {
            addresses: Some(
                addrs
                    .iter()
                    .map(|(ip, host)| EndpointAddress {
                        ip: ip.to_string(),
                        hostname: host.map(String::from),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, proto, port)| EndpointPort {
                        name: Some(n.to_string()).filter(|n| !n.is_empty()),
                        protocol: Some(proto.to_string()),
                        port: *port,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }]),
    };
    ((ns.into(), name.into()), Arc::new(e))
}

fn snapshot() -> Snapshot {
    let services = vec![
        svc(
            "default",
            "mi-deploy-svc",
            "10.43.0.20",
            &[("http", "TCP", 80)],
        ),
        svc("default", "web", "None", &[("web", "TCP", 80)]),
        svc("shop", "db", "10.43.0.30", &[("", "TCP", 5432)]),
    ];
    let endpoints = BTreeMap::from([
        eps(
            "default",
            "mi-deploy-svc",
            &[("10.42.1.5", None)],
            &[("http", "TCP", 8080)],
        ),
        eps(
            "default",
            "web",
            &[("10.42.2.7", Some("web-1")), ("10.42.1.6", Some("web-0"))],
            &[("web", "TCP", 8080)],
        ),
    ]);
    Snapshot::build("cluster.local", &services, &endpoints)
}

fn a(name: &str, ip: &str) -> Rr {
    Rr {
        name: name.into(),
        data: Rdata::A(ip.parse().unwrap()),
    }
}

fn srv(name: &str, port: u16, target: &str) -> Rr {
    Rr {
        name: name.into(),
        data: Rdata::Srv {
            port,
            target: target.into(),
        },
    }
}

fn answer(answers: Vec<Rr>, additionals: Vec<Rr>) -> Outcome {
    Outcome::Answer {
        answers,
        additionals,
    }
}

const SVC: &str = "mi-deploy-svc.default.svc.cluster.local";
const WEB: &str = "web.default.svc.cluster.local";
const SRV_HTTP: &str = "_http._tcp.mi-deploy-svc.default.svc.cluster.local";
const SRV_WEB: &str = "_web._tcp.web.default.svc.cluster.local";

#[test]
fn names_resolve_as_coredns_answers_them_in_a_k3s_cluster() {
    let s = snapshot();
    let cases: Vec<(&str, &str, Qtype, Outcome)> = vec![
        (
            "a ClusterIP Service by its full name",
            "mi-deploy-svc.default.svc.cluster.local.",
            Qtype::A,
            answer(vec![a(SVC, "10.43.0.20")], vec![]),
        ),
        (
            "case does not matter",
            "Mi-Deploy-Svc.Default.SVC.cluster.local",
            Qtype::A,
            answer(vec![a(SVC, "10.43.0.20")], vec![]),
        ),
        (
            "AAAA of a Service is NODATA, not NXDOMAIN (musl asks both)",
            SVC,
            Qtype::Other,
            answer(vec![], vec![]),
        ),
        (
            "a headless Service answers its ready addresses",
            WEB,
            Qtype::A,
            answer(vec![a(WEB, "10.42.1.6"), a(WEB, "10.42.2.7")], vec![]),
        ),
        (
            "a StatefulSet pod by hostname under its Service",
            "web-0.web.default.svc.cluster.local",
            Qtype::A,
            answer(
                vec![a("web-0.web.default.svc.cluster.local", "10.42.1.6")],
                vec![],
            ),
        ),
        (
            "an unknown hostname under a Service",
            "web-9.web.default.svc.cluster.local",
            Qtype::A,
            Outcome::NxDomain,
        ),
        (
            "SRV of a named port of a ClusterIP Service",
            SRV_HTTP,
            Qtype::Srv,
            answer(vec![srv(SRV_HTTP, 80, SVC)], vec![a(SVC, "10.43.0.20")]),
        ),
        (
            "SRV of a headless Service names each pod with its endpoint port",
            SRV_WEB,
            Qtype::Srv,
            answer(
                vec![
                    srv(SRV_WEB, 8080, "web-0.web.default.svc.cluster.local"),
                    srv(SRV_WEB, 8080, "web-1.web.default.svc.cluster.local"),
                ],
                vec![
                    a("web-0.web.default.svc.cluster.local", "10.42.1.6"),
                    a("web-1.web.default.svc.cluster.local", "10.42.2.7"),
                ],
            ),
        ),
        (
            "SRV of the Service name lists its named ports",
            SVC,
            Qtype::Srv,
            answer(vec![srv(SVC, 80, SVC)], vec![a(SVC, "10.43.0.20")]),
        ),
        (
            "SRV of a port the Service does not have",
            "_ftp._tcp.mi-deploy-svc.default.svc.cluster.local",
            Qtype::Srv,
            Outcome::NxDomain,
        ),
        (
            "a Service in another namespace",
            "db.shop.svc.cluster.local",
            Qtype::A,
            answer(vec![a("db.shop.svc.cluster.local", "10.43.0.30")], vec![]),
        ),
        (
            "the search path's wrong guesses are NXDOMAIN (svc.ns + ns.svc.cluster.local)",
            "mi-deploy-svc.default.default.svc.cluster.local",
            Qtype::A,
            Outcome::NxDomain,
        ),
        (
            "an unknown Service",
            "nope.default.svc.cluster.local",
            Qtype::A,
            Outcome::NxDomain,
        ),
        (
            "a namespace zone exists with no records",
            "default.svc.cluster.local",
            Qtype::A,
            answer(vec![], vec![]),
        ),
        (
            "a pod by its dashed IP",
            "10-42-1-6.default.pod.cluster.local",
            Qtype::A,
            answer(
                vec![a("10-42-1-6.default.pod.cluster.local", "10.42.1.6")],
                vec![],
            ),
        ),
        (
            "anything else inside the cluster domain",
            "x.y.z.cluster.local",
            Qtype::A,
            Outcome::NxDomain,
        ),
        (
            "names outside the cluster domain are forwarded",
            "example.com.",
            Qtype::A,
            Outcome::Forward,
        ),
        (
            "a name that merely ends like the domain is forwarded",
            "notcluster.local",
            Qtype::A,
            Outcome::Forward,
        ),
    ];
    for (why, name, qtype, want) in cases {
        assert_eq!(s.resolve(name, qtype), want, "{why}: {name} {qtype:?}");
    }
}

#[test]
fn external_name_services_and_services_without_endpoints_are_handled() {
    let mut ext = (*svc("default", "ext", "", &[])).clone();
    ext.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
    let s = Snapshot::build(
        "cluster.local",
        &[
            Arc::new(ext),
            svc("default", "empty", "None", &[("web", "TCP", 80)]),
        ],
        &BTreeMap::new(),
    );
    assert_eq!(
        s.resolve("ext.default.svc.cluster.local", Qtype::A),
        Outcome::NxDomain
    );
    assert_eq!(
        s.resolve("empty.default.svc.cluster.local", Qtype::A),
        answer(vec![], vec![]),
        "a headless Service with no ready pod exists but has no address"
    );
}

fn ptr(name: &str, target: &str) -> Rr {
    Rr {
        name: name.into(),
        data: Rdata::Ptr(target.into()),
    }
}

#[test]
fn reverse_names_resolve_as_corednss_kubernetes_plugin_answers_them() {
    let ranges: Vec<Ipv4Net> = vec![
        "10.42.0.0/16".parse().unwrap(),
        "10.43.0.0/16".parse().unwrap(),
    ];
    let services = vec![
        svc(
            "default",
            "mi-deploy-svc",
            "10.43.0.20",
            &[("http", "TCP", 80)],
        ),
        svc("default", "web", "None", &[("web", "TCP", 80)]),
        // The same pod behind a second Service: one PTR per Service, as CoreDNS lists them.
        svc("default", "other", "10.43.0.21", &[("http", "TCP", 80)]),
    ];
    let endpoints = BTreeMap::from([
        eps(
            "default",
            "mi-deploy-svc",
            &[("10.42.1.5", None)],
            &[("http", "TCP", 8080)],
        ),
        eps(
            "default",
            "other",
            &[("10.42.1.5", None)],
            &[("http", "TCP", 8080)],
        ),
        eps(
            "default",
            "web",
            &[("10.42.1.6", Some("web-0"))],
            &[("web", "TCP", 8080)],
        ),
    ]);
    let s = Snapshot::build("cluster.local.", &services, &endpoints).with_reverse_ranges(&ranges);
    let cases: Vec<(&str, &str, Qtype, Outcome)> = vec![
        (
            "a ClusterIP names its Service",
            "20.0.43.10.in-addr.arpa.",
            Qtype::Ptr,
            answer(
                vec![ptr(
                    "20.0.43.10.in-addr.arpa",
                    "mi-deploy-svc.default.svc.cluster.local",
                )],
                vec![],
            ),
        ),
        (
            "an endpoint with a hostname is hostname.svc.ns.svc",
            "6.1.42.10.In-Addr.Arpa",
            Qtype::Ptr,
            answer(
                vec![ptr(
                    "6.1.42.10.in-addr.arpa",
                    "web-0.web.default.svc.cluster.local",
                )],
                vec![],
            ),
        ),
        (
            "an endpoint without one is its dashed IP under each Service it backs",
            "5.1.42.10.in-addr.arpa",
            Qtype::Ptr,
            answer(
                vec![
                    ptr(
                        "5.1.42.10.in-addr.arpa",
                        "10-42-1-5.mi-deploy-svc.default.svc.cluster.local",
                    ),
                    ptr(
                        "5.1.42.10.in-addr.arpa",
                        "10-42-1-5.other.default.svc.cluster.local",
                    ),
                ],
                vec![],
            ),
        ),
        (
            "an A query of a known reverse name is NODATA",
            "20.0.43.10.in-addr.arpa",
            Qtype::A,
            answer(vec![], vec![]),
        ),
        (
            "an unknown Service address is NXDOMAIN",
            "99.0.43.10.in-addr.arpa",
            Qtype::Ptr,
            Outcome::NxDomain,
        ),
        (
            "an unknown pod address is NXDOMAIN",
            "9.9.42.10.in-addr.arpa",
            Qtype::Ptr,
            Outcome::NxDomain,
        ),
        (
            "a partial name above known addresses exists",
            "1.42.10.in-addr.arpa",
            Qtype::Ptr,
            answer(vec![], vec![]),
        ),
        (
            "a partial name inside a range with nothing below is NXDOMAIN",
            "7.43.10.in-addr.arpa",
            Qtype::Ptr,
            Outcome::NxDomain,
        ),
        (
            "a partial name wider than the ranges is not ours",
            "10.in-addr.arpa",
            Qtype::Ptr,
            Outcome::Forward,
        ),
        (
            "an address outside the cluster's ranges is forwarded",
            "1.2.0.192.in-addr.arpa",
            Qtype::Ptr,
            Outcome::Forward,
        ),
        (
            "a malformed reverse name is forwarded",
            "x.1.42.10.in-addr.arpa",
            Qtype::Ptr,
            Outcome::Forward,
        ),
        (
            "IPv6 reverse names are forwarded (the cluster is IPv4)",
            "1.0.0.0.ip6.arpa",
            Qtype::Ptr,
            Outcome::Forward,
        ),
        (
            "PTR of a forward cluster name is NODATA",
            "mi-deploy-svc.default.svc.cluster.local",
            Qtype::Ptr,
            answer(vec![], vec![]),
        ),
    ];
    for (why, name, qtype, want) in cases {
        assert_eq!(s.resolve(name, qtype), want, "{why}: {name} {qtype:?}");
    }
}

#[test]
fn without_cluster_ranges_every_reverse_name_is_forwarded() {
    assert_eq!(
        snapshot().resolve("20.0.43.10.in-addr.arpa", Qtype::Ptr),
        Outcome::Forward
    );
}
