//! Pod specs (of pods and of workload templates): restart policy, grace period, container
//! names, images, pull policies, ports, volume mounts, lifecycle hooks, and resource
//! quantities that every component can read.

use std::collections::BTreeSet;

use corral_api::rules::quantity::{self, Quantity, QuantityErrorReason, QUANTITY_FORMAT_MSG};
use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::meta::{is_dns1123_label, DNS1123_LABEL_MSG};
use super::{lifecycle, Errors, FieldError};

pub(super) fn validate_pod_spec(spec: &PodSpec, path: &str, errs: &mut Errors) {
    if spec.containers.is_empty() {
        errs.required(format!("{path}.containers"));
    }
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if !["Always", "OnFailure", "Never"].contains(&policy) {
        errs.unsupported(
            format!("{path}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        );
    }
    if let Some(g) = spec.termination_grace_period_seconds.filter(|g| *g < 0) {
        errs.invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            g,
            "must be greater than or equal to 0",
        );
    }
    let mut seen_volumes = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        // The agent makes a directory of each volume's name: it must be a plain label.
        let name_path = format!("{path}.volumes[{i}].name");
        if v.name.is_empty() {
            errs.required(name_path);
        } else if !is_dns1123_label(&v.name) {
            errs.invalid(name_path, format!("{:?}", v.name), DNS1123_LABEL_MSG);
        } else if !seen_volumes.insert(v.name.as_str()) {
            errs.duplicate(name_path, &v.name);
        }
        if let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
            let path = format!("{path}.volumes[{i}].emptyDir.sizeLimit");
            validate_size_limit(&limit.0, path, errs);
        }
    }
    let mut names = BTreeSet::new();
    let volume_names: BTreeSet<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    for (group, list) in [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or(&[]),
        ),
        ("containers", &spec.containers),
    ] {
        for (i, c) in list.iter().enumerate() {
            let p = format!("{path}.{group}[{i}]");
            if c.name.is_empty() {
                errs.required(format!("{p}.name"));
            } else if !is_dns1123_label(&c.name) {
                errs.invalid(
                    format!("{p}.name"),
                    format!("{:?}", c.name),
                    DNS1123_LABEL_MSG,
                );
            } else if !names.insert(c.name.clone()) {
                errs.duplicate(format!("{p}.name"), &c.name);
            }
            if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
                errs.required(format!("{p}.image"));
            }
            lifecycle::validate(c, &p, group, spec, errs);
            validate_resources(c, &p, errs);
            if let Some(policy) = c.image_pull_policy.as_deref() {
                if !["Always", "IfNotPresent", "Never"].contains(&policy) {
                    errs.unsupported(
                        format!("{p}.imagePullPolicy"),
                        policy,
                        &["Always", "IfNotPresent", "Never"],
                    );
                }
            }
            for (j, port) in c.ports.iter().flatten().enumerate() {
                let pp = format!("{p}.ports[{j}]");
                if !(1..=65535).contains(&port.container_port) {
                    errs.invalid(
                        format!("{pp}.containerPort"),
                        port.container_port,
                        "must be between 1 and 65535, inclusive",
                    );
                }
                if let Some(h) = port.host_port.filter(|h| !(0..=65535).contains(h)) {
                    errs.invalid(
                        format!("{pp}.hostPort"),
                        h,
                        "must be between 1 and 65535, inclusive",
                    );
                }
                if let Some(proto) = port.protocol.as_deref() {
                    if !["TCP", "UDP", "SCTP"].contains(&proto) {
                        errs.unsupported(format!("{pp}.protocol"), proto, &["SCTP", "TCP", "UDP"]);
                    }
                }
            }
            for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
                if !volume_names.contains(m.name.as_str()) {
                    errs.0.push(FieldError {
                        path: format!("{p}.volumeMounts[{j}].name"),
                        detail: format!("Not found: {:?}", m.name),
                    });
                }
            }
        }
    }
}

/// `resources.requests` and `resources.limits`: every quantity parses (Kubernetes refuses the
/// others when it decodes the object), is not negative, and fits the unit the scheduler and
/// the agent count in (millicores for cpu, whole units for the rest).
fn validate_resources(c: &Container, path: &str, errs: &mut Errors) {
    let Some(r) = &c.resources else { return };
    for (which, list) in [("requests", &r.requests), ("limits", &r.limits)] {
        for (name, q) in list.iter().flatten() {
            let field = format!("{path}.resources.{which}[{name}]");
            let amount = if name == "cpu" {
                quantity::cpu_millis(&q.0)
            } else {
                quantity::value(&q.0)
            };
            if let Err(e) = amount {
                let why = match e.reason {
                    r if r.is_format() => QUANTITY_FORMAT_MSG,
                    QuantityErrorReason::Negative => "must be greater than or equal to 0",
                    _ => "must be less than 2^63 in the unit it is counted in",
                };
                errs.invalid(field, format!("{:?}", q.0), why);
            }
        }
    }
}

/// `emptyDir.sizeLimit`: a quantity, not negative (Kubernetes' wording for the latter).
fn validate_size_limit(value: &str, path: String, errs: &mut Errors) {
    match Quantity::parse(value) {
        Err(_) => errs.invalid(path, format!("{value:?}"), QUANTITY_FORMAT_MSG),
        Ok(q) if q.is_negative() => errs.0.push(FieldError {
            path,
            detail: "Forbidden: SizeLimit field must be a valid resource quantity".into(),
        }),
        Ok(q) if q.value().is_none() => {
            errs.invalid(path, format!("{value:?}"), "must be less than 2^63 bytes")
        }
        Ok(_) => {}
    }
}
