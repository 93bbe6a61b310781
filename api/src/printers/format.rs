//! Small formatting rules kubectl applies to cells: ages, label maps, label selectors.

use std::collections::BTreeMap;

use crate::k8s::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use jiff::Timestamp;

/// kubectl's `translateTimestampSince`: `<unknown>` when unset, else the human age.
pub fn age(now: Timestamp, t: Option<&Time>) -> String {
    match t {
        None => "<unknown>".to_string(),
        Some(t) => since(now, t.0),
    }
}

pub fn since(now: Timestamp, t: Timestamp) -> String {
    let secs = now.as_second() - t.as_second();
    crate::object::human_age(secs)
}

/// `labels.FormatLabels`: `a=b,c=d` sorted by key, `<none>` when empty.
pub fn labels(map: Option<&BTreeMap<String, String>>) -> String {
    match map {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".to_string(),
    }
}

/// `metav1.FormatLabelSelector`: requirements sorted by key, `<none>` when empty or absent.
pub fn label_selector(sel: Option<&LabelSelector>) -> String {
    let Some(sel) = sel else {
        return "<none>".to_string();
    };
    let mut parts: Vec<(String, String)> = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push((k.clone(), format!("{k}={v}")));
    }
    for e in sel.match_expressions.iter().flatten() {
        let mut values = e.values.clone().unwrap_or_default();
        values.sort();
        let text = match e.operator.as_str() {
            "In" => format!("{} in ({})", e.key, values.join(",")),
            "NotIn" => format!("{} notin ({})", e.key, values.join(",")),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({})", e.key, values.join(",")),
        };
        parts.push((e.key.clone(), text));
    }
    if parts.is_empty() {
        return "<none>".to_string();
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    parts
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// `<none>` for an empty string.
pub fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

/// Describe's timestamp format (Go's RFC1123Z), in the local time zone.
pub fn rfc1123z(t: &Time) -> String {
    let zoned = t.0.to_zoned(jiff::tz::TimeZone::system());
    zoned.strftime("%a, %d %b %Y %H:%M:%S %z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn label_selectors_format_like_kubectl() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "mi-app".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["web".into(), "api".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            label_selector(Some(&sel)),
            "app=mi-app,!canary,tier in (api,web)"
        );
        assert_eq!(label_selector(None), "<none>");
        assert_eq!(label_selector(Some(&LabelSelector::default())), "<none>");
    }

    #[test]
    fn label_maps_are_sorted_and_empty_is_none() {
        let m: BTreeMap<String, String> = [("b", "2"), ("a", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(labels(Some(&m)), "a=1,b=2");
        assert_eq!(labels(None), "<none>");
    }
}
