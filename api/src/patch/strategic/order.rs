//! The order of merged lists: `$setElementOrder/<field>` and the interleaving Kubernetes gives
//! a merged list (patch items in the patch's order, the original's others in theirs), with the
//! identities (merge key values, scalars) that make both linear.

use super::{
    child, clean_list, field_of, merge_list_field, type_name, Result, Schema, StrategicError,
    Strategy, Work, DIRECTIVE, SET_ELEMENT_ORDER,
};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// `$setElementOrder/<field>`: merges the field's patch list (if any) into the original's, then
/// orders the result: the directive's order first, the patch's next, the original's last.
pub(super) fn set_element_order<S: Schema>(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: S,
    path: &str,
    work: &mut Work,
) -> Result<()> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive_key in keys {
        let order = patch.remove(&directive_key).unwrap_or(Value::Null);
        let Some(key) = field_of(&directive_key, SET_ELEMENT_ORDER) else {
            return Err(StrategicError::BadSetElementOrder {
                path: child(path, &directive_key),
            });
        };
        let field_path = child(path, key);
        let Value::Array(order) = order else {
            return Err(StrategicError::WrongType {
                path: child(path, &directive_key),
                expected: "list",
                actual: type_name(&order),
            });
        };
        let as_list = |v: Option<Value>| -> Result<Option<Vec<Value>>> {
            match v {
                None => Ok(None),
                Some(Value::Array(items)) => Ok(Some(items)),
                Some(other) => Err(StrategicError::WrongType {
                    path: field_path.clone(),
                    expected: "list",
                    actual: type_name(&other),
                }),
            }
        };
        let original_list = as_list(original.remove(key))?;
        let patch_list = as_list(patch.remove(key))?;
        let lengths = order.len()
            + original_list.as_ref().map_or(0, Vec::len)
            + patch_list.as_ref().map_or(0, Vec::len);
        work.charge(lengths, &field_path)?;
        let meta = schema.field(key);
        if let Some(p) = &patch_list {
            check_order(p, &order, meta.merge_key, &field_path)?;
        }
        let kind = element_kind(
            original_list.as_deref().unwrap_or_default(),
            patch_list.as_deref().unwrap_or_default(),
            &field_path,
        )?;
        let server_order = match (&original_list, &patch_list) {
            (Some(o), Some(p))
                if kind == Some(Kind::Map)
                    && meta.strategy == Strategy::Merge
                    && !meta.merge_key.is_empty() =>
            {
                server_order_after_merge(o, p, meta.merge_key)
            }
            _ => original_list.clone().unwrap_or_default(),
        };
        let merged = match (original_list, patch_list) {
            (Some(o), None) => o,
            (None, Some(p)) => clean_list(p),
            (Some(o), Some(p)) => merge_list_field(o, p, meta, false, &field_path, work)?,
            (None, None) => continue,
        };
        let Some(kind) = kind else {
            original.insert(key.to_string(), Value::Array(merged));
            continue;
        };
        let ident = Ident::new(kind, meta.merge_key, &field_path);
        let listed = ident.set(&order)?;
        let (patch_items, server_only) = ident.partition(merged, &listed)?;
        let both = normalize_order(patch_items, server_only, &order, &server_order, &ident)?;
        original.insert(key.to_string(), Value::Array(both));
    }
    Ok(())
}

/// The original order `$setElementOrder` interleaves server-only items by, as the Go code ends
/// up with it after merging a list of maps: its in-place deletions leave the original's
/// backing array holding the kept items and then the first appended items, one per deleted
/// item. Kubernetes' tests pin the resulting order ("add map and delete map from merging
/// list"), and `kubectl apply` sends exactly such patches, so it is kept.
fn server_order_after_merge(original: &[Value], patch: &[Value], key: &str) -> Vec<Value> {
    let id = |v: &Value| v.get(key).map(scalar_id);
    let directive = |v: &Value| v.get(DIRECTIVE).and_then(Value::as_str).map(str::to_string);
    if patch
        .iter()
        .any(|i| directive(i).as_deref() == Some("replace"))
    {
        return original.to_vec();
    }
    let deleted: HashSet<String> = patch
        .iter()
        .filter(|i| directive(i).as_deref() == Some("delete"))
        .filter_map(id)
        .collect();
    let mut order: Vec<Value> = original
        .iter()
        .filter(|i| id(i).is_none_or(|k| !deleted.contains(&k)))
        .cloned()
        .collect();
    let removed = original.len() - order.len();
    let mut present: HashSet<String> = order.iter().filter_map(id).collect();
    let appended: Vec<Value> = patch
        .iter()
        .filter(|i| directive(i).is_none())
        .filter(|i| id(i).is_some_and(|k| present.insert(k)))
        .take(removed)
        .cloned()
        .collect();
    order.extend(appended);
    order
}

/// The patch list's items (deletions aside) must appear in the `$setElementOrder` list in the
/// same relative order.
fn check_order(patch: &[Value], order: &[Value], merge_key: &str, path: &str) -> Result<()> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let key_of = |v: &Value| -> Result<Value> {
        if merge_key.is_empty() {
            return Ok(v.clone());
        }
        let Value::Object(m) = v else {
            return Err(StrategicError::WrongType {
                path: path.to_string(),
                expected: "map",
                actual: type_name(v),
            });
        };
        m.get(merge_key)
            .cloned()
            .ok_or_else(|| StrategicError::NoMergeKey {
                path: path.to_string(),
                key: merge_key.to_string(),
            })
    };
    let mut items = Vec::new();
    for v in patch {
        if let Value::Object(m) = v {
            if m.contains_key(DIRECTIVE) {
                continue;
            }
        }
        items.push(key_of(v)?);
    }
    let mut o = 0;
    for item in &items {
        loop {
            let Some(candidate) = order.get(o) else {
                return Err(StrategicError::OrderMismatch {
                    path: path.to_string(),
                });
            };
            o += 1;
            if key_of(candidate)? == *item {
                break;
            }
        }
    }
    Ok(())
}

/// Orders a merged list as Kubernetes does: the patch's items in the patch's order, the
/// original's other items in their order, interleaved where the original order says so.
pub(super) fn normalize_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    ident: &Ident,
) -> Result<Vec<Value>> {
    let patch_items = ident.sort_by(patch_items, patch_order)?;
    let server_only = ident.sort_by(server_only, server_order)?;
    let server_pos = ident.positions(server_order);
    let pos = |v: &Value| {
        ident
            .of_lenient(v)
            .and_then(|id| server_pos.get(&id).copied())
    };
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!((pos(l), pos(r)), (Some(a), Some(b)) if a < b),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

/// The kind of the elements of lists that must share one; `None` when both are empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Map,
}

pub(super) fn element_kind(a: &[Value], b: &[Value], path: &str) -> Result<Option<Kind>> {
    let mut kind = None;
    for v in a.iter().chain(b) {
        let k = match v {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Object(_) => Kind::Map,
            Value::Array(_) => {
                return Err(StrategicError::ListOfLists {
                    path: path.to_string(),
                })
            }
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(StrategicError::MixedElementTypes {
                    path: path.to_string(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(kind)
}

/// A scalar's identity for sets and lookups (1 and 1.0 differ, as in the Go code).
pub(super) fn scalar_id(v: &Value) -> String {
    v.to_string()
}

/// How items of one list are identified: by the merge key's value for maps, by value for
/// scalars; hashed, so merging long lists stays linear.
pub(super) struct Ident {
    maps: bool,
    pub(super) key: String,
    pub(super) path: String,
}

impl Ident {
    pub(super) fn new(kind: Kind, key: &str, path: &str) -> Ident {
        Ident {
            maps: kind == Kind::Map,
            key: key.to_string(),
            path: path.to_string(),
        }
    }

    /// The identity of an item, which must be a map with the merge key when items are maps.
    pub(super) fn of(&self, item: &Value) -> Result<String> {
        if !self.maps {
            return Ok(scalar_id(item));
        }
        let Value::Object(m) = item else {
            return Err(StrategicError::WrongType {
                path: self.path.clone(),
                expected: "map",
                actual: type_name(item),
            });
        };
        m.get(&self.key)
            .map(scalar_id)
            .ok_or_else(|| StrategicError::NoMergeKey {
                path: self.path.clone(),
                key: self.key.clone(),
            })
    }

    pub(super) fn of_lenient(&self, item: &Value) -> Option<String> {
        self.of(item).ok()
    }

    pub(super) fn set(&self, items: &[Value]) -> Result<HashSet<String>> {
        items.iter().map(|i| self.of(i)).collect()
    }

    /// First position of each identity in `order`.
    pub(super) fn positions(&self, order: &[Value]) -> HashMap<String, usize> {
        let mut pos = HashMap::new();
        for (i, item) in order.iter().enumerate() {
            if let Some(id) = self.of_lenient(item) {
                pos.entry(id).or_insert(i);
            }
        }
        pos
    }

    /// Splits `merged` into items listed in `listed` and the others, keeping order.
    pub(super) fn partition(
        &self,
        merged: Vec<Value>,
        listed: &HashSet<String>,
    ) -> Result<(Vec<Value>, Vec<Value>)> {
        let mut inside = Vec::new();
        let mut outside = Vec::new();
        for item in merged {
            if listed.contains(&self.of(&item)?) {
                inside.push(item);
            } else {
                outside.push(item);
            }
        }
        Ok((inside, outside))
    }

    /// Stable sort of `items` by their first position in `order`; items not in it go last,
    /// and items marked `$patch: delete` after those.
    pub(super) fn sort_by(&self, items: Vec<Value>, order: &[Value]) -> Result<Vec<Value>> {
        if self.maps {
            for item in order.iter().chain(&items) {
                self.of(item)?;
            }
        }
        let pos = self.positions(order);
        let mut keyed: Vec<(usize, usize, Value)> = items
            .into_iter()
            .map(|item| {
                let deleting = item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete");
                let rank = if deleting { 1 } else { 0 };
                let at = self
                    .of_lenient(&item)
                    .and_then(|id| pos.get(&id).copied())
                    .unwrap_or(usize::MAX);
                (rank, at, item)
            })
            .collect();
        keyed.sort_by_key(|(rank, at, _)| (*rank, *at));
        Ok(keyed.into_iter().map(|(_, _, item)| item).collect())
    }
}
