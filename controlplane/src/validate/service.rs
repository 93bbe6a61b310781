//! Services: type, ports (numbers, names, target ports, node ports, protocols), session
//! affinity and traffic policies, with Kubernetes' wording.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::is_dns1123_label;
use super::{Errors, FieldError};

pub(super) fn validate_port_number(v: i32, path: String, errs: &mut Errors) {
    if !(1..=65535).contains(&v) {
        errs.invalid(path, v, "must be between 1 and 65535, inclusive");
    }
}

pub(super) fn validate_service(svc: &Service, errs: &mut Errors) {
    let Some(spec) = svc.spec.as_ref() else {
        errs.required("spec");
        return;
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    let types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !types.contains(&kind) {
        errs.unsupported("spec.type", kind, &types);
    }
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    if ports.is_empty() && kind != "ExternalName" && spec.cluster_ip.as_deref() != Some("None") {
        errs.required("spec.ports");
    }
    if let Some(a) = spec.session_affinity.as_deref() {
        if !["ClientIP", "None"].contains(&a) {
            errs.unsupported("spec.sessionAffinity", a, &["ClientIP", "None"]);
        }
    }
    for (field, value) in [
        (
            "spec.externalTrafficPolicy",
            spec.external_traffic_policy.as_deref(),
        ),
        (
            "spec.internalTrafficPolicy",
            spec.internal_traffic_policy.as_deref(),
        ),
    ] {
        if let Some(v) = value.filter(|v| !["Cluster", "Local"].contains(v)) {
            errs.unsupported(field, v, &["Cluster", "Local"]);
        }
    }
    if spec.cluster_ip.as_deref() == Some("None") && (kind == "NodePort" || kind == "LoadBalancer")
    {
        errs.invalid(
            "spec.clusterIPs[0]",
            "\"None\"",
            &format!("may not be set to 'None' for {kind} services"),
        );
    }
    let mut names = BTreeSet::new();
    let mut port_protocols = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        validate_port_number(p.port, format!("{pp}.port"), errs);
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        if !port_protocols.insert((p.port, proto)) {
            errs.duplicate(pp.clone(), &format!("{}/{proto}", p.port));
        }
        if let Some(n) = p
            .name
            .as_deref()
            .filter(|n| !n.is_empty() && !is_dns1123_label(n))
        {
            errs.invalid(
                format!("{pp}.name"),
                format!("{n:?}"),
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            );
        }
        if ports.len() > 1 && p.name.as_deref().is_none_or(str::is_empty) {
            errs.required(format!("{pp}.name"));
        }
        if let Some(n) = p.name.as_deref() {
            if !names.insert(n) {
                errs.duplicate(format!("{pp}.name"), n);
            }
        }
        match &p.target_port {
            Some(IntOrString::Int(t)) => validate_port_number(*t, format!("{pp}.targetPort"), errs),
            Some(IntOrString::String(s)) if !is_port_name(s) => errs.invalid(
                format!("{pp}.targetPort"),
                format!("{s:?}"),
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), at most 15 characters, at least one letter",
            ),
            _ => {}
        }
        if let Some(np) = p.node_port.filter(|np| *np != 0) {
            if kind == "ClusterIP" || kind == "ExternalName" {
                errs.0.push(FieldError {
                    path: format!("{pp}.nodePort"),
                    detail: format!("Forbidden: may not be used when `type` is '{kind}'"),
                });
            } else if !(30000..=32767).contains(&np) {
                errs.invalid(format!("{pp}.nodePort"), np, "provided port is not in the valid range. The range of valid ports is 30000-32767");
            }
        }
        if let Some(proto) = p.protocol.as_deref() {
            if !["TCP", "UDP", "SCTP"].contains(&proto) {
                errs.unsupported(format!("{pp}.protocol"), proto, &["SCTP", "TCP", "UDP"]);
            }
        }
    }
}

fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}
