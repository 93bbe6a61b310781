//! Ingresses: rules or a default backend, hosts, paths and path types, and backend service
//! ports (a name or a number), with Kubernetes' wording.

use k8s_openapi::api::networking::v1::Ingress;

use super::meta::is_dns1123_subdomain;
use super::service::validate_port_number;
use super::{Errors, FieldError};

pub(super) fn validate_ingress(ing: &Ingress, errs: &mut Errors) {
    let Some(spec) = ing.spec.as_ref() else {
        errs.required("spec");
        return;
    };
    if spec.rules.as_ref().is_none_or(Vec::is_empty) && spec.default_backend.is_none() {
        errs.0.push(FieldError {
            path: "spec".into(),
            detail: "Invalid value: either `defaultBackend` or `rules` must be specified".into(),
        });
    }
    if let Some(b) = spec
        .default_backend
        .as_ref()
        .and_then(|b| b.service.as_ref())
    {
        validate_backend_port(b.port.as_ref(), "spec.defaultBackend.service.port", errs);
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            if !is_dns1123_subdomain(bare) {
                errs.invalid(
                    format!("spec.rules[{i}].host"),
                    format!("{host:?}"),
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                );
            }
        }
        for (j, path) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
            let p = format!("spec.rules[{i}].http.paths[{j}]");
            let kinds = ["Exact", "ImplementationSpecific", "Prefix"];
            if !kinds.contains(&path.path_type.as_str()) {
                errs.unsupported(format!("{p}.pathType"), &path.path_type, &kinds);
            }
            if path.path.as_deref().is_some_and(|s| !s.starts_with('/')) {
                errs.invalid(
                    format!("{p}.path"),
                    format!("{:?}", path.path.as_deref().unwrap_or("")),
                    "must be an absolute path",
                );
            }
            match &path.backend.service {
                Some(svc) if svc.name.is_empty() => {
                    errs.required(format!("{p}.backend.service.name"))
                }
                Some(svc) => validate_backend_port(
                    svc.port.as_ref(),
                    &format!("{p}.backend.service.port"),
                    errs,
                ),
                None if path.backend.resource.is_none() => errs.required(format!("{p}.backend")),
                None => {}
            }
        }
    }
}

/// An Ingress backend's service port: a name or a number, not both, not neither.
fn validate_backend_port(
    port: Option<&k8s_openapi::api::networking::v1::ServiceBackendPort>,
    path: &str,
    errs: &mut Errors,
) {
    let Some(port) = port else {
        errs.required(path);
        return;
    };
    let name = port.name.as_deref().filter(|n| !n.is_empty());
    match (name, port.number.filter(|n| *n != 0)) {
        (Some(_), Some(_)) => errs.invalid(
            path,
            "{...}",
            "cannot specify both port name and port number",
        ),
        (None, None) => errs.invalid(path, "{}", "port name or number is required"),
        (None, Some(n)) => validate_port_number(n, format!("{path}.number"), errs),
        (Some(_), None) => {}
    }
}
