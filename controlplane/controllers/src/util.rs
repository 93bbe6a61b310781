//! Small shared helpers: int-or-percent scaling, Kubernetes' template hashes, owner references,
//! resource versions and time.

use std::collections::BTreeMap;

use corral_api::client::Object;
use corral_api::selector::LabelSelectorExpr;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
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

/// FNV-1a 32-bit, the hash Kubernetes uses for pod-template-hash and controller revisions.
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in data {
        h ^= *b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// Kubernetes' `rand.SafeEncodeString`: each character mapped into the vowel-free alphabet.
pub fn safe_encode(s: &str) -> String {
    let alphabet = corral_api::object::NAME_ALPHABET;
    s.chars()
        .map(|c| alphabet[(c as usize) % alphabet.len()] as char)
        .collect()
}

/// A template hash as Kubernetes spells it: FNV-32a of the rendered object (and the collision
/// count when set), printed in decimal and safe-encoded (`5575f4ff46`). Kubernetes renders the
/// Go struct with spew; Corral renders canonical JSON, so values differ but the shape matches.
pub fn template_hash<T: serde::Serialize>(template: &T, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).expect("templates serialize");
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// The controller owner reference pointing at `owner`.
pub fn controller_ref<K: Object>(owner: &K) -> OwnerReference {
    let meta = owner.metadata();
    OwnerReference {
        api_version: K::API_VERSION.to_string(),
        kind: K::KIND.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    corral_api::object::controller_of(meta.owner_references.as_ref())
}

/// True when `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|o| o.uid == uid)
}

pub fn rv(meta: &ObjectMeta) -> i64 {
    meta.resource_version
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

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
        match controller_of(&pod.metadata) {
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
        for owner in candidates_in(namespace(&pod.metadata)) {
            if selector_of(&lower, owner.metadata(), selector(&owner))
                .is_ok_and(|e| e.matches(&pod_labels))
            {
                keys.push(ObjectKey::of(owner.as_ref()));
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

    #[test]
    fn hashes_use_the_safe_alphabet() {
        // Decimal digits map onto "456789bcdf", as in Kubernetes' replica set names.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        let h = template_hash(&serde_json::json!({"a": 1}), None);
        assert!(h.chars().all(|c| "456789bcdf".contains(c)));
        assert_ne!(h, template_hash(&serde_json::json!({"a": 1}), Some(1)));
    }
}
