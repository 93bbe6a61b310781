//! Kubernetes' strategic merge patch, applied as the API server applies it (apimachinery's
//! `StrategicMergeMapPatch`): maps merge, `null` deletes, lists with a merge key merge item by
//! item, lists of scalars with strategy merge are sets, other lists are replaced; directives
//! `$patch`, `$retainKeys`, `$setElementOrder/<f>`, `$deleteFromPrimitiveList/<f>`.
//!
//! Where the Go code would leave a directive or a `null` inside a value it takes whole (a new
//! list item, a new map), this one removes it, so the result decodes as a clean object; and a
//! map marked `$patch: replace` where the original has nothing is kept, not dropped.

mod order;
pub mod schema;

use super::MAX_WORK;
use crate::status::StatusReason;
use order::{element_kind, normalize_order, scalar_id, set_element_order, Ident, Kind};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// How a field's value merges (its `patchStrategy` tag, minus `retainKeys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// No tag: maps merge, lists are replaced.
    Default,
    /// `merge`: lists merge by the merge key, or as sets of scalars without one.
    Merge,
    /// `replace`: the patch's value replaces the original's.
    Replace,
}

/// What the schema says about one field of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldMeta<S> {
    /// The field's type (a list's element type).
    pub ty: S,
    pub strategy: Strategy,
    /// `patchMergeKey`; empty when none.
    pub merge_key: &'static str,
}

/// The merge keys and strategies of a tree of types.
pub trait Schema: Copy {
    fn field(self, name: &str) -> FieldMeta<Self>;
}

/// Why a strategic merge patch does not apply; `path` names the field (`spec.containers`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategicError {
    #[error("{path}: map does not contain declared merge key: {key}")]
    NoMergeKey { path: String, key: String },
    #[error("{path}: expected a {expected}, but received a {actual}")]
    WrongType {
        path: String,
        expected: &'static str,
        actual: &'static str,
    },
    #[error("{path}: unknown patch type: {directive}")]
    UnknownDirective { path: String, directive: String },
    #[error("{path}: merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList { path: String },
    #[error("{path}: invalid patch format of primitive list")]
    BadPrimitiveList { path: String },
    #[error("{path}: invalid patch format of retainKeys")]
    BadRetainKeys { path: String },
    #[error("{path}: invalid patch format of setElementOrder list")]
    BadSetElementOrder { path: String },
    #[error("{path}: the order in the patch list doesn't match the $setElementOrder list")]
    OrderMismatch { path: String },
    #[error("{path}: lists of lists are not supported")]
    ListOfLists { path: String },
    #[error("{path}: list element types are not identical")]
    MixedElementTypes { path: String },
    #[error("{path}: cannot merge lists without merge key")]
    NoMergeKeyForList { path: String },
    #[error("{path}: the patch needs more work than {max} list items merged; split it", max = MAX_WORK)]
    TooExpensive { path: String },
}

impl StrategicError {
    /// Kubernetes answers 400 for malformed directives and 422 for lists of lists; other
    /// errors it passes up as 500, which here are 400: the patch is at fault, not the server.
    pub fn reason(&self) -> StatusReason {
        match self {
            StrategicError::ListOfLists { .. } => StatusReason::Invalid,
            StrategicError::TooExpensive { .. } => StatusReason::RequestEntityTooLarge,
            _ => StatusReason::BadRequest,
        }
    }
}

type Result<T, E = StrategicError> = std::result::Result<T, E>;

/// What is left of [`MAX_WORK`] for one patch: every list merge costs its lengths, so a patch
/// merging into one long list again and again (one item per entry of another list) is stopped.
struct Work(usize);

impl Work {
    fn charge(&mut self, items: usize, path: &str) -> Result<()> {
        self.0 = self
            .0
            .checked_sub(items)
            .ok_or_else(|| StrategicError::TooExpensive { path: at(path) })?;
        Ok(())
    }
}

/// Applies a strategic merge patch to `original` (a JSON object; anything else counts as
/// `{}`) whose root type is `schema`.
pub fn apply<S: Schema>(schema: S, original: Value, patch: Map<String, Value>) -> Result<Value> {
    apply_within(schema, original, patch, MAX_WORK)
}

/// [`apply`] with a budget of `work` list items instead of [`MAX_WORK`].
pub(crate) fn apply_within<S: Schema>(
    schema: S,
    original: Value,
    patch: Map<String, Value>,
    work: usize,
) -> Result<Value> {
    let original = match original {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    merge_map(original, patch, schema, "", &mut Work(work)).map(Value::Object)
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_string()
    } else {
        path.to_string()
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// The part after `prefix/` of a directive key (`$setElementOrder/containers`).
fn field_of<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, rest) = key.split_once('/')?;
    (head == prefix).then_some(rest)
}

fn merge_map<S: Schema>(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: S,
    path: &str,
    work: &mut Work,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => Ok(clean_map(patch)),
            Some("delete") => Ok(Map::new()),
            _ => Err(StrategicError::UnknownDirective {
                path: at(path),
                directive: directive.to_string(),
            }),
        };
    }
    retain_keys(&mut original, &mut patch, path)?;
    set_element_order(&mut original, &mut patch, schema, path, work)?;

    // Deletions from primitive lists first, so a patch that deletes and adds one item in one
    // list ends with the item (the Go code depends on map iteration order here).
    let (deletions, rest): (Vec<_>, Vec<_>) = patch
        .into_iter()
        .partition(|(k, _)| k.starts_with(DELETE_FROM_PRIMITIVE_LIST));
    for (key, value) in deletions.into_iter().chain(rest) {
        let (key, delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let field = field_of(&key, DELETE_FROM_PRIMITIVE_LIST).ok_or_else(|| {
                StrategicError::BadPrimitiveList {
                    path: child(path, &key),
                }
            })?;
            (field.to_string(), true)
        } else {
            (key, false)
        };
        if value.is_null() {
            original.remove(&key);
            continue;
        }
        let Some(current) = original.remove(&key) else {
            if !delete_list {
                if let Some(v) = clean(value) {
                    original.insert(key, v);
                }
            }
            continue;
        };
        let field_path = child(path, &key);
        let merged = match (current, value) {
            (Value::Array(o), Value::Array(p)) => Value::Array(merge_list_field(
                o,
                p,
                schema.field(&key),
                delete_list,
                &field_path,
                work,
            )?),
            (current, _) if delete_list => current,
            (Value::Object(o), Value::Object(p)) => {
                let meta = schema.field(&key);
                if meta.strategy == Strategy::Replace {
                    Value::Object(clean_map(p))
                } else {
                    Value::Object(merge_map(o, p, meta.ty, &field_path, work)?)
                }
            }
            (_, value) => match clean(value) {
                Some(v) => v,
                None => continue,
            },
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// `$retainKeys`: keys of the original not in the list go; every key the patch sets must be
/// in the list.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    path: &str,
) -> Result<()> {
    let Some(list) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || StrategicError::BadRetainKeys {
        path: child(path, RETAIN_KEYS),
    };
    let Value::Array(list) = list else {
        return Err(bad());
    };
    let keep: HashSet<&str> = list.iter().filter_map(Value::as_str).collect();
    for (k, v) in patch.iter() {
        let directive =
            k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER);
        if !v.is_null() && !directive && !keep.contains(k.as_str()) {
            return Err(bad());
        }
    }
    original.retain(|k, _| keep.contains(k.as_str()));
    Ok(())
}

fn merge_list_field<S: Schema>(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: FieldMeta<S>,
    delete_list: bool,
    path: &str,
    work: &mut Work,
) -> Result<Vec<Value>> {
    if meta.strategy == Strategy::Merge || delete_list {
        merge_list(original, patch, meta, delete_list, path, work)
    } else {
        Ok(clean_list(patch))
    }
}

fn merge_list<S: Schema>(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: FieldMeta<S>,
    delete_list: bool,
    path: &str,
    work: &mut Work,
) -> Result<Vec<Value>> {
    work.charge(original.len() + patch.len(), path)?;
    let Some(kind) = element_kind(&original, &patch, path)? else {
        return Ok(original);
    };
    if kind != Kind::Map {
        let ident = Ident::new(kind, "", path);
        let patch_set = ident.set(&patch)?;
        if delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch_set.contains(&scalar_id(v)))
                .collect());
        }
        let mut seen = HashSet::new();
        let merged: Vec<Value> = original
            .iter()
            .chain(&patch)
            .filter(|v| seen.insert(scalar_id(v)))
            .cloned()
            .collect();
        let (patch_items, server_only) = ident.partition(merged, &patch_set)?;
        return normalize_order(patch_items, server_only, &patch, &original, &ident);
    }
    let key = meta.merge_key;
    if key.is_empty() {
        return Err(StrategicError::NoMergeKeyForList {
            path: path.to_string(),
        });
    }
    let ident = Ident::new(kind, key, path);
    let (original, patch) = special_items(original, patch, &ident)?;
    let merged = merge_items(original.clone(), patch.clone(), meta.ty, &ident, work)?;
    let patch_set = ident.set(&patch)?;
    let (patch_items, server_only) = ident.partition(merged, &patch_set)?;
    normalize_order(patch_items, server_only, &patch, &original, &ident)
}

/// Applies the list items that are directives: `{$patch: delete, <key>: v}` removes every
/// original item with that key, `{$patch: replace}` makes the rest of the patch list the list.
fn special_items(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    ident: &Ident,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut deleted = HashSet::new();
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                deleted.insert(ident.of(&item)?);
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(StrategicError::MergeDirectiveInList {
                    path: ident.path.clone(),
                })
            }
            _ => {
                return Err(StrategicError::UnknownDirective {
                    path: ident.path.clone(),
                    directive: directive.to_string(),
                })
            }
        }
    }
    if replace {
        return Ok((clean_list(plain), Vec::new()));
    }
    if !deleted.is_empty() {
        original.retain(|item| match ident.of_lenient(item) {
            Some(id) => !deleted.contains(&id),
            None => true,
        });
    }
    Ok((original, plain))
}

/// Merges each patch item into the original item with the same merge key, or appends it.
fn merge_items<S: Schema>(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    ty: S,
    ident: &Ident,
    work: &mut Work,
) -> Result<Vec<Value>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, item) in original.iter().enumerate() {
        if let Some(id) = ident.of_lenient(item) {
            index.entry(id).or_insert(i);
        }
    }
    for item in patch {
        let id = ident.of(&item)?;
        let Value::Object(item) = item else {
            continue; // ident.of accepts only maps
        };
        match index.get(&id) {
            Some(&i) => {
                let current = match std::mem::take(&mut original[i]) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                let item_path = format!("{}[{}={}]", ident.path, ident.key, id);
                original[i] = Value::Object(merge_map(current, item, ty, &item_path, work)?);
            }
            None => {
                if let Some(v) = clean(Value::Object(item)) {
                    index.insert(id, original.len());
                    original.push(v);
                }
            }
        }
    }
    Ok(original)
}

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(SET_ELEMENT_ORDER)
        || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// A patch value taken whole (nothing in the original to merge with), without its `null`
/// members and directives; `None` when the value is itself a directive to drop.
fn clean(value: Value) -> Option<Value> {
    match value {
        Value::Object(mut map) => {
            match map.remove(DIRECTIVE) {
                None => {}
                Some(Value::String(s)) if s == "replace" => {}
                Some(_) => return None,
            }
            Some(Value::Object(clean_map(map)))
        }
        Value::Array(items) => Some(Value::Array(clean_list(items))),
        other => Some(other),
    }
}

fn clean_map(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(k, v)| !is_directive_key(k) && !v.is_null())
        .filter_map(|(k, v)| clean(v).map(|v| (k, v)))
        .collect()
}

/// List items that are directives (`{$patch: ...}`) are dropped.
fn clean_list(items: Vec<Value>) -> Vec<Value> {
    items
        .into_iter()
        .filter(|item| item.get(DIRECTIVE).is_none())
        .filter_map(clean)
        .collect()
}

#[cfg(test)]
mod tests;
