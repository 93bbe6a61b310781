//! Server-side defaulting and validation, as Kubernetes' API server does them.
//! Pure functions over typed objects; messages follow Kubernetes' wording
//! (`spec.replicas: Invalid value: -1: must be greater than or equal to 0`).
//! This module holds the field errors and the dispatch by kind; each concern has a file.

use corral_api::kinds::ResourceInfo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

mod configdata;
mod defaults;
mod ingress;
mod lifecycle;
mod logs;
mod meta;
mod pod;
mod rbac;
mod service;
mod update;
mod workloads;

pub use logs::log_options;

pub use defaults::{apply_defaults, Defaults, NAMESPACE_FINALIZER};
pub use meta::{is_dns1123_label, is_dns1123_subdomain};
pub use update::validate_update;

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
    fn too_long(&mut self, path: impl Into<String>, limit: usize) {
        self.0.push(FieldError {
            path: path.into(),
            detail: format!("Too long: may not be more than {limit} bytes"),
        });
    }
    fn duplicate(&mut self, path: impl Into<String>, value: &str) {
        self.0.push(FieldError {
            path: path.into(),
            detail: format!("Duplicate value: {value:?}"),
        });
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).expect("value passed the schema check for this type")
}

fn untyped<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("typed objects serialize")
}

/// Validates an object after defaulting. Returns every invalid field.
pub fn validate(info: &ResourceInfo, object: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    let meta: ObjectMeta = object
        .get("metadata")
        .map(|m| serde_json::from_value(m.clone()).unwrap_or_default())
        .unwrap_or_default();
    meta::validate_meta(info, &meta, &mut errs);
    match info.plural {
        "pods" => {
            let pod: k8s_openapi::api::core::v1::Pod = typed(object);
            match pod.spec.as_ref() {
                Some(spec) => pod::validate_pod_spec(spec, "spec", &mut errs),
                None => errs.required("spec"),
            }
        }
        "replicasets" => workloads::validate_replicaset(&typed(object), &mut errs),
        "deployments" => workloads::validate_deployment(&typed(object), &mut errs),
        "daemonsets" => workloads::validate_daemonset(&typed(object), &mut errs),
        "statefulsets" => workloads::validate_statefulset(&typed(object), &mut errs),
        "services" => service::validate_service(&typed(object), &mut errs),
        "ingresses" => ingress::validate_ingress(&typed(object), &mut errs),
        "configmaps" => configdata::validate_configmap(&typed(object), &mut errs),
        "secrets" => configdata::validate_secret(&typed(object), &mut errs),
        "nodes" => {
            // A node's heartbeat Lease shares its name; this prefix names the proxies' reports.
            let name = meta.name.as_deref().unwrap_or("");
            if corral_api::rules::programmed::node_of(name).is_some() {
                errs.invalid(
                    "metadata.name",
                    format!("{name:?}"),
                    "must not start with \"corral-proxy-\": reserved for the proxies' reports in kube-node-lease",
                );
            }
        }
        "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings" => {
            rbac::validate(info.plural, object, &mut errs)
        }
        _ => {}
    }
    errs.0
}

#[cfg(test)]
mod tests;
