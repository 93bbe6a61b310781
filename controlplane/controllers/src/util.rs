//! Small shared helpers: int-or-percent scaling, metadata access, selectors and the owners a pod
//! change concerns. Owner references and template hashes are rules in `corral_api::rules`.

use std::collections::BTreeMap;

use corral_api::client::Object;
use corral_api::rules::owner;
use corral_api::selector::LabelSelectorExpr;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::Error;

/// Kubernetes' `GetScaledValueFromIntOrPercent`: an int stays as is, `"25%"` of `total` rounds
/// up or down as asked.
pub fn scaled_value(
    value: Option<&IntOrString>,
    default: &str,
    total: i32,
    round_up: bool,
) -> Result<i32, String> {
    let owned;
    let value = match value {
        Some(v) => v,
        None => {
            owned = match default.parse::<i32>() {
                Ok(i) => IntOrString::Int(i),
                Err(_) => IntOrString::String(default.to_string()),
            };
            &owned
        }
    };
    match value {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse().ok())
                .ok_or_else(|| {
                    format!("invalid value {s:?}: must be an integer or a percentage")
                })?;
            let num = pct * total as i64;
            let v = if round_up {
                (num + 99).div_euclid(100)
            } else {
                num.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

/// An object's resourceVersion as a revision: the runtime's one rule.
pub use corral_api::runtime::revision as rv;

pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

pub fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or("")
}

pub fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// Parses a workload's selector; an invalid one is an error naming the object.
pub fn selector_of(
    kind: &str,
    meta: &ObjectMeta,
    selector: Option<&LabelSelector>,
) -> Result<LabelSelectorExpr, Error> {
    let expr = LabelSelectorExpr::from_label_selector(selector).map_err(|source| {
        Error::InvalidSelector {
            object: format!("{} \"{}/{}\"", kind, namespace(meta), name(meta)),
            source,
        }
    })?;
    Ok(expr)
}

/// The controllers of kind `kind` that a pod change concerns: the pod's controller owner before
/// and after the change, or, for an orphan that still exists, every controller of that kind in
/// its namespace whose selector matches it (a candidate for adoption).
pub fn owners_of_pod_change<K: Object>(
    change: &corral_api::runtime::Change<k8s_openapi::api::core::v1::Pod>,
    kind: &str,
    candidates_in: impl Fn(&str) -> Vec<std::sync::Arc<K>>,
    selector: impl Fn(&K) -> Option<&LabelSelector>,
) -> Vec<corral_api::runtime::ObjectKey> {
    use corral_api::runtime::{Change, ObjectKey};
    let mut keys = Vec::new();
    let mut versions = vec![change.object().as_ref()];
    if let Change::Updated { old, .. } = change {
        versions.push(old.as_ref());
    }
    let mut orphan = false;
    for pod in &versions {
        match owner::controller_of(&pod.metadata) {
            Some(o) if o.kind == kind => {
                keys.push(ObjectKey::new(namespace(&pod.metadata), o.name.clone()))
            }
            Some(_) => {}
            None => orphan = true,
        }
    }
    if orphan && !matches!(change, Change::Deleted(_)) {
        let pod = change.object();
        let pod_labels = labels(&pod.metadata);
        let lower = kind.to_ascii_lowercase();
        for candidate in candidates_in(namespace(&pod.metadata)) {
            if selector_of(&lower, candidate.metadata(), selector(&candidate))
                .is_ok_and(|e| e.matches(&pod_labels))
            {
                keys.push(ObjectKey::of(candidate.as_ref()));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_like_kubernetes() {
        let pct = |s: &str| IntOrString::String(s.to_string());
        let cases = [
            (Some(pct("25%")), 10, true, 3),
            (Some(pct("25%")), 10, false, 2),
            (Some(pct("25%")), 4, true, 1),
            (Some(pct("25%")), 3, false, 0),
            (Some(pct("100%")), 7, false, 7),
            (Some(IntOrString::Int(2)), 10, true, 2),
            (None, 1, true, 1),
            (None, 1, false, 0),
        ];
        for (v, total, up, want) in cases {
            assert_eq!(
                scaled_value(v.as_ref(), "25%", total, up).unwrap(),
                want,
                "{v:?} of {total} up={up}"
            );
        }
        assert!(scaled_value(Some(&pct("abc")), "25%", 3, true).is_err());
    }
}
