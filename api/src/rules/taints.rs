//! Taints and tolerations: Kubernetes' `ToleratesTaint`, the effects that keep pods off a node
//! or evict them, and the taint a cordoned node (`spec.unschedulable`) stands for.

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};

pub const NO_SCHEDULE: &str = "NoSchedule";
pub const PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";
/// The effects a pod must tolerate to be placed on a node.
pub const HARD_EFFECTS: &[&str] = &[NO_SCHEDULE, NO_EXECUTE];

pub const UNSCHEDULABLE_KEY: &str = "node.kubernetes.io/unschedulable";
pub const NOT_READY_KEY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_KEY: &str = "node.kubernetes.io/unreachable";

/// Kubernetes' `ToleratesTaint`: the effect (when set) and the key (when set) agree, and the
/// operator is `Exists`, or `Equal` (the default) with the same value. An empty key needs
/// `Exists`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// Some toleration of the list tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The taints with one of `effects` that no toleration covers.
pub fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &'a [Toleration],
    effects: &'a [&str],
) -> impl Iterator<Item = &'a Taint> + 'a {
    taints
        .iter()
        .filter(move |t| effects.contains(&t.effect.as_str()) && !tolerated(tolerations, t))
}

/// The `node.kubernetes.io/unschedulable:NoSchedule` taint a cordoned node stands for.
pub fn unschedulable_taint() -> Taint {
    Taint {
        key: UNSCHEDULABLE_KEY.into(),
        effect: NO_SCHEDULE.into(),
        ..Default::default()
    }
}

/// The node's taints, with `spec.unschedulable` counted as [`unschedulable_taint`].
pub fn node_taints(node: &Node) -> Vec<Taint> {
    let spec = node.spec.as_ref();
    let mut taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
    if spec.and_then(|s| s.unschedulable).unwrap_or(false) {
        taints.push(unschedulable_taint());
    }
    taints
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let s = |v: &str| (!v.is_empty()).then(|| v.to_string());
        Toleration {
            key: s(key),
            operator: s(op),
            value: s(value),
            effect: s(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerations_match_like_kubernetes() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        for (tol, want, why) in [
            (
                tol("dedicated", "Equal", "gpu", "NoSchedule"),
                true,
                "exact",
            ),
            (
                tol("dedicated", "", "gpu", ""),
                true,
                "default operator, any effect",
            ),
            (
                tol("dedicated", "Equal", "cpu", "NoSchedule"),
                false,
                "other value",
            ),
            (tol("dedicated", "Exists", "", ""), true, "exists"),
            (
                tol("dedicated", "Exists", "", "NoExecute"),
                false,
                "exists, other effect",
            ),
            (tol("", "Exists", "", ""), true, "tolerate everything"),
            (tol("", "Exists", "", "NoExecute"), false, "other effect"),
            (tol("", "Equal", "gpu", ""), false, "empty key needs Exists"),
            (tol("", "", "", ""), false, "empty toleration"),
            (tol("other", "Exists", "", ""), false, "other key"),
            (tol("dedicated", "Bogus", "gpu", ""), false, "bad operator"),
        ] {
            assert_eq!(tolerates(&tol, &t), want, "{why}");
        }

        let node = Node {
            spec: Some(NodeSpec {
                taints: Some(vec![
                    taint("dedicated", "", NO_SCHEDULE),
                    taint("soft", "", PREFER_NO_SCHEDULE),
                ]),
                unschedulable: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let taints = node_taints(&node);
        let keys = |tols: &[Toleration], effects: &[&str]| -> Vec<String> {
            untolerated(&taints, tols, effects)
                .map(|t| t.key.clone())
                .collect()
        };
        assert_eq!(
            keys(&[], HARD_EFFECTS),
            ["dedicated", UNSCHEDULABLE_KEY],
            "a cordoned node counts as tainted"
        );
        assert_eq!(keys(&[], &[PREFER_NO_SCHEDULE]), ["soft"]);
        assert_eq!(keys(&[], &[NO_EXECUTE]), Vec::<String>::new());
        assert_eq!(
            keys(&[tol("dedicated", "Exists", "", "")], HARD_EFFECTS),
            [UNSCHEDULABLE_KEY]
        );
        assert!(keys(&[tol("", "Exists", "", "")], HARD_EFFECTS).is_empty());
    }
}
