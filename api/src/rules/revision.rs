//! Revision hashing: the `pod-template-hash` a Deployment names its ReplicaSets after, and
//! the ControllerRevision data and hash (`controller-revision-hash`) of DaemonSets and
//! StatefulSets, spelled in Kubernetes' vowel-free alphabet.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The label a Deployment's ReplicaSets and pods carry.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The label DaemonSet and StatefulSet pods and revisions carry.
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";

const FNV_OFFSET: u32 = 0x811c9dc5;
const FNV_PRIME: u32 = 0x01000193;

/// FNV-1a 32-bit, the hash of Kubernetes' `ComputeHash` (pod-template-hash).
pub fn fnv32a(data: &[u8]) -> u32 {
    data.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// FNV-1 32-bit (multiply, then xor), the hash of Kubernetes' `HashControllerRevision`.
pub fn fnv32(data: &[u8]) -> u32 {
    data.iter()
        .fold(FNV_OFFSET, |h, b| h.wrapping_mul(FNV_PRIME) ^ u32::from(*b))
}

/// Kubernetes' `rand.SafeEncodeString`: each character mapped into the vowel-free alphabet.
pub fn safe_encode(s: &str) -> String {
    let alphabet = crate::object::NAME_ALPHABET;
    s.chars()
        .map(|c| alphabet[(c as usize) % alphabet.len()] as char)
        .collect()
}

/// A pod-template-hash as Kubernetes spells it: FNV-32a of the rendered template (and the
/// collision count when set), printed in decimal and safe-encoded (`5575f4ff46`). Kubernetes
/// renders the Go struct with spew; Corral renders canonical JSON, so values differ but the
/// shape matches.
pub fn template_hash<T: serde::Serialize>(template: &T, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).expect("templates serialize");
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// A ControllerRevision's data: Kubernetes stores a patch replacing the template.
pub fn revision_data(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({"spec": {"template": t}})
}

/// The template a ControllerRevision's data holds (the inverse of [`revision_data`]).
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Kubernetes' `HashControllerRevision`: FNV-32 of the data and the collision count.
pub fn revision_hash(data: &serde_json::Value, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(data).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    safe_encode(&fnv32(&bytes).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
    use serde_json::json;

    #[test]
    fn hashes_keep_their_values_and_the_safe_alphabet() {
        // Decimal digits map onto "456789bcdf", as in Kubernetes' replica set names.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        for (data, fnv1a, fnv1) in [
            (&b""[..], 0x811c9dc5, 0x811c9dc5),
            (b"a", 0xe40c292c, 0x050c5d7e),
            (b"foobar", 0xbf9cf968, 0x31f0b262),
        ] {
            assert_eq!(fnv32a(data), fnv1a, "fnv32a {data:?}");
            assert_eq!(fnv32(data), fnv1, "fnv32 {data:?}");
        }
        let t = json!({"a": 1});
        let h = template_hash(&t, None);
        assert!(h.chars().all(|c| "456789bcdf".contains(c)), "{h}");
        assert_ne!(h, template_hash(&t, Some(1)));
        assert_eq!(
            h,
            safe_encode(&fnv32a(br#"{"a":1}"#).to_string()),
            "the hash of the canonical JSON"
        );
        let r = revision_hash(&t, None);
        assert_eq!(r, safe_encode(&fnv32(br#"{"a":1}"#).to_string()));
        assert_eq!(
            revision_hash(&t, Some(2)),
            safe_encode(&fnv32(br#"{"a":1}2"#).to_string()),
            "the collision count is appended in decimal"
        );
    }

    #[test]
    fn revision_data_replaces_the_template_and_gives_it_back() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "i:1"}]}}))
        .unwrap();
        let data = revision_data(&template);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let revision = ControllerRevision {
            data: Some(RawExtension(data)),
            ..Default::default()
        };
        assert_eq!(template_of(&revision), Some(template));
        assert_eq!(template_of(&ControllerRevision::default()), None);
    }
}
