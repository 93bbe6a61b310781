//! Server-side defaulting and validation, as Kubernetes' API server does them.
//! Pure functions over typed objects; messages follow Kubernetes' wording
//! (`spec.replicas: Invalid value: -1: must be greater than or equal to 0`).

use std::collections::{BTreeMap, BTreeSet};

use corral_api::kinds::ResourceInfo;
use corral_api::selector::LabelSelectorExpr;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Service, Toleration};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub detail: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.detail)
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn invalid(&mut self, path: impl Into<String>, value: impl std::fmt::Display, why: &str) {
        self.0.push(FieldError {
            path: path.into(),
            detail: format!("Invalid value: {value}: {why}"),
        });
    }
    fn required(&mut self, path: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            detail: "Required value".into(),
        });
    }
    fn unsupported(&mut self, path: impl Into<String>, value: &str, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.0.push(FieldError {
            path: path.into(),
            detail: format!(
                "Unsupported value: {value:?}: supported values: {}",
                list.join(", ")
            ),
        });
    }
    fn duplicate(&mut self, path: impl Into<String>, value: &str) {
        self.0.push(FieldError {
            path: path.into(),
            detail: format!("Duplicate value: {value:?}"),
        });
    }
}

/// Kubernetes defaults that the API server applies, configurable where a lab wants other values.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// tolerationSeconds of the default not-ready/unreachable tolerations added to pods.
    pub toleration_seconds: i64,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            toleration_seconds: 2,
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).expect("value passed the schema check for this type")
}

fn untyped<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("typed objects serialize")
}

/// Applies defaults in place. `object` has passed `decode::check_schema` for `info`.
pub fn apply_defaults(info: &ResourceInfo, object: &mut Value, defaults: &Defaults) {
    match info.plural {
        "pods" => {
            let mut pod: k8s_openapi::api::core::v1::Pod = typed(object);
            let spec = pod.spec.get_or_insert_with(Default::default);
            default_pod_spec(spec);
            add_default_tolerations(spec, defaults.toleration_seconds);
            let status = pod.status.get_or_insert_with(Default::default);
            status.phase.get_or_insert_with(|| "Pending".into());
            *object = untyped(&pod);
        }
        "replicasets" => {
            let mut rs: ReplicaSet = typed(object);
            if let Some(spec) = rs.spec.as_mut() {
                spec.replicas.get_or_insert(1);
                default_template(spec.template.as_mut());
            }
            *object = untyped(&rs);
        }
        "deployments" => {
            let mut d: Deployment = typed(object);
            if let Some(spec) = d.spec.as_mut() {
                spec.replicas.get_or_insert(1);
                spec.revision_history_limit.get_or_insert(10);
                spec.progress_deadline_seconds.get_or_insert(600);
                let strategy = spec.strategy.get_or_insert_with(Default::default);
                let kind = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
                if kind == "RollingUpdate" {
                    let ru = strategy.rolling_update.get_or_insert_with(Default::default);
                    ru.max_surge
                        .get_or_insert(IntOrString::String("25%".into()));
                    ru.max_unavailable
                        .get_or_insert(IntOrString::String("25%".into()));
                }
                default_template(Some(&mut spec.template));
            }
            *object = untyped(&d);
        }
        "daemonsets" => {
            let mut ds: DaemonSet = typed(object);
            if let Some(spec) = ds.spec.as_mut() {
                spec.revision_history_limit.get_or_insert(10);
                let strategy = spec.update_strategy.get_or_insert_with(Default::default);
                let kind = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
                if kind == "RollingUpdate" {
                    let ru = strategy.rolling_update.get_or_insert_with(Default::default);
                    ru.max_unavailable.get_or_insert(IntOrString::Int(1));
                    ru.max_surge.get_or_insert(IntOrString::Int(0));
                }
                default_template(Some(&mut spec.template));
            }
            *object = untyped(&ds);
        }
        "statefulsets" => {
            let mut sts: StatefulSet = typed(object);
            if let Some(spec) = sts.spec.as_mut() {
                spec.replicas.get_or_insert(1);
                spec.revision_history_limit.get_or_insert(10);
                spec.pod_management_policy
                    .get_or_insert_with(|| "OrderedReady".into());
                let strategy = spec.update_strategy.get_or_insert_with(Default::default);
                let kind = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
                if kind == "RollingUpdate" {
                    strategy
                        .rolling_update
                        .get_or_insert_with(Default::default)
                        .partition
                        .get_or_insert(0);
                }
                default_template(Some(&mut spec.template));
            }
            *object = untyped(&sts);
        }
        "services" => {
            let mut svc: Service = typed(object);
            let spec = svc.spec.get_or_insert_with(Default::default);
            spec.type_.get_or_insert_with(|| "ClusterIP".into());
            spec.session_affinity.get_or_insert_with(|| "None".into());
            if spec.session_affinity.as_deref() == Some("ClientIP") {
                let cfg = spec
                    .session_affinity_config
                    .get_or_insert_with(Default::default);
                let ip = cfg.client_ip.get_or_insert_with(Default::default);
                ip.timeout_seconds.get_or_insert(10800);
            }
            let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
            if kind == "NodePort" || kind == "LoadBalancer" {
                spec.external_traffic_policy
                    .get_or_insert_with(|| "Cluster".into());
            }
            if kind != "ExternalName" {
                spec.internal_traffic_policy
                    .get_or_insert_with(|| "Cluster".into());
            }
            for port in spec.ports.iter_mut().flatten() {
                port.protocol.get_or_insert_with(|| "TCP".into());
                port.target_port.get_or_insert(IntOrString::Int(port.port));
            }
            *object = untyped(&svc);
        }
        "secrets" => {
            let mut secret: k8s_openapi::api::core::v1::Secret = typed(object);
            configdata::default_secret(&mut secret);
            *object = untyped(&secret);
        }
        "namespaces" => {
            object["status"]["phase"] = Value::from("Active");
        }
        _ => {}
    }
}

fn default_template(template: Option<&mut PodTemplateSpec>) {
    if let Some(spec) = template.and_then(|t| t.spec.as_mut()) {
        default_pod_spec(spec);
    }
}

fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.security_context.get_or_insert_with(Default::default);
    spec.enable_service_links.get_or_insert(true);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(c);
    }
}

fn default_container(c: &mut Container) {
    if c.image_pull_policy.is_none() {
        c.image_pull_policy = Some(default_pull_policy(c.image.as_deref().unwrap_or("")).into());
    }
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert_with(|| "File".into());
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
}

/// Kubernetes: `Always` for `:latest` or untagged images, else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Kubernetes' DefaultTolerationSeconds admission: pods tolerate a not-ready or unreachable
/// node for a while before they are evicted.
fn add_default_tolerations(spec: &mut PodSpec, seconds: i64) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = tolerations.iter().any(|t| {
            (t.key.as_deref() == Some(key)
                || (t.key.is_none() && t.operator.as_deref() == Some("Exists")))
                && t.effect.as_deref().is_none_or(|e| e == "NoExecute")
        });
        if !covered {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(seconds),
                value: None,
            });
        }
    }
}

/// Validates an object after defaulting. Returns every invalid field.
pub fn validate(info: &ResourceInfo, object: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    let meta: ObjectMeta = object
        .get("metadata")
        .map(|m| serde_json::from_value(m.clone()).unwrap_or_default())
        .unwrap_or_default();
    validate_meta(info, &meta, &mut errs);
    match info.plural {
        "pods" => {
            let pod: k8s_openapi::api::core::v1::Pod = typed(object);
            match pod.spec.as_ref() {
                Some(spec) => validate_pod_spec(spec, "spec", &mut errs),
                None => errs.required("spec"),
            }
        }
        "replicasets" => {
            let rs: ReplicaSet = typed(object);
            match rs.spec {
                Some(s) => validate_workload(
                    s.replicas,
                    Some(&s.selector),
                    s.template.as_ref(),
                    &mut errs,
                ),
                None => errs.required("spec"),
            }
        }
        "deployments" => {
            let d: Deployment = typed(object);
            match d.spec {
                Some(s) => {
                    validate_workload(s.replicas, Some(&s.selector), Some(&s.template), &mut errs);
                    if let Some(strategy) = &s.strategy {
                        let kind = strategy.type_.as_deref().unwrap_or("RollingUpdate");
                        if !["RollingUpdate", "Recreate"].contains(&kind) {
                            errs.unsupported(
                                "spec.strategy.type",
                                kind,
                                &["Recreate", "RollingUpdate"],
                            );
                        }
                        if let Some(ru) = &strategy.rolling_update {
                            validate_int_or_percent(
                                ru.max_surge.as_ref(),
                                "spec.strategy.rollingUpdate.maxSurge",
                                &mut errs,
                            );
                            validate_int_or_percent(
                                ru.max_unavailable.as_ref(),
                                "spec.strategy.rollingUpdate.maxUnavailable",
                                &mut errs,
                            );
                            if is_zero(ru.max_surge.as_ref())
                                && is_zero(ru.max_unavailable.as_ref())
                            {
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
        "daemonsets" => {
            let ds: DaemonSet = typed(object);
            match ds.spec {
                Some(s) => validate_workload(None, Some(&s.selector), Some(&s.template), &mut errs),
                None => errs.required("spec"),
            }
        }
        "statefulsets" => {
            let sts: StatefulSet = typed(object);
            match sts.spec {
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
                    validate_workload(s.replicas, Some(&s.selector), Some(&template), &mut errs)
                }
                None => errs.required("spec"),
            }
        }
        "services" => validate_service(&typed(object), &mut errs),
        "ingresses" => validate_ingress(&typed(object), &mut errs),
        "configmaps" => configdata::validate_configmap(&typed(object), &mut errs),
        "secrets" => configdata::validate_secret(&typed(object), &mut errs),
        _ => {}
    }
    errs.0
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

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

fn validate_meta(info: &ResourceInfo, meta: &ObjectMeta, errs: &mut Errors) {
    let name = meta.name.as_deref().unwrap_or("");
    if name.is_empty() {
        errs.required("metadata.name");
    } else {
        let (ok, msg) = match info.plural {
            "namespaces" => (is_dns1123_label(name), DNS1123_LABEL_MSG),
            "services" => (is_dns1035_label(name), DNS1035_LABEL_MSG),
            _ => (is_dns1123_subdomain(name), DNS1123_SUBDOMAIN_MSG),
        };
        if !ok {
            errs.invalid("metadata.name", format!("{name:?}"), msg);
        }
    }
    for (k, v) in meta.labels.iter().flatten() {
        if !is_qualified_name(k) {
            errs.invalid("metadata.labels", format!("{k:?}"), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
        }
        if !is_label_value(v) {
            errs.invalid(
                format!("metadata.labels[{k}]"),
                format!("{v:?}"),
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            );
        }
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

fn validate_pod_spec(spec: &PodSpec, path: &str, errs: &mut Errors) {
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

fn validate_port_number(v: i32, path: String, errs: &mut Errors) {
    if !(1..=65535).contains(&v) {
        errs.invalid(path, v, "must be between 1 and 65535, inclusive");
    }
}

fn validate_service(svc: &Service, errs: &mut Errors) {
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

fn validate_ingress(ing: &Ingress, errs: &mut Errors) {
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

mod configdata;
mod lifecycle;
mod update;
pub use update::validate_update;

#[cfg(test)]
mod tests;
