//! What the data paths need from Services and Endpoints: one entry per service port with its
//! virtual addresses and the ready endpoints behind it. Pure.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort, ServiceSpec};

/// One port of one service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePortInfo {
    pub namespace: String,
    pub service: String,
    /// The service port's name ("" when unnamed).
    pub port_name: String,
    /// Lower case, as iptables spells it: tcp, udp, sctp.
    pub protocol: String,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// `sessionAffinity: ClientIP`: how long (seconds) a client sticks to the endpoint it was
    /// sent to; `None` without affinity.
    pub affinity_timeout: Option<u32>,
    /// Ready endpoints, sorted.
    pub endpoints: Vec<SocketAddrV4>,
}

impl ServicePortInfo {
    /// `ns/name:port`, as kube-proxy names a service port.
    pub fn id(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.service, self.port_name)
    }
}

/// Kubernetes' default for `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;
/// The largest timeout the API accepts (one day).
const MAX_AFFINITY_TIMEOUT: i32 = 86_400;

/// The ClientIP affinity timeout of a service spec, `None` without affinity. A timeout the
/// API would have refused (not in 1..=86400) falls back to the default rather than
/// dropping the affinity the user asked for.
pub fn affinity_timeout(spec: &ServiceSpec) -> Option<u32> {
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .filter(|t| (1..=MAX_AFFINITY_TIMEOUT).contains(t))
        .map_or(DEFAULT_AFFINITY_TIMEOUT, |t| t as u32);
    Some(timeout)
}

/// Points every port of the DNS Service (`kube-system/kube-dns`, no selector, so no
/// Endpoints) at this node's own DNS listener, so the ClusterIP's DNAT keeps each query on
/// the node it came from, as NodeLocal DNSCache does.
pub fn local_dns(
    ports: &mut [ServicePortInfo],
    namespace: &str,
    service: &str,
    listener: SocketAddr,
) {
    let std::net::SocketAddr::V4(listener) = listener else {
        return;
    };
    for p in ports
        .iter_mut()
        .filter(|p| p.namespace == namespace && p.service == service)
    {
        p.endpoints = vec![listener];
    }
}

/// Ready endpoints of `port` in `endpoints`: the subset ports with the same name and protocol.
pub fn ready_endpoints(port: &ServicePort, endpoints: Option<&Endpoints>) -> Vec<SocketAddrV4> {
    let name = port.name.as_deref().unwrap_or("");
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let mut out: Vec<SocketAddrV4> = endpoints
        .and_then(|e| e.subsets.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|s| {
            let ep_port = s.ports.iter().flatten().find(|p| {
                p.name.as_deref().unwrap_or("") == name
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            });
            let ep_port = ep_port.and_then(|p| u16::try_from(p.port).ok());
            s.addresses
                .iter()
                .flatten()
                .filter_map(move |a| Some(SocketAddrV4::new(a.ip.parse().ok()?, ep_port?)))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every port of every proxied service, sorted by id. ExternalName and headless services
/// (clusterIP `None`) have no virtual address and are left out.
pub fn service_ports(
    services: &[Arc<Service>],
    endpoints: &BTreeMap<(String, String), Arc<Endpoints>>,
) -> Vec<ServicePortInfo> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        if cluster_ip.is_none() && !node_ports {
            continue;
        }
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let ep = endpoints
            .get(&(ns.clone(), name.clone()))
            .map(|e| e.as_ref());
        let affinity = affinity_timeout(spec);
        for p in spec.ports.iter().flatten() {
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            out.push(ServicePortInfo {
                namespace: ns.clone(),
                service: name.clone(),
                port_name: p.name.clone().unwrap_or_default(),
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                cluster_ip,
                port,
                node_port: node_ports
                    .then(|| p.node_port.and_then(|n| u16::try_from(n).ok()))
                    .flatten(),
                affinity_timeout: affinity,
                endpoints: ready_endpoints(p, ep),
            });
        }
    }
    out.sort();
    out
}

#[cfg(test)]
pub mod testutil {
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    /// A service with ports `(name, port, nodePort)`.
    pub fn service(name: &str, ty: &str, ip: &str, ports: &[(&str, i32, i32)]) -> Arc<Service> {
        Arc::new(Service {
            metadata: meta("default", name),
            spec: Some(ServiceSpec {
                type_: Some(ty.into()),
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, np)| ServicePort {
                            name: Some(n.to_string()).filter(|n| !n.is_empty()),
                            port: *p,
                            node_port: (*np != 0).then_some(*np),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// Endpoints with one subset: ready and not-ready IPs on ports `(name, port)`.
    pub fn endpoints(
        name: &str,
        ready: &[&str],
        not_ready: &[&str],
        ports: &[(&str, i32)],
    ) -> Arc<Endpoints> {
        let addrs = |ips: &[&str]| {
            Some(
                ips.iter()
                    .map(|ip| EndpointAddress {
                        ip: ip.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            )
        };
        Arc::new(Endpoints {
            metadata: meta("default", name),
            subsets: Some(vec![EndpointSubset {
                addresses: addrs(ready),
                not_ready_addresses: addrs(not_ready),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| EndpointPort {
                            name: Some(n.to_string()).filter(|n| !n.is_empty()),
                            port: *p,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }]),
        })
    }

    pub fn by_key(eps: &[Arc<Endpoints>]) -> BTreeMap<(String, String), Arc<Endpoints>> {
        eps.iter()
            .map(|e| {
                (
                    (
                        e.metadata.namespace.clone().unwrap(),
                        e.metadata.name.clone().unwrap(),
                    ),
                    e.clone(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn service_ports_pair_ports_with_ready_endpoints_by_name() {
        let svcs = vec![
            service(
                "web",
                "NodePort",
                "10.43.0.10",
                &[("http", 80, 30080), ("admin", 81, 30081)],
            ),
            service("plain", "ClusterIP", "10.43.0.11", &[("", 80, 0)]),
            service("headless", "ClusterIP", "None", &[("", 80, 0)]),
        ];
        let eps = by_key(&[
            endpoints(
                "web",
                &["10.42.0.3", "10.42.0.2"],
                &["10.42.0.9"],
                &[("http", 8080), ("admin", 9000)],
            ),
            endpoints("plain", &[], &["10.42.0.4"], &[("", 80)]),
        ]);
        let got: Vec<String> = service_ports(&svcs, &eps)
            .iter()
            .map(|p| {
                format!(
                    "{} {:?}:{} np={:?} -> {:?}",
                    p.id(),
                    p.cluster_ip,
                    p.port,
                    p.node_port,
                    p.endpoints
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                "default/plain: Some(10.43.0.11):80 np=None -> []",
                "default/web:admin Some(10.43.0.10):81 np=Some(30081) -> [\"10.42.0.2:9000\", \"10.42.0.3:9000\"]",
                "default/web:http Some(10.43.0.10):80 np=Some(30080) -> [\"10.42.0.2:8080\", \"10.42.0.3:8080\"]",
            ]
        );
    }

    #[test]
    fn the_dns_service_is_sent_to_this_nodes_listener_and_nothing_else_is() {
        let svcs = vec![
            service("kube-dns", "ClusterIP", "10.43.0.10", &[("dns", 53, 0)]),
            service("web", "ClusterIP", "10.43.0.11", &[("", 80, 0)]),
        ];
        let eps = by_key(&[endpoints("web", &["10.42.0.2"], &[], &[("", 80)])]);
        let mut ports = service_ports(&svcs, &eps);
        local_dns(
            &mut ports,
            "default",
            "kube-dns",
            "10.44.0.2:53".parse().unwrap(),
        );
        let got: Vec<(String, Vec<String>)> = ports
            .iter()
            .map(|p| (p.id(), p.endpoints.iter().map(|e| e.to_string()).collect()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "default/kube-dns:dns".to_string(),
                    vec!["10.44.0.2:53".to_string()]
                ),
                ("default/web:".to_string(), vec!["10.42.0.2:80".to_string()]),
            ]
        );
    }

    #[test]
    fn client_ip_affinity_timeout_defaults_like_kubernetes() {
        use k8s_openapi::api::core::v1::{ClientIPConfig, SessionAffinityConfig};
        let spec = |affinity: Option<&str>, timeout: Option<i32>| ServiceSpec {
            session_affinity: affinity.map(str::to_string),
            session_affinity_config: timeout.map(|t| SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(t),
                }),
            }),
            ..Default::default()
        };
        let cases = [
            ("no affinity", spec(None, None), None),
            ("None", spec(Some("None"), Some(60)), None),
            (
                "ClientIP, default",
                spec(Some("ClientIP"), None),
                Some(10_800),
            ),
            ("ClientIP, 60s", spec(Some("ClientIP"), Some(60)), Some(60)),
            (
                "ClientIP, one day",
                spec(Some("ClientIP"), Some(86_400)),
                Some(86_400),
            ),
            (
                "ClientIP, 0 falls back",
                spec(Some("ClientIP"), Some(0)),
                Some(10_800),
            ),
            (
                "ClientIP, too long falls back",
                spec(Some("ClientIP"), Some(86_401)),
                Some(10_800),
            ),
        ];
        for (what, spec, want) in cases {
            assert_eq!(affinity_timeout(&spec), want, "{what}");
        }
    }
}
