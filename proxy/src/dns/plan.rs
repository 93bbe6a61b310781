//! What cluster DNS answers, as CoreDNS's `kubernetes` plugin does in k3s: a pure function
//! from a query (name, type) over a snapshot of Services and Endpoints to records, NXDOMAIN
//! inside the cluster domain, or "forward" for every other name. No I/O, no wire format.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};

/// Kubernetes' answers are short-lived: an endpoint change reaches clients within seconds.
pub const TTL: u32 = 5;

/// The record types the planner tells apart; the rest get NODATA for names that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qtype {
    A,
    Srv,
    Any,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    A(Ipv4Addr),
    Srv { port: u16, target: String },
}

/// One resource record; names are fully qualified, lower case, without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    pub name: String,
    pub data: Rdata,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR; empty answers is NODATA (the name exists, not with this type).
    Answer {
        answers: Vec<Rr>,
        additionals: Vec<Rr>,
    },
    NxDomain,
    /// Not ours: ask the upstream resolvers.
    Forward,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Port {
    name: String,
    /// Lower case: tcp, udp, sctp.
    protocol: String,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    ip: Ipv4Addr,
    hostname: Option<String>,
    /// The endpoint ports of this address's subset, as (name, protocol, port).
    ports: Vec<Port>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Svc {
    /// `None` for a headless Service.
    cluster_ip: Option<Ipv4Addr>,
    ports: Vec<Port>,
    /// Ready addresses, sorted by IP.
    ready: Vec<Address>,
}

/// Services and their ready endpoints by (namespace, name), taken after each cache change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    domain: String,
    services: BTreeMap<(String, String), Svc>,
}

impl Snapshot {
    /// `domain` is the cluster domain (`cluster.local`); ExternalName Services are left out.
    pub fn build(
        domain: &str,
        services: &[Arc<Service>],
        endpoints: &BTreeMap<(String, String), Arc<Endpoints>>,
    ) -> Self {
        let mut out = BTreeMap::new();
        for svc in services {
            let (Some(ns), Some(name), Some(spec)) = (
                svc.metadata.namespace.clone(),
                svc.metadata.name.clone(),
                svc.spec.as_ref(),
            ) else {
                continue;
            };
            if spec.type_.as_deref() == Some("ExternalName") {
                continue;
            }
            let cluster_ip = spec
                .cluster_ip
                .as_deref()
                .filter(|ip| *ip != "None")
                .and_then(|ip| ip.parse().ok());
            let ports = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some(Port {
                        name: p.name.clone().unwrap_or_default(),
                        protocol: p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                        port: u16::try_from(p.port).ok()?,
                    })
                })
                .collect();
            let mut ready: Vec<Address> = endpoints
                .get(&(ns.clone(), name.clone()))
                .and_then(|e| e.subsets.as_ref())
                .into_iter()
                .flatten()
                .flat_map(|s| {
                    let ports: Vec<Port> = s
                        .ports
                        .iter()
                        .flatten()
                        .filter_map(|p| {
                            Some(Port {
                                name: p.name.clone().unwrap_or_default(),
                                protocol: p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                                port: u16::try_from(p.port).ok()?,
                            })
                        })
                        .collect();
                    s.addresses.iter().flatten().filter_map(move |a| {
                        Some(Address {
                            ip: a.ip.parse().ok()?,
                            hostname: a.hostname.as_ref().map(|h| h.to_lowercase()),
                            ports: ports.clone(),
                        })
                    })
                })
                .collect();
            ready.sort_by_key(|a| a.ip);
            out.insert(
                (ns.to_lowercase(), name.to_lowercase()),
                Svc {
                    cluster_ip,
                    ports,
                    ready,
                },
            );
        }
        Self {
            domain: domain.trim_end_matches('.').to_lowercase(),
            services: out,
        }
    }

    /// The answer to `name` (any case, trailing dot or not) of type `qtype`.
    pub fn resolve(&self, name: &str, qtype: Qtype) -> Outcome {
        let name = name.trim_end_matches('.').to_lowercase();
        let Some(rest) = strip_domain(&name, &self.domain) else {
            return Outcome::Forward;
        };
        // Labels from the right: ["svc", ns, svc-name, ...] or ["pod", ns, dashed-ip].
        let labels: Vec<&str> = rest.rsplit('.').filter(|l| !l.is_empty()).collect();
        let exists = || Outcome::Answer {
            answers: vec![],
            additionals: vec![],
        };
        match labels.as_slice() {
            // The domain itself and the zones under it exist, with no records of their own.
            [] | ["svc"] | ["pod"] => exists(),
            ["svc", ns] if self.has_namespace(ns) => exists(),
            ["pod", ns, ip] => match dashed_ip(ip) {
                Some(ip) if self.has_namespace(ns) || *ns == "default" => {
                    self.a_records(&name, qtype, &[ip])
                }
                _ => Outcome::NxDomain,
            },
            ["svc", ns, svc] => match self.services.get(&(ns.to_string(), svc.to_string())) {
                Some(s) => self.service(&name, ns, svc, s, qtype),
                None => Outcome::NxDomain,
            },
            ["svc", ns, svc, host] => {
                let Some(s) = self.services.get(&(ns.to_string(), svc.to_string())) else {
                    return Outcome::NxDomain;
                };
                let ips: Vec<Ipv4Addr> = s
                    .ready
                    .iter()
                    .filter(|a| endpoint_label(a) == *host)
                    .map(|a| a.ip)
                    .collect();
                if ips.is_empty() {
                    return Outcome::NxDomain;
                }
                self.a_records(&name, qtype, &ips)
            }
            ["svc", ns, svc, proto, port] if proto.starts_with('_') && port.starts_with('_') => {
                let Some(s) = self.services.get(&(ns.to_string(), svc.to_string())) else {
                    return Outcome::NxDomain;
                };
                self.srv(&name, ns, svc, s, &port[1..], &proto[1..], qtype)
            }
            _ => Outcome::NxDomain,
        }
    }

    fn has_namespace(&self, ns: &str) -> bool {
        self.services.keys().any(|(n, _)| n == ns)
    }

    fn a_records(&self, name: &str, qtype: Qtype, ips: &[Ipv4Addr]) -> Outcome {
        let answers = match qtype {
            Qtype::A | Qtype::Any => ips
                .iter()
                .map(|ip| Rr {
                    name: name.to_string(),
                    data: Rdata::A(*ip),
                })
                .collect(),
            _ => vec![],
        };
        Outcome::Answer {
            answers,
            additionals: vec![],
        }
    }

    /// A Service by name: its ClusterIP, or a headless Service's ready addresses; SRV for
    /// each named port.
    fn service(&self, name: &str, ns: &str, svc: &str, s: &Svc, qtype: Qtype) -> Outcome {
        match qtype {
            Qtype::Srv => {
                let mut all = (vec![], vec![]);
                for p in s.ports.iter().filter(|p| !p.name.is_empty()) {
                    if let Outcome::Answer {
                        answers,
                        additionals,
                    } = self.srv(name, ns, svc, s, &p.name, &p.protocol, qtype)
                    {
                        all.0.extend(answers);
                        all.1.extend(additionals);
                    }
                }
                Outcome::Answer {
                    answers: all.0,
                    additionals: all.1,
                }
            }
            _ => {
                let ips: Vec<Ipv4Addr> = match s.cluster_ip {
                    Some(ip) => vec![ip],
                    None => s.ready.iter().map(|a| a.ip).collect(),
                };
                self.a_records(name, qtype, &ips)
            }
        }
    }

    /// `_port._proto.svc.ns.svc.<domain>`: the ClusterIP Service's name, or each ready
    /// address of a headless one, with its A record as additional data.
    #[allow(clippy::too_many_arguments)]
    fn srv(
        &self,
        name: &str,
        ns: &str,
        svc: &str,
        s: &Svc,
        port: &str,
        proto: &str,
        qtype: Qtype,
    ) -> Outcome {
        let Some(p) = s
            .ports
            .iter()
            .find(|p| !p.name.is_empty() && p.name == port && p.protocol == proto)
        else {
            return Outcome::NxDomain;
        };
        if !matches!(qtype, Qtype::Srv | Qtype::Any) {
            return Outcome::Answer {
                answers: vec![],
                additionals: vec![],
            };
        }
        let base = format!("{svc}.{ns}.svc.{}", self.domain);
        let (mut answers, mut additionals) = (vec![], vec![]);
        match s.cluster_ip {
            Some(ip) => {
                answers.push(Rr {
                    name: name.to_string(),
                    data: Rdata::Srv {
                        port: p.port,
                        target: base.clone(),
                    },
                });
                additionals.push(Rr {
                    name: base,
                    data: Rdata::A(ip),
                });
            }
            None => {
                for a in &s.ready {
                    let Some(ep) = a
                        .ports
                        .iter()
                        .find(|e| e.name == p.name && e.protocol == p.protocol)
                    else {
                        continue;
                    };
                    let target = format!("{}.{base}", endpoint_label(a));
                    answers.push(Rr {
                        name: name.to_string(),
                        data: Rdata::Srv {
                            port: ep.port,
                            target: target.clone(),
                        },
                    });
                    additionals.push(Rr {
                        name: target,
                        data: Rdata::A(a.ip),
                    });
                }
            }
        }
        Outcome::Answer {
            answers,
            additionals,
        }
    }
}

/// An endpoint's label under its Service: its hostname, else its IP with dashes (CoreDNS's
/// `endpoint_pod_names` off).
fn endpoint_label(a: &Address) -> String {
    a.hostname
        .clone()
        .unwrap_or_else(|| a.ip.to_string().replace('.', "-"))
}

fn dashed_ip(label: &str) -> Option<Ipv4Addr> {
    label.replace('-', ".").parse().ok()
}

/// `name` without `.domain` (or "" for the domain itself); `None` when outside it.
fn strip_domain<'a>(name: &'a str, domain: &str) -> Option<&'a str> {
    if name == domain {
        return Some("");
    }
    name.strip_suffix(domain)?.strip_suffix('.')
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
