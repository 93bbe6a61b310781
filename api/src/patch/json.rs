//! RFC 6902 JSON patch (add, remove, replace, move, copy, test over RFC 6901 pointers), with
//! the API server's behaviours and words (evanphx/json-patch v4): negative array indices count
//! from the end, at most 10,000 operations, copies bounded in total size, results bounded in depth.

use super::{depth, measure, PatchError, MAX_DEPTH, MAX_OPERATIONS, MAX_WORK};
use crate::rules::limits::MAX_REQUEST_BODY;
use crate::status::StatusReason;
use serde_json::{Map, Value};

/// The most bytes (as JSON) all `copy` operations of one patch may add: a few operations
/// copying the document into itself would otherwise double it each time.
pub const MAX_COPIED_BYTES: usize = MAX_REQUEST_BODY;

/// Why one operation of a JSON patch failed; the API server answers 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPatchError {
    #[error("Unexpected kind: {op}")]
    UnknownOp { op: String },
    #[error("{op} operation, missing {field} field: missing value")]
    MissingField {
        op: &'static str,
        field: &'static str,
    },
    #[error("{op} operation: invalid JSON pointer {pointer:?}: {why}")]
    BadPointer {
        op: &'static str,
        pointer: String,
        why: &'static str,
    },
    #[error("{op} operation does not apply: doc is missing path: \"{path}\": missing value")]
    MissingPath { op: &'static str, path: String },
    #[error("{op} operation does not apply: doc is missing from path: {from}: missing value")]
    MissingFrom { op: &'static str, from: String },
    #[error("error in remove for path: '{path}': Unable to remove nonexistent key: {key}: missing value")]
    RemoveMissingKey { path: String, key: String },
    #[error("{op} operation does not apply: doc is missing key: {path}: missing value")]
    MissingKey { op: &'static str, path: String },
    #[error("error in {op} for path: '{path}': Unable to access invalid index: {index}: invalid index referenced")]
    InvalidIndex {
        op: &'static str,
        path: String,
        index: String,
    },
    #[error("testing value {path} failed: test failed")]
    TestFailed { path: String },
    #[error("move operation does not apply: from {from:?} is a parent of path {path:?}")]
    MoveIntoChild { from: String, path: String },
    #[error("Unable to complete the copy, the accumulated size increase of copy is {size}, exceeding the limit {limit}")]
    CopyTooLarge { size: usize, limit: usize },
    #[error("{op} operation: the value at {path:?} would be nested deeper than {max} levels", max = MAX_DEPTH)]
    TooDeep { op: &'static str, path: String },
    #[error("{op} operation at {path:?}: the patch needs more work than {max} values shifted or visited; split it", max = MAX_WORK)]
    TooExpensive { op: &'static str, path: String },
}

impl JsonPatchError {
    pub fn reason(&self) -> StatusReason {
        match self {
            JsonPatchError::TooExpensive { .. } => StatusReason::RequestEntityTooLarge,
            _ => StatusReason::Invalid,
        }
    }
}

type Result<T, E = JsonPatchError> = std::result::Result<T, E>;

/// Applies the JSON patch `body` (an array of operations) to `original`.
pub fn apply(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let ops = match super::decode(body, "patch")? {
        Value::Array(ops) => ops,
        _ => {
            return Err(PatchError::NotAnOperationList(
                "the body must be a JSON array of operations",
            ))
        }
    };
    if ops.len() > MAX_OPERATIONS {
        return Err(PatchError::TooManyOperations { count: ops.len() });
    }
    let mut doc = original.clone();
    let mut copied = 0usize;
    let mut work = Work(MAX_WORK);
    for op in ops {
        let Value::Object(op) = op else {
            return Err(PatchError::NotAnOperationList(
                "each operation must be a JSON object",
            ));
        };
        apply_op(&mut doc, op, &mut copied, &mut work)?;
    }
    Ok(doc)
}

/// What is left of [`MAX_WORK`] for one patch.
struct Work(usize);

impl Work {
    fn charge(&mut self, n: usize, op: &'static str, path: &str) -> Result<()> {
        self.0 = self
            .0
            .checked_sub(n)
            .ok_or_else(|| JsonPatchError::TooExpensive {
                op,
                path: path.to_string(),
            })?;
        Ok(())
    }
}

fn apply_op(
    doc: &mut Value,
    mut op: Map<String, Value>,
    copied: &mut usize,
    work: &mut Work,
) -> Result<()> {
    let kind = match op.get("op").and_then(Value::as_str) {
        Some("add") => "add",
        Some("remove") => "remove",
        Some("replace") => "replace",
        Some("move") => "move",
        Some("copy") => "copy",
        Some("test") => "test",
        Some(other) => {
            return Err(JsonPatchError::UnknownOp {
                op: other.to_string(),
            })
        }
        None => {
            return Err(JsonPatchError::UnknownOp {
                op: "unknown".into(),
            })
        }
    };
    let path = string_field(&op, kind, "path")?;
    let segments = parse_pointer(kind, &path)?;
    match kind {
        "add" => {
            let value = value_field(&mut op, kind)?;
            check_depth(kind, &path, &segments, &value)?;
            add(doc, kind, &path, &segments, value, work)
        }
        "remove" => remove(doc, kind, &path, &segments, work).map(drop),
        "replace" => {
            let value = value_field(&mut op, kind)?;
            check_depth(kind, &path, &segments, &value)?;
            replace(doc, &path, &segments, value)
        }
        "move" => {
            let from = string_field(&op, kind, "from")?;
            let from_segments = parse_pointer(kind, &from)?;
            if from == path {
                return Ok(());
            }
            if segments.len() > from_segments.len() && segments.starts_with(&from_segments) {
                return Err(JsonPatchError::MoveIntoChild { from, path });
            }
            if from_segments.is_empty() || get(doc, &from_segments).is_none() {
                return Err(JsonPatchError::MissingFrom { op: kind, from });
            }
            let value = remove(doc, kind, &from, &from_segments, work)?;
            // Moving a value no deeper than it was cannot deepen the document.
            if segments.len() > from_segments.len() {
                let (levels, nodes) = measure(&value);
                work.charge(nodes, kind, &path)?;
                if segments.len() + levels > MAX_DEPTH {
                    return Err(JsonPatchError::TooDeep { op: kind, path });
                }
            }
            add(doc, kind, &path, &segments, value, work)
        }
        "copy" => {
            let from = string_field(&op, kind, "from")?;
            let from_segments = parse_pointer(kind, &from)?;
            let value = get(doc, &from_segments)
                .ok_or_else(|| JsonPatchError::MissingFrom {
                    op: kind,
                    from: from.clone(),
                })?
                .clone();
            check_depth(kind, &path, &segments, &value)?;
            *copied = copied.saturating_add(json_size(&value));
            if *copied > MAX_COPIED_BYTES {
                return Err(JsonPatchError::CopyTooLarge {
                    size: *copied,
                    limit: MAX_COPIED_BYTES,
                });
            }
            add(doc, kind, &path, &segments, value, work)
        }
        _ => {
            let value = value_field(&mut op, kind)?;
            match get(doc, &segments) {
                Some(actual) if json_equal(actual, &value) => Ok(()),
                _ => Err(JsonPatchError::TestFailed { path }),
            }
        }
    }
}

fn string_field(
    op: &Map<String, Value>,
    kind: &'static str,
    field: &'static str,
) -> Result<String> {
    match op.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(JsonPatchError::MissingField { op: kind, field }),
    }
}

fn value_field(op: &mut Map<String, Value>, kind: &'static str) -> Result<Value> {
    op.remove("value").ok_or(JsonPatchError::MissingField {
        op: kind,
        field: "value",
    })
}

/// Splits an RFC 6901 pointer into unescaped reference tokens (`~1` is `/`, `~0` is `~`).
fn parse_pointer(op: &'static str, pointer: &str) -> Result<Vec<String>> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(JsonPatchError::BadPointer {
            op,
            pointer: pointer.to_string(),
            why: "a pointer is empty or starts with /",
        });
    };
    let bad = |why| JsonPatchError::BadPointer {
        op,
        pointer: pointer.to_string(),
        why,
    };
    let mut segments = Vec::new();
    for raw in rest.split('/') {
        if segments.len() >= MAX_DEPTH {
            return Err(bad("more than 100 reference tokens"));
        }
        let mut token = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '~' {
                token.push(c);
                continue;
            }
            match chars.next() {
                Some('0') => token.push('~'),
                Some('1') => token.push('/'),
                _ => return Err(bad("~ must be followed by 0 or 1")),
            }
        }
        segments.push(token);
    }
    Ok(segments)
}

/// An array index as the API server reads it: decimal, negative counting from the end.
/// `end` is one past the last index the operation may use.
fn array_index(token: &str, end: usize) -> Option<usize> {
    let (negative, digits) = match token.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, token),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: usize = digits.parse().ok()?;
    let index = if negative { end.checked_sub(n)? } else { n };
    (index < end).then_some(index)
}

fn get<'a>(doc: &'a Value, segments: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for s in segments {
        cur = match cur {
            Value::Object(map) => map.get(s)?,
            Value::Array(items) => items.get(array_index(s, items.len())?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn get_mut<'a>(doc: &'a mut Value, segments: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for s in segments {
        cur = match cur {
            Value::Object(map) => map.get_mut(s)?,
            Value::Array(items) => {
                let i = array_index(s, items.len())?;
                items.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

fn add(
    doc: &mut Value,
    op: &'static str,
    path: &str,
    segments: &[String],
    value: Value,
    work: &mut Work,
) -> Result<()> {
    let Some((last, parents)) = segments.split_last() else {
        *doc = value;
        return Ok(());
    };
    let missing = || JsonPatchError::MissingPath {
        op,
        path: path.to_string(),
    };
    match get_mut(doc, parents).ok_or_else(missing)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                Some(items.len())
            } else {
                array_index(last, items.len() + 1)
            };
            let index = index.ok_or_else(|| JsonPatchError::InvalidIndex {
                op,
                path: path.to_string(),
                index: last.clone(),
            })?;
            work.charge(items.len() - index, op, path)?;
            items.insert(index, value);
            Ok(())
        }
        _ => Err(missing()),
    }
}

fn remove(
    doc: &mut Value,
    op: &'static str,
    path: &str,
    segments: &[String],
    work: &mut Work,
) -> Result<Value> {
    let missing = || JsonPatchError::MissingPath {
        op,
        path: path.to_string(),
    };
    let (last, parents) = segments.split_last().ok_or_else(missing)?;
    match get_mut(doc, parents).ok_or_else(missing)? {
        Value::Object(map) => map
            .remove(last)
            .ok_or_else(|| JsonPatchError::RemoveMissingKey {
                path: path.to_string(),
                key: last.clone(),
            }),
        Value::Array(items) => {
            let index =
                array_index(last, items.len()).ok_or_else(|| JsonPatchError::InvalidIndex {
                    op,
                    path: path.to_string(),
                    index: last.clone(),
                })?;
            work.charge(items.len() - index, op, path)?;
            Ok(items.remove(index))
        }
        _ => Err(missing()),
    }
}

fn replace(doc: &mut Value, path: &str, segments: &[String], value: Value) -> Result<()> {
    let Some((last, parents)) = segments.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = get_mut(doc, parents).ok_or_else(|| JsonPatchError::MissingPath {
        op: "replace",
        path: path.to_string(),
    })?;
    let slot = match parent {
        Value::Object(map) => map.get_mut(last),
        Value::Array(items) => match array_index(last, items.len()) {
            Some(i) => items.get_mut(i),
            None => None,
        },
        _ => None,
    };
    let slot = slot.ok_or_else(|| JsonPatchError::MissingKey {
        op: "replace",
        path: path.to_string(),
    })?;
    *slot = value;
    Ok(())
}

fn check_depth(op: &'static str, path: &str, segments: &[String], value: &Value) -> Result<()> {
    if segments.len() + depth(value) > MAX_DEPTH {
        return Err(JsonPatchError::TooDeep {
            op,
            path: path.to_string(),
        });
    }
    Ok(())
}

/// The size of a value written as compact JSON, without building the text.
fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a Value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// RFC 6902's equality for `test`: numbers are equal by value (1 and 1.0), objects regardless
/// of member order, arrays element by element.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    let mut stack = vec![(a, b)];
    while let Some((a, b)) = stack.pop() {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let same =
                    x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q);
                if !same {
                    return false;
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    return false;
                }
                stack.extend(x.iter().zip(y));
            }
            (Value::Object(x), Value::Object(y)) => {
                if x.len() != y.len() {
                    return false;
                }
                for (k, v) in x {
                    match y.get(k) {
                        Some(w) => stack.push((v, w)),
                        None => return false,
                    }
                }
            }
            _ => {
                if a != b {
                    return false;
                }
            }
        }
    }
    true
}
