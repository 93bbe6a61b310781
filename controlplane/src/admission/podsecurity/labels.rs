//! The namespace labels that choose a Pod Security policy per mode
//! (`pod-security.kubernetes.io/enforce|warn|audit` and their `-version`), the cluster
//! defaults for unlabelled namespaces, and the check that refuses invalid label values.

use serde_json::{Map, Value};

use super::{Level, Policy, Version};
use crate::validate::FieldError;

pub const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
pub const WARN: &str = "pod-security.kubernetes.io/warn";
pub const AUDIT: &str = "pod-security.kubernetes.io/audit";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Warn,
    Audit,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Enforce, Mode::Warn, Mode::Audit];

    pub fn label(self) -> &'static str {
        match self {
            Mode::Enforce => ENFORCE,
            Mode::Warn => WARN,
            Mode::Audit => AUDIT,
        }
    }

    pub fn version_label(self) -> String {
        format!("{}-version", self.label())
    }
}

/// The policy of each mode for namespaces without labels (the control plane's
/// `--pod-security-default`, `--pod-security-warn-default`, `--pod-security-audit-default`).
/// All `privileged` unless set, which admits every pod, as before Pod Security existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Defaults {
    pub enforce: Policy,
    pub warn: Policy,
    pub audit: Policy,
}

/// The policy of each mode in one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NamespacePolicy {
    pub enforce: Policy,
    pub warn: Policy,
    pub audit: Policy,
}

impl NamespacePolicy {
    pub fn get(&self, mode: Mode) -> Policy {
        match mode {
            Mode::Enforce => self.enforce,
            Mode::Warn => self.warn,
            Mode::Audit => self.audit,
        }
    }
}

fn label<'a>(labels: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a str> {
    labels.and_then(|l| l.get(key)).and_then(Value::as_str)
}

/// The namespace's policy from its labels (`metadata.labels`). A mode without a label takes
/// the default; an invalid level (stored before it was checked) counts as `restricted`, an
/// invalid version as `latest`, failing closed as Kubernetes does.
pub fn namespace_policy(
    labels: Option<&Map<String, Value>>,
    defaults: &Defaults,
) -> NamespacePolicy {
    let one = |mode: Mode, default: Policy| {
        let level = match label(labels, mode.label()) {
            None => default.level,
            Some(v) => v.parse().unwrap_or(Level::Restricted),
        };
        let version = match label(labels, &mode.version_label()) {
            None => default.version,
            Some(v) => v.parse().unwrap_or(Version::Latest),
        };
        Policy { level, version }
    };
    NamespacePolicy {
        enforce: one(Mode::Enforce, defaults.enforce),
        warn: one(Mode::Warn, defaults.warn),
        audit: one(Mode::Audit, defaults.audit),
    }
}

/// Every Pod Security label with a value Kubernetes refuses, as field errors.
pub fn validate_labels(labels: Option<&Map<String, Value>>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for mode in Mode::ALL {
        if let Some(v) = label(labels, mode.label()) {
            if v.parse::<Level>().is_err() {
                errors.push(FieldError {
                    path: format!("metadata.labels[{}]", mode.label()),
                    detail: format!("Invalid value: {v:?}: must be one of {}", Level::NAMES),
                });
            }
        }
        let key = mode.version_label();
        if let Some(v) = label(labels, &key) {
            if v.parse::<Version>().is_err() {
                errors.push(FieldError {
                    path: format!("metadata.labels[{key}]"),
                    detail: format!("Invalid value: {v:?}: must be \"latest\" or \"v1.x\""),
                });
            }
        }
    }
    errors
}
