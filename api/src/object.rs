//! Small helpers over objects: metadata access on Kubernetes JSON, time stamps, generated names.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rand::Rng;
use serde_json::Value;

/// Kubernetes' alphabet for generated name suffixes (no vowels, no confusable characters).
pub const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `n` random characters from Kubernetes' alphabet.
pub fn random_suffix(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| NAME_ALPHABET[rng.gen_range(0..NAME_ALPHABET.len())] as char)
        .collect()
}

pub fn now() -> Time {
    Time(jiff::Timestamp::now())
}

pub fn str_at<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

pub fn name(object: &Value) -> &str {
    str_at(object, "/metadata/name").unwrap_or("")
}

pub fn namespace(object: &Value) -> &str {
    str_at(object, "/metadata/namespace").unwrap_or("")
}

pub fn uid(object: &Value) -> &str {
    str_at(object, "/metadata/uid").unwrap_or("")
}

pub fn resource_version(object: &Value) -> i64 {
    str_at(object, "/metadata/resourceVersion")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Sets a metadata field, creating `metadata` when missing.
pub fn set_meta(object: &mut Value, field: &str, value: Value) {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = Value::Object(Default::default());
    }
    if value.is_null() {
        if let Some(m) = object["metadata"].as_object_mut() {
            m.remove(field);
        }
    } else {
        object["metadata"][field] = value;
    }
}

/// Human age as kubectl prints it: `5s`, `3m10s`, `7m`, `5h22m`, `29h`, `3d4h`, `45d`.
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=599 => {
            if s % 60 == 0 {
                format!("{}m", s / 60)
            } else {
                format!("{}m{}s", s / 60, s % 60)
            }
        }
        600..=10799 => format!("{}m", s / 60),
        10800..=28799 => {
            let (h, m) = (s / 3600, (s % 3600) / 60);
            if m == 0 {
                format!("{h}h")
            } else {
                format!("{h}h{m}m")
            }
        }
        28800..=172799 => format!("{}h", s / 3600),
        172800..=691199 => {
            let (d, h) = (s / 86400, (s % 86400) / 3600);
            if h == 0 {
                format!("{d}d")
            } else {
                format!("{d}d{h}h")
            }
        }
        _ if s < 86400 * 365 * 2 => format!("{}d", s / 86400),
        _ => format!("{}y", s / (86400 * 365)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        for (secs, want) in [
            (5, "5s"),
            (48, "48s"),
            (165, "2m45s"),
            (190, "3m10s"),
            (420, "7m"),
            (900, "15m"),
            (19320, "5h22m"),
            (104400, "29h"),
            (200000, "2d7h"),
        ] {
            assert_eq!(human_age(secs), want, "{secs}");
        }
    }

    #[test]
    fn suffixes_use_the_kubernetes_alphabet() {
        let s = random_suffix(5);
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| NAME_ALPHABET.contains(&b)));
    }
}
