//! Rows for Service, Endpoints, Ingress and IngressClass, with kubectl's cell rules (`<pending>`
//! external IPs, `+ N more...` endpoints, `*` hosts).

use std::collections::BTreeSet;

use crate::k8s::api::core::v1::{Endpoints, Service};
use crate::k8s::api::networking::v1::{Ingress, IngressClass};

use super::format::{age, labels};
use super::PrintOptions;

pub const SERVICE_HEADERS: &[&str] = &[
    "NAME",
    "TYPE",
    "CLUSTER-IP",
    "EXTERNAL-IP",
    "PORT(S)",
    "AGE",
];
pub const SERVICE_WIDE: &[&str] = &["SELECTOR"];
pub const ENDPOINTS_HEADERS: &[&str] = &["NAME", "ENDPOINTS", "AGE"];
pub const INGRESS_HEADERS: &[&str] = &["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"];
pub const INGRESSCLASS_HEADERS: &[&str] = &["NAME", "CONTROLLER", "PARAMETERS", "AGE"];

/// Load-balancer addresses are shown whole: kubectl's printer clips them to 16 bytes only for
/// narrow output, but kubectl gets its tables from the server, which renders them wide.
fn service_external_ip(svc: &Service) -> String {
    let spec = svc.spec.clone().unwrap_or_default();
    let external = spec.external_ips.clone().unwrap_or_default();
    match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".into()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            // Sorted and de-duplicated, as kubectl's `loadBalancerStatusStringer`.
            let lb: BTreeSet<String> = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    i.ip.clone()
                        .filter(|s| !s.is_empty())
                        .or(i.hostname.clone().filter(|s| !s.is_empty()))
                })
                .collect();
            let mut all: Vec<String> = lb.into_iter().collect();
            all.extend(external);
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => spec.external_name.clone().unwrap_or_default(),
        _ => "<unknown>".into(),
    }
}

fn service_ports(svc: &Service) -> String {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    if ports.is_empty() {
        return "<none>".into();
    }
    ports
        .iter()
        .map(|p| {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            match p.node_port {
                Some(np) if np > 0 => format!("{}:{np}/{proto}", p.port),
                _ => format!("{}/{proto}", p.port),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn service_row(svc: &Service, opts: &PrintOptions) -> Vec<String> {
    let spec = svc.spec.clone().unwrap_or_default();
    let cluster_ip = spec
        .cluster_ips
        .as_ref()
        .and_then(|ips| ips.first().cloned())
        .or(spec.cluster_ip.clone())
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| "<none>".into());
    let mut cells = vec![
        svc.metadata.name.clone().unwrap_or_default(),
        spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
        cluster_ip,
        service_external_ip(svc),
        service_ports(svc),
        age(opts.now, svc.metadata.creation_timestamp.as_ref()),
    ];
    if opts.wide {
        cells.push(labels(spec.selector.as_ref()));
    }
    cells
}

/// kubectl's `formatEndpoints`: at most three `ip:port` pairs, then `+ N more...`; `<none>`
/// only without subsets, so subsets with only not-ready addresses give an empty cell.
pub fn format_endpoints(ep: &Endpoints) -> String {
    let subsets = ep.subsets.clone().unwrap_or_default();
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in &subsets {
        let addresses = ss.addresses.clone().unwrap_or_default();
        let ports = ss.ports.clone().unwrap_or_default();
        if ports.is_empty() {
            count += addresses.len();
            for a in &addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(a.ip.clone());
            }
            continue;
        }
        for p in &ports {
            count += addresses.len();
            for a in &addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                if a.ip.contains(':') {
                    list.push(format!("[{}]:{}", a.ip, p.port));
                } else {
                    list.push(format!("{}:{}", a.ip, p.port));
                }
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

pub fn endpoints_row(ep: &Endpoints, opts: &PrintOptions) -> Vec<String> {
    vec![
        ep.metadata.name.clone().unwrap_or_default(),
        format_endpoints(ep),
        age(opts.now, ep.metadata.creation_timestamp.as_ref()),
    ]
}

fn ingress_hosts(ing: &Ingress) -> String {
    const MAX: usize = 3;
    let rules = ing
        .spec
        .as_ref()
        .and_then(|s| s.rules.clone())
        .unwrap_or_default();
    let mut list = Vec::new();
    let mut more = false;
    for r in &rules {
        if list.len() == MAX {
            more = true;
        }
        if let Some(h) = r.host.as_ref().filter(|h| !h.is_empty()) {
            if !more {
                list.push(h.clone());
            }
        }
    }
    if list.is_empty() {
        return "*".into();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

fn ingress_ports(ing: &Ingress) -> String {
    let tls = ing
        .spec
        .as_ref()
        .and_then(|s| s.tls.as_ref())
        .is_some_and(|t| !t.is_empty());
    if tls {
        "80, 443".into()
    } else {
        "80".into()
    }
}

/// Addresses, sorted and de-duplicated. Unlike services, kubectl shows them whole (as the
/// workshop's `get ingress` does).
fn ingress_address(ing: &Ingress) -> String {
    let set: BTreeSet<String> = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i.ip.clone()
                .filter(|s| !s.is_empty())
                .or(i.hostname.clone())
        })
        .collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

pub fn ingress_row(ing: &Ingress, opts: &PrintOptions) -> Vec<String> {
    vec![
        ing.metadata.name.clone().unwrap_or_default(),
        ing.spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.clone())
            .unwrap_or_else(|| "<none>".into()),
        ingress_hosts(ing),
        ingress_address(ing),
        ingress_ports(ing),
        age(opts.now, ing.metadata.creation_timestamp.as_ref()),
    ]
}

/// kubectl's `printIngressClass`: PARAMETERS is `Kind[.apiGroup]/name`, `<none>` when unset.
pub fn ingressclass_row(class: &IngressClass, opts: &PrintOptions) -> Vec<String> {
    let spec = class.spec.clone().unwrap_or_default();
    let parameters = match spec.parameters.as_ref() {
        None => "<none>".to_string(),
        Some(p) => match p.api_group.as_deref() {
            Some(group) => format!("{}.{group}/{}", p.kind, p.name),
            None => format!("{}/{}", p.kind, p.name),
        },
    };
    vec![
        class.metadata.name.clone().unwrap_or_default(),
        spec.controller.unwrap_or_default(),
        parameters,
        age(opts.now, class.metadata.creation_timestamp.as_ref()),
    ]
}
