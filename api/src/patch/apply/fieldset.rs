//! Sets of field paths in Kubernetes' `FieldsV1` form: a tree whose edges are path elements
//! (`f:name` a field, `k:{"name":"web"}` a keyed list item, `v:"x"` a set item) and whose
//! nodes say whether the path itself is a member (`.`), with set algebra and path display.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::patch::strategic::schema::MapKey;

/// A set of paths. The root is never a member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Whether the path leading here is itself a member.
    own: bool,
    children: BTreeMap<String, FieldSet>,
}

/// Why a `fieldsV1` value does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsV1Error {
    #[error("fieldsV1 {path}: expected an object")]
    NotAnObject { path: String },
    #[error("fieldsV1 {path}: unknown path element {element:?}")]
    UnknownElement { path: String, element: String },
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.own && self.children.is_empty()
    }

    /// Whether the path leading here is a member.
    pub fn is_member(&self) -> bool {
        self.own
    }

    pub(crate) fn mark(&mut self) {
        self.own = true;
    }

    pub fn child(&self, element: &str) -> Option<&FieldSet> {
        self.children.get(element)
    }

    /// The elements below this node and their subtrees, in order.
    pub fn children(&self) -> impl Iterator<Item = (&str, &FieldSet)> {
        self.children.iter().map(|(k, c)| (k.as_str(), c))
    }

    pub(crate) fn child_mut(&mut self, element: String) -> &mut FieldSet {
        self.children.entry(element).or_default()
    }

    /// The set with the member at `path` added.
    pub fn insert(&mut self, path: &[&str]) {
        let mut node = self;
        for e in path {
            node = node.child_mut((*e).to_string());
        }
        node.own = true;
    }

    pub fn contains(&self, path: &[&str]) -> bool {
        let mut node = self;
        for e in path {
            match node.children.get(*e) {
                Some(c) => node = c,
                None => return false,
            }
        }
        node.own
    }

    /// Adds every member of `other`.
    pub fn union(&mut self, other: &FieldSet) {
        self.own |= other.own;
        for (k, c) in &other.children {
            self.child_mut(k.clone()).union(c);
        }
    }

    /// The members of `self` that are members of `other`.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            own: self.own && other.own,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// The members of `self` that are not members of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            own: self.own && !other.own,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(k.clone(), d);
            }
        }
        out
    }

    /// Removes every member of `self` at or below a member of `other` (a removed field takes
    /// what lay under it along).
    pub fn remove_subtrees(&mut self, other: &FieldSet) {
        for (k, o) in &other.children {
            if o.own {
                self.children.remove(k);
            } else if let Some(c) = self.children.get_mut(k) {
                c.remove_subtrees(o);
                if c.is_empty() {
                    self.children.remove(k);
                }
            }
        }
    }

    /// Drops the nodes with no member below them (left by `child_mut` on a walk).
    pub(crate) fn normalize(&mut self) {
        self.children.retain(|_, c| {
            c.normalize();
            !c.is_empty()
        });
    }

    /// Every member's path, in order.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = Vec::new();
        self.collect(&mut stack, &mut out);
        out
    }

    fn collect(&self, stack: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.own && !stack.is_empty() {
            out.push(stack.clone());
        }
        for (k, c) in &self.children {
            stack.push(k.clone());
            c.collect(stack, out);
            stack.pop();
        }
    }

    /// The set as a `fieldsV1` object: `{}` for a member without members below it, `".": {}`
    /// beside the children of one with.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.own && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, c) in &self.children {
            m.insert(k.clone(), c.to_fields_v1());
        }
        Value::Object(m)
    }

    /// Reads a `fieldsV1` object.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, FieldsV1Error> {
        let mut set = FieldSet::default();
        read_node(v, &mut set, &mut Vec::new())?;
        Ok(set)
    }
}

fn read_node(v: &Value, node: &mut FieldSet, path: &mut Vec<String>) -> Result<(), FieldsV1Error> {
    let Value::Object(m) = v else {
        return Err(FieldsV1Error::NotAnObject {
            path: display(path),
        });
    };
    if m.is_empty() && !path.is_empty() {
        node.own = true;
    }
    for (k, c) in m {
        if k == "." {
            node.own = true;
            continue;
        }
        if !["f:", "k:", "v:", "i:"].iter().any(|p| k.starts_with(p)) {
            return Err(FieldsV1Error::UnknownElement {
                path: display(path),
                element: k.clone(),
            });
        }
        path.push(k.clone());
        read_node(c, node.child_mut(k.clone()), path)?;
        path.pop();
    }
    Ok(())
}

/// The element of a field.
pub fn field(name: &str) -> String {
    format!("f:{name}")
}

/// The element of a set item.
pub fn value(v: &Value) -> String {
    format!(
        "v:{}",
        serde_json::to_string(v).expect("JSON values serialize")
    )
}

/// The element of an associative list item: its keys (defaulted where the item omits one with
/// a default) as a JSON object in key order. A key the item lacks is left out.
pub fn key(item: &Value, keys: &[MapKey]) -> String {
    let mut sorted: Vec<&MapKey> = keys.iter().collect();
    sorted.sort_by_key(|k| k.name);
    let mut m = Map::new();
    for k in sorted {
        let v = match item.get(k.name) {
            Some(v) if !v.is_null() => v.clone(),
            _ => match k.default {
                Some(d) => Value::String(d.into()),
                None => continue,
            },
        };
        m.insert(k.name.into(), v);
    }
    format!(
        "k:{}",
        serde_json::to_string(&Value::Object(m)).expect("JSON values serialize")
    )
}

/// A path as the API server prints it in a conflict: `.spec.replicas`,
/// `.spec.containers[name="web"].image`, `.metadata.finalizers[="x"]`.
pub fn display<S: AsRef<str>>(path: &[S]) -> String {
    let mut out = String::new();
    for e in path {
        let e = e.as_ref();
        if let Some(name) = e.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(keys) = e.strip_prefix("k:") {
            let pairs = match serde_json::from_str::<Map<String, Value>>(keys) {
                Ok(m) => m
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                Err(_) => keys.to_string(),
            };
            out.push_str(&format!("[{pairs}]"));
        } else if let Some(v) = e.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = e.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        } else {
            out.push_str(e);
        }
    }
    out
}
