//! Which nodes a pod may land on by label: `nodeSelector`, node selector requirements (In,
//! NotIn, Exists, DoesNotExist, Gt, Lt) and terms (`matchExpressions` on labels, `matchFields`
//! on `metadata.name`), as kube-scheduler's NodeAffinity and the DaemonSet controller judge them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Node, NodeSelectorRequirement, NodeSelectorTerm};

/// One requirement against the node's value for its key (`None` when the node lacks it).
pub fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value.and_then(number), values) else {
                return false;
            };
            let Some(bound) = number(bound) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// A term matches when all its label expressions and field requirements do; an empty term
/// matches nothing. Fields support only `metadata.name` with In / NotIn, as in Kubernetes.
pub fn term_matches(t: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or_default();
    let fields = t.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, Some(name))
        })
}

/// `spec.nodeSelector`: every pair is a label of the node.
pub fn selector_matches(
    node_selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    node_selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The required terms of a pod's node affinity, if it has any.
pub fn required_terms(affinity: Option<&Affinity>) -> Option<&[NodeSelectorTerm]> {
    affinity?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .map(|s| s.node_selector_terms.as_slice())
}

/// nodeSelector and required node affinity (terms ORed) against a node's labels and name.
pub fn matches(
    node_selector: Option<&BTreeMap<String, String>>,
    required: Option<&[NodeSelectorTerm]>,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    node_selector.is_none_or(|s| selector_matches(s, labels))
        && required.is_none_or(|terms| terms.iter().any(|t| term_matches(t, labels, name)))
}

/// [`matches`] for a node object and a pod's `nodeSelector` and `affinity`.
pub fn node_matches(
    node: &Node,
    node_selector: Option<&BTreeMap<String, String>>,
    affinity: Option<&Affinity>,
) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    matches(node_selector, required_terms(affinity), labels, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn term(v: serde_json::Value) -> NodeSelectorTerm {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn selectors_and_terms_match_like_kubernetes() {
        let labels: BTreeMap<String, String> = [("disk", "ssd"), ("gen", "5")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let expr = |key: &str, op: &str, values: &[&str]| {
            term(json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]}))
        };
        let field = |op: &str, values: &[&str]| {
            term(
                json!({"matchFields": [{"key": "metadata.name", "operator": op, "values": values}]}),
            )
        };
        let cases = [
            ("In", expr("disk", "In", &["ssd", "nvme"]), true),
            ("In, other value", expr("disk", "In", &["hdd"]), false),
            ("In, missing label", expr("gpu", "In", &["a"]), false),
            ("NotIn", expr("disk", "NotIn", &["ssd"]), false),
            ("NotIn, missing label", expr("gpu", "NotIn", &["a"]), true),
            ("Exists", expr("disk", "Exists", &[]), true),
            ("DoesNotExist", expr("gpu", "DoesNotExist", &[]), true),
            (
                "DoesNotExist, present",
                expr("disk", "DoesNotExist", &[]),
                false,
            ),
            ("Gt", expr("gen", "Gt", &["4"]), true),
            ("Gt, equal", expr("gen", "Gt", &["5"]), false),
            ("Lt", expr("gen", "Lt", &["4"]), false),
            ("Gt, not a number", expr("disk", "Gt", &["4"]), false),
            ("Gt, two bounds", expr("gen", "Gt", &["1", "2"]), false),
            ("unknown operator", expr("disk", "Like", &["ssd"]), false),
            ("matchFields In", field("In", &["n1"]), true),
            ("matchFields elsewhere", field("In", &["n2"]), false),
            ("matchFields NotIn", field("NotIn", &["n2"]), true),
            ("matchFields Exists", field("Exists", &[]), false),
            (
                "matchFields on another field",
                term(
                    json!({"matchFields": [{"key": "metadata.uid", "operator": "NotIn", "values": ["x"]}]}),
                ),
                false,
            ),
            (
                "expressions and fields are ANDed",
                term(json!({
                    "matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}],
                    "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]})),
                false,
            ),
            ("empty term matches nothing", term(json!({})), false),
        ];
        for (why, t, want) in cases {
            assert_eq!(term_matches(&t, &labels, "n1"), want, "{why}");
        }

        let sel = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let ssd = expr("disk", "In", &["ssd"]);
        let hdd = expr("disk", "In", &["hdd"]);
        for (why, s, terms, want) in [
            ("no constraints", None, None, true),
            (
                "selector matches",
                Some(sel(&[("disk", "ssd")])),
                None,
                true,
            ),
            (
                "selector mismatch",
                Some(sel(&[("disk", "hdd")])),
                None,
                false,
            ),
            (
                "terms are ORed",
                None,
                Some(vec![hdd.clone(), ssd.clone()]),
                true,
            ),
            ("no term matches", None, Some(vec![hdd.clone()]), false),
            (
                "selector and affinity both hold",
                Some(sel(&[("gen", "5")])),
                Some(vec![hdd]),
                false,
            ),
        ] {
            assert_eq!(
                matches(s.as_ref(), terms.as_deref(), &labels, "n1"),
                want,
                "{why}"
            );
        }
    }
}
