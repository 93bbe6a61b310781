//! Label and field selectors: parsed from kubectl's string syntax or from a `LabelSelector`,
//! and matched against objects. Pure functions, shared by the API server, controllers and CLI.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::rules::names::is_label_value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {selector:?}: {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.op {
            Op::In(values) => value.is_some_and(|v| values.contains(v)),
            Op::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
        }
    }
}

/// A conjunction of label requirements. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelectorExpr {
    pub requirements: Vec<Requirement>,
    /// A `LabelSelector` that is absent (nil) matches nothing, unlike an empty one.
    pub matches_nothing: bool,
}

impl LabelSelectorExpr {
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty() && !self.matches_nothing
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches the labels of a JSON object (`metadata.labels`).
    pub fn matches_object(&self, object: &Value) -> bool {
        if self.is_everything() {
            return true;
        }
        self.matches(&labels_of(object))
    }

    /// Parses kubectl's syntax: `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let err = |reason: TermError| SelectorError {
            selector: clip(selector),
            reason: reason.to_string(),
        };
        let mut requirements = Vec::new();
        for term in split_terms(selector) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let requirement = if let Some(key) = term.strip_prefix('!') {
                Requirement {
                    key: check_key(key.trim()).map_err(err)?,
                    op: Op::DoesNotExist,
                }
            } else if let Some((key, values)) = split_set(term, " notin ") {
                Requirement {
                    key: check_key(key).map_err(err)?,
                    op: Op::NotIn(parse_set(key, values).map_err(err)?),
                }
            } else if let Some((key, values)) = split_set(term, " in ") {
                Requirement {
                    key: check_key(key).map_err(err)?,
                    op: Op::In(parse_set(key, values).map_err(err)?),
                }
            } else if let Some((key, value)) = term.split_once("!=") {
                Requirement {
                    key: check_key(key.trim()).map_err(err)?,
                    op: Op::NotIn(vec![check_value(key.trim(), value.trim()).map_err(err)?]),
                }
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                Requirement {
                    key: check_key(key.trim()).map_err(err)?,
                    op: Op::In(vec![check_value(key.trim(), value.trim()).map_err(err)?]),
                }
            } else {
                Requirement {
                    key: check_key(term).map_err(err)?,
                    op: Op::Exists,
                }
            };
            requirements.push(requirement);
        }
        Ok(Self {
            requirements,
            matches_nothing: false,
        })
    }

    /// Converts a Kubernetes `LabelSelector` (matchLabels + matchExpressions).
    pub fn from_label_selector(selector: Option<&LabelSelector>) -> Result<Self, SelectorError> {
        let Some(selector) = selector else {
            return Ok(Self {
                requirements: Vec::new(),
                matches_nothing: true,
            });
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement {
                key: key.clone(),
                op: Op::In(vec![value.clone()]),
            });
        }
        for expr in selector.match_expressions.iter().flatten() {
            let values = expr.values.clone().unwrap_or_default();
            let err = |reason: &str| SelectorError {
                selector: format!("{} {}", expr.key, expr.operator),
                reason: reason.to_string(),
            };
            let op = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(err("values must be non-empty for In and NotIn"))
                }
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(err("values must be empty for Exists and DoesNotExist"))
                }
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => {
                    return Err(err(&format!(
                        "unknown operator {other:?}: must be In, NotIn, Exists or DoesNotExist"
                    )))
                }
            };
            requirements.push(Requirement {
                key: expr.key.clone(),
                op,
            });
        }
        Ok(Self {
            requirements,
            matches_nothing: false,
        })
    }
}

impl std::fmt::Display for LabelSelectorExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let terms: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match &r.op {
                Op::In(v) if v.len() == 1 => format!("{}={}", r.key, v[0]),
                Op::In(v) => format!("{} in ({})", r.key, v.join(",")),
                Op::NotIn(v) if v.len() == 1 => format!("{}!={}", r.key, v[0]),
                Op::NotIn(v) => format!("{} notin ({})", r.key, v.join(",")),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
            })
            .collect();
        f.write_str(&terms.join(","))
    }
}

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

fn split_set<'a>(term: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let (key, rest) = term.split_once(op)?;
    Some((key.trim(), rest.trim()))
}

/// What is wrong with one term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermError {
    #[error("invalid label key {0:?}")]
    Key(String),
    #[error("invalid label value {value:?} for key {key:?}: must be empty or at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric")]
    Value { key: String, value: String },
    #[error("expected a parenthesised set of values, found {0:?}")]
    NotASet(String),
}

fn parse_set(key: &str, values: &str) -> Result<Vec<String>, TermError> {
    let inner = values
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| TermError::NotASet(values.to_string()))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| check_value(key, v))
        .collect()
}

/// Values are label values, as Kubernetes' parser requires: anything else (`=`, spaces,
/// parentheses) would print as a selector that parses differently.
fn check_value(key: &str, value: &str) -> Result<String, TermError> {
    if is_label_value(value) {
        Ok(value.to_string())
    } else {
        Err(TermError::Value {
            key: key.to_string(),
            value: clip(value),
        })
    }
}

fn check_key(key: &str) -> Result<String, TermError> {
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_string())
    } else {
        Err(TermError::Key(key.to_string()))
    }
}

/// `metadata.labels` of a JSON object.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The deepest field path a field selector may name (Kubernetes' field labels have at most
/// three levels, e.g. `involvedObject.fieldPath`; `metadata.labels.x` style paths stay within).
pub const MAX_FIELD_DEPTH: usize = 8;
/// The longest field path (characters).
pub const MAX_FIELD_PATH: usize = 256;

/// Why a field selector's path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldPathError {
    #[error("a term has an empty field path")]
    Empty,
    #[error("field path {0:?} is longer than {MAX_FIELD_PATH} characters")]
    TooLong(String),
    #[error("field path {path:?} has {depth} levels, more than {MAX_FIELD_DEPTH}")]
    TooDeep { path: String, depth: usize },
    #[error("field path {0:?} has an empty segment")]
    EmptySegment(String),
}

/// A field path a selector may use: a few dotted, non-empty segments. Errors quote at most
/// 64 characters of the path.
fn check_field_path(path: &str) -> Result<(), FieldPathError> {
    if path.is_empty() {
        return Err(FieldPathError::Empty);
    }
    if path.len() > MAX_FIELD_PATH {
        return Err(FieldPathError::TooLong(clip(path)));
    }
    let depth = path.split('.').count();
    if depth > MAX_FIELD_DEPTH {
        return Err(FieldPathError::TooDeep {
            path: clip(path),
            depth,
        });
    }
    if path.split('.').any(str::is_empty) {
        return Err(FieldPathError::EmptySegment(clip(path)));
    }
    Ok(())
}

/// At most 64 characters of `s` for an error message (never echo a huge input back).
fn clip(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A field selector: `spec.nodeName=n1,status.phase!=Running`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (dotted path, expected value, equal?)
    pub terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, value, equal) = if let Some((p, v)) = term.split_once("!=") {
                (p, v, false)
            } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (p, v, true)
            } else {
                return Err(SelectorError {
                    selector: clip(selector),
                    reason: format!("term {:?} needs =, == or !=", clip(term)),
                });
            };
            let path = path.trim();
            check_field_path(path).map_err(|e| SelectorError {
                selector: clip(selector),
                reason: e.to_string(),
            })?;
            terms.push((path.to_string(), value.trim().to_string(), equal));
        }
        Ok(Self { terms })
    }

    pub fn is_everything(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value the selector requires at `path`, when it has an equality term for it.
    pub fn required(&self, path: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|(p, _, eq)| p == path && *eq)
            .map(|(_, v, _)| v.as_str())
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(path, expected, equal)| {
            let pointer = format!("/{}", path.replace('.', "/"));
            let actual = match object.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *expected) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn string_selectors_match_like_kubectl() {
        let cases = [
            ("app=web", &[("app", "web")][..], true),
            ("app==web", &[("app", "web")][..], true),
            ("app=web", &[("app", "db")][..], false),
            ("app!=web", &[][..], true),
            (
                "app=mi-app,tier=frontend",
                &[("app", "mi-app"), ("tier", "backend")][..],
                false,
            ),
            (
                "app=mi-app,tier=frontend",
                &[("app", "mi-app"), ("tier", "frontend")][..],
                true,
            ),
            ("tier in (a, b)", &[("tier", "b")][..], true),
            ("tier notin (a,b)", &[("tier", "b")][..], false),
            ("canary", &[("canary", "")][..], true),
            ("!canary", &[("canary", "")][..], false),
            ("", &[][..], true),
        ];
        for (sel, l, want) in cases {
            let parsed = LabelSelectorExpr::parse(sel).unwrap();
            assert_eq!(parsed.matches(&labels(l)), want, "{sel} on {l:?}");
        }
        assert!(LabelSelectorExpr::parse("a in b").is_err());
        assert!(LabelSelectorExpr::parse("a b=c").is_err());
    }

    #[test]
    fn label_values_must_be_label_values_so_a_printed_selector_parses_back() {
        // Found by fuzzing: `k==w==web` parsed to the value `w==web`, printed as `k=w==web`,
        // which does not parse.
        for bad in [
            "appapp==w==web",
            "a= =b",
            "a=b c",
            "a in (x y)",
            "a notin (-x)",
            "a!=b!",
        ] {
            let e = LabelSelectorExpr::parse(bad).unwrap_err();
            assert!(e.reason.contains("label value"), "{bad}: {e}");
        }
        for ok in [
            "a=",
            "a=b",
            "a!=b_c.d-e",
            "a in (x,y)",
            "a notin (x)",
            "a,!b",
            "a=B9",
        ] {
            let parsed = LabelSelectorExpr::parse(ok).unwrap();
            assert_eq!(
                LabelSelectorExpr::parse(&parsed.to_string()),
                Ok(parsed),
                "{ok}"
            );
        }
    }

    #[test]
    fn label_selector_objects_convert_and_a_nil_selector_matches_nothing() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]
        }))
        .unwrap();
        let expr = LabelSelectorExpr::from_label_selector(Some(&sel)).unwrap();
        assert!(expr.matches(&labels(&[("app", "web")])));
        assert!(!expr.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!LabelSelectorExpr::from_label_selector(None)
            .unwrap()
            .matches(&labels(&[])));
        let bad: LabelSelector =
            serde_json::from_value(json!({"matchExpressions": [{"key": "a", "operator": "Like"}]}))
                .unwrap();
        assert!(LabelSelectorExpr::from_label_selector(Some(&bad)).is_err());
    }

    #[test]
    fn field_selectors_refuse_deep_long_or_empty_paths_without_echoing_them() {
        let huge = format!("{}a=b", "a.".repeat(500_000));
        let long = format!("{}=b", "x".repeat(300));
        for (selector, want) in [
            (huge.as_str(), "longer than 256 characters"),
            ("a.b.c.d.e.f.g.h.i=x", "has 9 levels, more than 8"),
            (long.as_str(), "longer than 256 characters"),
            ("=b", "empty field path"),
            ("spec..nodeName=b", "empty segment"),
        ] {
            let e = FieldSelector::parse(selector).unwrap_err().to_string();
            assert!(e.contains(want), "{want:?} in {e}");
            assert!(e.len() < 400, "the error is short: {} bytes", e.len());
        }
        for ok in [
            "spec.nodeName=n1",
            "involvedObject.fieldPath=spec.containers{a}",
            "a.b.c.d.e.f.g.h=x",
        ] {
            assert!(FieldSelector::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn field_selectors_read_dotted_paths() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert!(FieldSelector::parse("spec.nodeName=n1")
            .unwrap()
            .matches(&pod));
        assert!(!FieldSelector::parse("spec.nodeName=n2")
            .unwrap()
            .matches(&pod));
        assert!(
            FieldSelector::parse("status.phase!=Pending,metadata.name=p")
                .unwrap()
                .matches(&pod)
        );
        assert!(FieldSelector::parse("spec.nodeName=")
            .unwrap()
            .matches(&json!({"spec": {}})));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
