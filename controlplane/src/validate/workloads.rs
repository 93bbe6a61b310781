//! Validation of the workload controllers (ReplicaSet, Deployment, DaemonSet, StatefulSet):
//! replicas, a selector that matches the template's labels, an `Always` restart policy and the
//! rollout strategy, with Kubernetes' wording.

use std::collections::BTreeMap;

use corral_api::selector::LabelSelectorExpr;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::validate_pod_spec;
use super::Errors;

pub(super) fn validate_replicaset(rs: &ReplicaSet, errs: &mut Errors) {
    match &rs.spec {
        Some(s) => validate_workload(s.replicas, Some(&s.selector), s.template.as_ref(), errs),
        None => errs.required("spec"),
    }
}

pub(super) fn validate_deployment(d: &Deployment, errs: &mut Errors) {
    match &d.spec {
        Some(s) => {
            validate_workload(s.replicas, Some(&s.selector), Some(&s.template), errs);
            if let Some(strategy) = &s.strategy {
                let kind = strategy.type_.as_deref().unwrap_or("RollingUpdate");
                if !["RollingUpdate", "Recreate"].contains(&kind) {
                    errs.unsupported("spec.strategy.type", kind, &["Recreate", "RollingUpdate"]);
                }
                if let Some(ru) = &strategy.rolling_update {
                    validate_int_or_percent(
                        ru.max_surge.as_ref(),
                        "spec.strategy.rollingUpdate.maxSurge",
                        errs,
                    );
                    validate_int_or_percent(
                        ru.max_unavailable.as_ref(),
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        errs,
                    );
                    if is_zero(ru.max_surge.as_ref()) && is_zero(ru.max_unavailable.as_ref()) {
                        errs.invalid(
                            "spec.strategy.rollingUpdate.maxUnavailable",
                            0,
                            "may not be 0 when `maxSurge` is 0",
                        );
                    }
                }
            }
            if let Some(m) = s.min_ready_seconds.filter(|m| *m < 0) {
                errs.invalid(
                    "spec.minReadySeconds",
                    m,
                    "must be greater than or equal to 0",
                );
            }
        }
        None => errs.required("spec"),
    }
}

pub(super) fn validate_daemonset(ds: &DaemonSet, errs: &mut Errors) {
    match &ds.spec {
        Some(s) => validate_workload(None, Some(&s.selector), Some(&s.template), errs),
        None => errs.required("spec"),
    }
}

pub(super) fn validate_statefulset(sts: &StatefulSet, errs: &mut Errors) {
    match &sts.spec {
        Some(s) => {
            // Pods get a volume per claim template, so mounts may name them.
            let mut template = s.template.clone();
            let spec = template.spec.get_or_insert_with(Default::default);
            let volumes = spec.volumes.get_or_insert_with(Vec::new);
            for claim in s.volume_claim_templates.iter().flatten() {
                let name = claim.metadata.name.clone().unwrap_or_default();
                if !volumes.iter().any(|v| v.name == name) {
                    volumes.push(k8s_openapi::api::core::v1::Volume {
                        name: name.clone(),
                        persistent_volume_claim: Some(
                            k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                                claim_name: name,
                                read_only: None,
                            },
                        ),
                        ..Default::default()
                    });
                }
            }
            validate_workload(s.replicas, Some(&s.selector), Some(&template), errs)
        }
        None => errs.required("spec"),
    }
}

fn validate_workload(
    replicas: Option<i32>,
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    errs: &mut Errors,
) {
    if let Some(r) = replicas.filter(|r| *r < 0) {
        errs.invalid("spec.replicas", r, "must be greater than or equal to 0");
    }
    let selector_expr = match selector {
        Some(sel)
            if sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                && sel.match_expressions.as_ref().is_none_or(Vec::is_empty) =>
        {
            errs.invalid(
                "spec.selector",
                "{}",
                "empty selector is invalid for deployment",
            );
            None
        }
        Some(sel) => match LabelSelectorExpr::from_label_selector(Some(sel)) {
            Ok(e) => Some(e),
            Err(e) => {
                errs.invalid("spec.selector", format!("{:?}", e.selector), &e.reason);
                None
            }
        },
        None => {
            errs.required("spec.selector");
            None
        }
    };
    let Some(template) = template else {
        errs.required("spec.template");
        return;
    };
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if let Some(expr) = selector_expr {
        if !expr.matches(&labels) {
            errs.invalid(
                "spec.template.metadata.labels",
                format!("map[string]string{:?}", labels),
                "`selector` does not match template `labels`",
            );
        }
    }
    match template.spec.as_ref() {
        Some(spec) => {
            let policy = spec.restart_policy.as_deref().unwrap_or("Always");
            if policy != "Always" {
                errs.unsupported("spec.template.spec.restartPolicy", policy, &["Always"]);
            }
            validate_pod_spec(spec, "spec.template.spec", errs);
        }
        None => errs.required("spec.template.spec"),
    }
}

fn is_zero(v: Option<&IntOrString>) -> bool {
    match v {
        Some(IntOrString::Int(0)) => true,
        Some(IntOrString::String(s)) => s == "0%" || s == "0",
        _ => false,
    }
}

fn validate_int_or_percent(v: Option<&IntOrString>, path: &str, errs: &mut Errors) {
    match v {
        Some(IntOrString::Int(i)) if *i < 0 => {
            errs.invalid(path, i, "must be greater than or equal to 0")
        }
        Some(IntOrString::String(s)) => {
            let ok = s
                .strip_suffix('%')
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n <= 100);
            if !ok {
                errs.invalid(path, format!("{s:?}"), "a valid percent string must be a numeric string followed by an ending '%' (e.g. '25%')");
            }
        }
        _ => {}
    }
}
