//! ConfigMaps and Secrets: `stringData` folded into `data`, config keys, size and the
//! per-type required keys, with Kubernetes' messages.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;

use super::Errors;

/// The most a ConfigMap or Secret may hold (Kubernetes' limit, 1 MiB).
const MAX_TOTAL: usize = 1024 * 1024;

/// Secret defaults: `type: Opaque`, and `stringData` written into `data` (it wins on a
/// shared key) and dropped, as the API server stores it.
pub fn default_secret(secret: &mut Secret) {
    if secret.type_.as_deref().unwrap_or("").is_empty() {
        secret.type_ = Some("Opaque".into());
    }
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (k, v) in strings {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
}

/// `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
fn check_key(path: &str, key: &str, errs: &mut Errors) {
    let shown = format!("{key:?}");
    if key.is_empty()
        || key.len() > 253
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        errs.invalid(
            format!("{path}[{key}]"),
            shown,
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        );
    } else if key == "." || key == ".." || key.starts_with("..") {
        errs.invalid(
            format!("{path}[{key}]"),
            shown,
            "must not be '.' or '..' or start with '..'",
        );
    }
}

pub fn validate_configmap(cm: &ConfigMap, errs: &mut Errors) {
    let mut total = 0;
    for (k, v) in cm.data.iter().flatten() {
        check_key("data", k, errs);
        total += v.len();
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        check_key("binaryData", k, errs);
        if cm.data.as_ref().is_some_and(|d| d.contains_key(k)) {
            errs.invalid(
                format!("data[{k}]"),
                format!("{k:?}"),
                "duplicate of key present in binaryData",
            );
        }
        total += v.0.len();
    }
    if total > MAX_TOTAL {
        errs.0.push(super::FieldError {
            path: String::new(),
            detail: format!("Too long: must have at most {MAX_TOTAL} bytes"),
        });
    }
}

pub fn validate_secret(secret: &Secret, errs: &mut Errors) {
    let data = secret.data.clone().unwrap_or_default();
    let mut total = 0;
    for (k, v) in &data {
        check_key("data", k, errs);
        total += v.0.len();
    }
    if total > MAX_TOTAL {
        errs.0.push(super::FieldError {
            path: "data".into(),
            detail: format!("Too long: must have at most {MAX_TOTAL} bytes"),
        });
    }
    let required: &[&str] = match secret.type_.as_deref().unwrap_or("Opaque") {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    for key in required {
        if !data.contains_key(*key) {
            errs.required(format!("data[{key}]"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn errors_of(f: impl FnOnce(&mut Errors)) -> Vec<String> {
        let mut errs = Errors::default();
        f(&mut errs);
        errs.0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn string_data_is_folded_into_data_and_wins() {
        let mut s = Secret {
            data: Some(BTreeMap::from([
                ("user".into(), ByteString(b"old".to_vec())),
                ("keep".into(), ByteString(b"k".to_vec())),
            ])),
            string_data: Some(BTreeMap::from([("user".into(), "admin".into())])),
            ..Default::default()
        };
        default_secret(&mut s);
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert!(s.string_data.is_none());
        let data = s.data.unwrap();
        assert_eq!(data["user"].0, b"admin");
        assert_eq!(data["keep"].0, b"k");
    }

    #[test]
    fn bad_keys_and_missing_typed_keys_are_reported_with_their_path() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([
                ("good.key_1-x".into(), "v".into()),
                ("bad key".into(), "v".into()),
                ("..x".into(), "v".into()),
                ("dup".into(), "v".into()),
            ])),
            binary_data: Some(BTreeMap::from([("dup".into(), ByteString(vec![1]))])),
            ..Default::default()
        };
        let errs = errors_of(|e| validate_configmap(&cm, e));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(
            |e| e.starts_with("data[bad key]: Invalid value: \"bad key\": a valid config key")
        ));
        assert!(errs.iter().any(|e| e.starts_with("data[..x]")));
        assert!(errs
            .iter()
            .any(|e| e
                == "data[dup]: Invalid value: \"dup\": duplicate of key present in binaryData"));

        let tls = Secret {
            type_: Some("kubernetes.io/tls".into()),
            data: Some(BTreeMap::from([("tls.crt".into(), ByteString(vec![1]))])),
            ..Default::default()
        };
        assert_eq!(
            errors_of(|e| validate_secret(&tls, e)),
            ["data[tls.key]: Required value"]
        );
    }

    #[test]
    fn a_configmap_over_one_mebibyte_is_refused() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([("big".into(), "x".repeat(MAX_TOTAL + 1))])),
            ..Default::default()
        };
        let errs = errors_of(|e| validate_configmap(&cm, e));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("Too long: must have at most 1048576 bytes"));
    }
}
