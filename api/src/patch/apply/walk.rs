//! The walks of server-side apply over objects, typed by the merge keys and list types of
//! `strategic/schema.rs`: the field set an applied configuration sets, what changed between two
//! objects, merging a configuration into a live object, and removing fields nobody owns.

use std::collections::HashMap;

use serde_json::Value;

use super::fieldset::{self, FieldSet};
use crate::patch::strategic::schema::{ListType, Ty};
use crate::patch::strategic::Schema;

/// Where a value sits: its type, and (if it is a list) the list's type.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub ty: Ty,
    pub list: ListType,
}

impl Node {
    pub fn root(ty: Ty) -> Node {
        Node {
            ty,
            list: ListType::Atomic,
        }
    }

    fn field(self, name: &str) -> Node {
        Node {
            ty: self.ty.field(name).ty,
            list: self.ty.list_type(name),
        }
    }

    /// An item of this list (a list of lists is atomic).
    fn item(self) -> Node {
        Node {
            ty: self.ty,
            list: ListType::Atomic,
        }
    }

    /// The path element of an item of this list; `None` for an atomic list.
    fn element(self, item: &Value) -> Option<String> {
        match self.list {
            ListType::Atomic => None,
            ListType::Set => Some(fieldset::value(item)),
            ListType::Map(keys) => Some(fieldset::key(item, keys)),
        }
    }
}

/// The fields a configuration sets: its scalars, atomic lists and empty objects, the items of
/// its sets and keyed lists (each item a member itself), not the objects on the way.
pub fn set_of(node: Node, v: &Value, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                set_of(node.field(k), c, out.child_mut(fieldset::field(k)));
            }
        }
        Value::Array(items) if node.list != ListType::Atomic => {
            for item in items {
                let e = node.element(item).expect("a set or a keyed list");
                let o = out.child_mut(e);
                o.mark();
                if matches!(node.list, ListType::Map(_)) {
                    set_of(node.item(), item, o);
                }
            }
        }
        _ => out.mark(),
    }
}

/// What changed from `old` to `new`: `changed` gets each path added or given another value
/// (an added object with all below it), `removed` each path that is gone.
pub fn compare(
    node: Node,
    old: Option<&Value>,
    new: Option<&Value>,
    changed: &mut FieldSet,
    removed: &mut FieldSet,
) {
    match (old, new) {
        (None, None) => {}
        (Some(_), None) => removed.mark(),
        (None, Some(n)) => {
            changed.mark();
            set_of(node, n, changed);
        }
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let e = fieldset::field(k);
                compare(
                    node.field(k),
                    a.get(k),
                    b.get(k),
                    changed.child_mut(e.clone()),
                    removed.child_mut(e),
                );
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if node.list != ListType::Atomic => {
            let (ia, ib) = (index(node, a), index(node, b));
            for (e, i) in &ia {
                let j = ib.get(e).copied();
                compare_item(node, Some(&a[*i]), j.map(|j| &b[j]), e, changed, removed);
            }
            for (e, j) in &ib {
                if !ia.contains_key(e) {
                    compare_item(node, None, Some(&b[*j]), e, changed, removed);
                }
            }
        }
        (Some(o), Some(n)) => {
            if o != n {
                changed.mark();
            }
        }
    }
}

fn compare_item(
    node: Node,
    old: Option<&Value>,
    new: Option<&Value>,
    e: &str,
    changed: &mut FieldSet,
    removed: &mut FieldSet,
) {
    let (c, r) = (
        changed.child_mut(e.to_string()),
        removed.child_mut(e.to_string()),
    );
    if node.list == ListType::Set {
        match (old, new) {
            (Some(_), None) => r.mark(),
            (None, Some(_)) => c.mark(),
            _ => {}
        }
        return;
    }
    compare(node.item(), old, new, c, r);
}

/// Each item's path element and the index of its first occurrence (a set or keyed list).
fn index(node: Node, items: &[Value]) -> HashMap<String, usize> {
    let mut out = HashMap::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        if let Some(e) = node.element(v) {
            out.entry(e).or_insert(i);
        }
    }
    out
}

/// `config` merged into `live`: objects key by key (`null` removes), sets as unions, keyed
/// lists item by item (live items in their order, new ones after), anything else replaced.
pub fn merge(node: Node, live: &Value, config: &Value) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            let mut out = l.clone();
            for (k, cv) in c {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                let merged = match l.get(k) {
                    Some(lv) => merge(node.field(k), lv, cv),
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) if node.list != ListType::Atomic => {
            let in_config = index(node, c);
            let in_live = index(node, l);
            let mut out: Vec<Value> = l
                .iter()
                .map(|lv| {
                    let e = node.element(lv).expect("a set or a keyed list");
                    match in_config.get(&e) {
                        Some(&j) if matches!(node.list, ListType::Map(_)) => {
                            merge(node.item(), lv, &c[j])
                        }
                        _ => lv.clone(),
                    }
                })
                .collect();
            for (j, cv) in c.iter().enumerate() {
                let e = node.element(cv).expect("a set or a keyed list");
                // New items in the configuration's order, each once.
                if !in_live.contains_key(&e) && in_config.get(&e) == Some(&j) {
                    out.push(cv.clone());
                }
            }
            Value::Array(out)
        }
        _ => config.clone(),
    }
}

/// Removes from `v` each member of `prune` that has no member of `owned` at or below it;
/// where owned fields lie below, only the unowned ones under it go.
pub fn prune(node: Node, v: &mut Value, unowned: &FieldSet, owned: Option<&FieldSet>) {
    let owns_any = |e: &str| {
        owned
            .and_then(|o| o.child(e))
            .is_some_and(|o| !o.is_empty())
    };
    match v {
        Value::Object(m) => {
            for (e, sub) in unowned.children() {
                let Some(name) = e.strip_prefix("f:") else {
                    continue;
                };
                if sub.is_member() && !owns_any(e) {
                    m.remove(name);
                } else if let Some(c) = m.get_mut(name) {
                    prune(node.field(name), c, sub, owned.and_then(|o| o.child(e)));
                }
            }
        }
        Value::Array(items) if node.list != ListType::Atomic => {
            let mut keep = Vec::with_capacity(items.len());
            for mut item in std::mem::take(items) {
                let e = node.element(&item).expect("a set or a keyed list");
                match unowned.child(&e) {
                    Some(sub) if sub.is_member() && !owns_any(&e) => continue,
                    Some(sub) => {
                        prune(node.item(), &mut item, sub, owned.and_then(|o| o.child(&e)))
                    }
                    None => {}
                }
                keep.push(item);
            }
            *items = keep;
        }
        _ => {}
    }
}
