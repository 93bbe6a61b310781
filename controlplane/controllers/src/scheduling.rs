//! Node eligibility as the scheduler judges it, for controllers that pick nodes themselves
//! (DaemonSet): nodeSelector, required node affinity, taints against tolerations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};

fn match_requirement(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
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

/// One node selector term: all its label expressions and field requirements hold. An empty
/// term matches nothing, as in Kubernetes.
pub fn term_matches(node: &Node, term: &NodeSelectorTerm) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node.metadata.name.as_deref();
    exprs
        .iter()
        .all(|r| match_requirement(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = match r.key.as_str() {
                "metadata.name" => name,
                _ => None,
            };
            match_requirement(r, value)
        })
}

/// nodeSelector and required node affinity.
pub fn node_matches(
    node: &Node,
    node_selector: Option<&BTreeMap<String, String>>,
    affinity: Option<&Affinity>,
) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = node_selector {
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(node, t)),
        None => true,
    }
}

pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    let op = t.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Taints of the node (with `effects`) that no toleration covers. `spec.unschedulable`
/// counts as the `node.kubernetes.io/unschedulable:NoSchedule` taint.
pub fn untolerated(node: &Node, tolerations: &[Toleration], effects: &[&str]) -> Vec<Taint> {
    let spec = node.spec.as_ref();
    let mut taints: Vec<Taint> = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
    if spec.and_then(|s| s.unschedulable).unwrap_or(false) {
        taints.push(Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    }
    taints
        .into_iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAffinity, NodeSelector, NodeSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn affinity(terms: Vec<NodeSelectorTerm>) -> Affinity {
        Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn node_selection_matches_kubernetes() {
        let n = node("n1", &[("disk", "ssd"), ("cpu", "8")], &[]);
        let sel = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let exprs = |r: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
            match_expressions: Some(r),
            match_fields: None,
        };
        let fields = |r: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(r),
        };
        type Case = (
            &'static str,
            Option<BTreeMap<String, String>>,
            Option<Affinity>,
            bool,
        );
        let cases: Vec<Case> = vec![
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
                "In",
                None,
                Some(affinity(vec![exprs(vec![req(
                    "disk",
                    "In",
                    &["ssd", "nvme"],
                )])])),
                true,
            ),
            (
                "NotIn",
                None,
                Some(affinity(vec![exprs(vec![req("disk", "NotIn", &["ssd"])])])),
                false,
            ),
            (
                "Gt",
                None,
                Some(affinity(vec![exprs(vec![req("cpu", "Gt", &["4"])])])),
                true,
            ),
            (
                "Lt",
                None,
                Some(affinity(vec![exprs(vec![req("cpu", "Lt", &["4"])])])),
                false,
            ),
            (
                "DoesNotExist",
                None,
                Some(affinity(vec![exprs(vec![req("gpu", "DoesNotExist", &[])])])),
                true,
            ),
            (
                "terms are ORed",
                None,
                Some(affinity(vec![
                    exprs(vec![req("gpu", "Exists", &[])]),
                    fields(vec![req("metadata.name", "In", &["n1"])]),
                ])),
                true,
            ),
            (
                "pinned elsewhere",
                None,
                Some(affinity(vec![fields(vec![req(
                    "metadata.name",
                    "In",
                    &["n2"],
                )])])),
                false,
            ),
            (
                "empty term matches nothing",
                None,
                Some(affinity(vec![NodeSelectorTerm::default()])),
                false,
            ),
        ];
        for (name, s, a, want) in cases {
            assert_eq!(node_matches(&n, s.as_ref(), a.as_ref()), want, "{name}");
        }
    }

    #[test]
    fn taints_need_tolerations() {
        let n = node(
            "n1",
            &[],
            &[("dedicated", "NoSchedule"), ("soft", "PreferNoSchedule")],
        );
        let tol = |key: Option<&str>, op: &str, effect: Option<&str>| Toleration {
            key: key.map(Into::into),
            operator: Some(op.into()),
            effect: effect.map(Into::into),
            ..Default::default()
        };
        let hard = ["NoSchedule", "NoExecute"];
        assert_eq!(untolerated(&n, &[], &hard).len(), 1);
        assert!(untolerated(&n, &[tol(Some("dedicated"), "Exists", None)], &hard).is_empty());
        assert!(untolerated(&n, &[tol(None, "Exists", None)], &hard).is_empty());
        assert_eq!(
            untolerated(
                &n,
                &[tol(Some("dedicated"), "Exists", Some("NoExecute"))],
                &hard
            )
            .len(),
            1
        );
        let mut cordoned = node("n2", &[], &[]);
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        assert_eq!(
            untolerated(&cordoned, &[], &hard)[0].key,
            "node.kubernetes.io/unschedulable"
        );
    }
}
