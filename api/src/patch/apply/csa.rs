//! Moving from client-side to server-side apply, as the API server does for kubectl's own
//! manager (`kubectl`): conflicts on fields the last-applied annotation set, and the live
//! object still holds, are taken over; the annotation follows each apply of an object with one.

use serde_json::Value;

use super::fieldset::FieldSet;
use super::walk::{self, Node};

/// The annotation client-side `kubectl apply` keeps its last manifest in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manager `kubectl apply --server-side` uses by default, the only one upgraded.
pub const KUBECTL: &str = "kubectl";

fn last_applied(live: &Value) -> Option<Value> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// The fields whose conflicts an apply by [`KUBECTL`] takes over: those the last-applied
/// manifest set where the live object still has the value it set. `None` without one.
pub fn forgiven(node: Node, live: &Value) -> Option<FieldSet> {
    let last = last_applied(live)?;
    let mut set = FieldSet::default();
    walk::set_of(node, &last, &mut set);
    let (mut changed, mut removed) = (FieldSet::default(), FieldSet::default());
    walk::compare(node, Some(&last), Some(live), &mut changed, &mut removed);
    changed.normalize();
    Some(set.difference(&changed))
}

/// Sets the annotation of `merged` to `config` (without the annotation itself) when the live
/// object had one, so that a later client-side apply starts from this manifest.
pub fn refresh_annotation(live: &Value, merged: &mut Value, config: &Value) {
    if live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .is_none()
    {
        return;
    }
    let mut applied = config.clone();
    if let Some(a) = applied
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    let text = serde_json::to_string(&applied).expect("JSON values serialize");
    if let Some(a) = merged
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.insert(LAST_APPLIED.into(), Value::String(text));
    }
}
