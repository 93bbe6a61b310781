//! What cluster DNS answers, as CoreDNS's `kubernetes` plugin does in k3s: a pure function
//! from a query (name, type) over a snapshot of Services and Endpoints to records, NXDOMAIN
//! inside the cluster domain, or "forward" for every other name; PTR records for Service
//! ClusterIPs and endpoint addresses under `in-addr.arpa` (NXDOMAIN inside the cluster's
//! ranges, forwarded outside). No I/O, no wire format.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Endpoints, Service};

/// Kubernetes' answers are short-lived: an endpoint change reaches clients within seconds.
pub const TTL: u32 = 5;

/// The record types the planner tells apart; the rest get NODATA for names that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qtype {
    A,
    Srv,
    Ptr,
    Any,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    A(Ipv4Addr),
    Srv {
        port: u16,
        target: String,
    },
    /// A reverse record's target, fully qualified without the trailing dot.
    Ptr(String),
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
    /// Reverse names: a ClusterIP to its Service's name, else an endpoint address to its
    /// name under each Service it backs (CoreDNS's `serviceRecordForIP`).
    reverse: BTreeMap<Ipv4Addr, Vec<String>>,
    /// The cluster's address ranges (pod and Service CIDRs): reverse names inside them are
    /// ours to answer, NXDOMAIN when unknown; the others go upstream.
    ranges: Vec<Ipv4Net>,
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
        let domain = domain.trim_end_matches('.').to_lowercase();
        let reverse = reverse_index(&domain, &out);
        Self {
            domain,
            services: out,
            reverse,
            ranges: vec![],
        }
    }

    /// The cluster's address ranges whose reverse names this server answers (the pod and
    /// Service CIDRs, as CoreDNS's `kubernetes cluster.local 10.42.0.0/16 10.43.0.0/16`).
    pub fn with_reverse_ranges(mut self, ranges: &[Ipv4Net]) -> Self {
        self.ranges = ranges.iter().map(|r| r.trunc()).collect();
        self
    }

    /// The answer to `name` (any case, trailing dot or not) of type `qtype`.
    pub fn resolve(&self, name: &str, qtype: Qtype) -> Outcome {
        let name = name.trim_end_matches('.').to_lowercase();
        if let Some(rest) = strip_domain(&name, "in-addr.arpa") {
            return self.resolve_reverse(&name, rest, qtype);
        }
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

    /// `d.c.b.a.in-addr.arpa`: PTR records of a known address; inside the cluster's ranges
    /// an unknown address is NXDOMAIN and a partial name covering known addresses exists
    /// (an empty non-terminal); everything else belongs upstream.
    fn resolve_reverse(&self, name: &str, rest: &str, qtype: Qtype) -> Outcome {
        let Some(octets) = rest
            .rsplit('.')
            .map(|l| {
                l.parse::<u8>()
                    .ok()
                    .filter(|_| l == "0" || !l.starts_with('0'))
            })
            .collect::<Option<Vec<u8>>>()
            .filter(|o| !o.is_empty() && o.len() <= 4 && !rest.is_empty())
        else {
            return Outcome::Forward;
        };
        let bits = 8 * octets.len() as u8;
        let mut addr = [0u8; 4];
        addr[..octets.len()].copy_from_slice(&octets);
        let prefix = Ipv4Net::new(Ipv4Addr::from(addr), bits).expect("at most 32 bits");
        // Ours when the name's prefix lies inside one of the ranges (not above them).
        if !self.ranges.iter().any(|r| r.contains(&prefix)) {
            return Outcome::Forward;
        }
        let exists = || Outcome::Answer {
            answers: vec![],
            additionals: vec![],
        };
        if octets.len() < 4 {
            return match self.reverse.keys().any(|ip| prefix.contains(ip)) {
                true => exists(),
                false => Outcome::NxDomain,
            };
        }
        let Some(targets) = self.reverse.get(&prefix.addr()) else {
            return Outcome::NxDomain;
        };
        if !matches!(qtype, Qtype::Ptr | Qtype::Any) {
            return exists();
        }
        Outcome::Answer {
            answers: targets
                .iter()
                .map(|t| Rr {
                    name: name.to_string(),
                    data: Rdata::Ptr(t.clone()),
                })
                .collect(),
            additionals: vec![],
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

/// Reverse names as CoreDNS's `serviceRecordForIP` gives them: a ClusterIP names its
/// Service alone; any other address names each ready endpoint it is, by hostname or dashed
/// IP, under its Service.
fn reverse_index(
    domain: &str,
    services: &BTreeMap<(String, String), Svc>,
) -> BTreeMap<Ipv4Addr, Vec<String>> {
    let mut out: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for ((ns, name), s) in services {
        if let Some(ip) = s.cluster_ip {
            out.insert(ip, vec![format!("{name}.{ns}.svc.{domain}")]);
        }
    }
    let cluster_ips: Vec<Ipv4Addr> = out.keys().copied().collect();
    for ((ns, name), s) in services {
        for a in s.ready.iter().filter(|a| !cluster_ips.contains(&a.ip)) {
            let target = format!("{}.{name}.{ns}.svc.{domain}", endpoint_label(a));
            let names = out.entry(a.ip).or_default();
            if !names.contains(&target) {
                names.push(target);
            }
        }
    }
    out
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
