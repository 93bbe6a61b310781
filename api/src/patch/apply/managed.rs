//! `metadata.managedFields`: one entry per manager and operation (an applier by its name, an
//! updater by its name and API version), each owning a field set, read from and written back
//! to an object, with the API server's cap on how many updaters it keeps.

use serde_json::{json, Value};

use super::fieldset::FieldSet;

/// How many `Update` entries an object keeps; older ones merge into [`ANCIENT`].
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager the oldest updaters' fields are merged into past the cap.
pub const ANCIENT: &str = "ancient-changes";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    /// Whether this entry is the one of `manager` doing `operation` at `api_version` (an
    /// applier's entry is its own whatever version it applied at).
    pub fn is(&self, manager: &str, operation: Operation, api_version: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.is_empty()
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    /// The manager as a conflict names it: `"name"`, and for an updater `"name" using
    /// apps/v1` (with the time when it has one).
    pub fn describe(&self) -> String {
        let name = format!("{:?}", self.manager);
        match self.operation {
            Operation::Apply => name,
            Operation::Update if self.time.is_empty() => {
                format!("{name} using {}", self.api_version)
            }
            Operation::Update => format!("{name} using {} at {}", self.api_version, self.time),
        }
    }
}

/// The entries of an object; entries that do not decode are dropped (the API server resets
/// managed fields it cannot read).
pub fn read(object: &Value) -> Vec<Entry> {
    let Some(Value::Array(items)) = object.pointer("/metadata/managedFields") else {
        return Vec::new();
    };
    items.iter().filter_map(read_entry).collect()
}

fn read_entry(v: &Value) -> Option<Entry> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let operation = match v.get("operation")?.as_str()? {
        "Apply" => Operation::Apply,
        "Update" => Operation::Update,
        _ => return None,
    };
    let fields = FieldSet::from_fields_v1(v.get("fieldsV1").unwrap_or(&json!({}))).ok()?;
    Some(Entry {
        manager: s("manager"),
        operation,
        api_version: s("apiVersion"),
        time: s("time"),
        subresource: s("subresource"),
        fields,
    })
}

/// Whether a request's managedFields asks for a reset: a list of one empty entry.
pub fn is_reset(object: &Value) -> bool {
    matches!(object.pointer("/metadata/managedFields"), Some(Value::Array(a))
        if a.len() == 1 && a[0].as_object().is_some_and(|o| o.is_empty()))
}

/// Whether the object carries any managedFields entry.
pub fn present(object: &Value) -> bool {
    matches!(object.pointer("/metadata/managedFields"), Some(Value::Array(a)) if !a.is_empty())
}

/// Writes `entries` (empty ones left out, updaters capped) into the object's metadata.
pub fn write(object: &mut Value, entries: Vec<Entry>) {
    let entries = cap(entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .collect());
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
        return;
    }
    let list = entries
        .iter()
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation.as_str(),
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": e.fields.to_fields_v1(),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    meta.insert("managedFields".into(), Value::Array(list));
}

/// Past [`MAX_UPDATE_MANAGERS`] updaters, the oldest ones' fields go to [`ANCIENT`].
fn cap(mut entries: Vec<Entry>) -> Vec<Entry> {
    let updaters = entries
        .iter()
        .filter(|e| e.operation == Operation::Update)
        .count();
    if updaters <= MAX_UPDATE_MANAGERS {
        return entries;
    }
    let mut by_age: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation == Operation::Update && entries[i].manager != ANCIENT)
        .collect();
    by_age.sort_by(|&a, &b| entries[a].time.cmp(&entries[b].time));
    let has_ancient = entries
        .iter()
        .any(|e| e.manager == ANCIENT && e.operation == Operation::Update);
    // Room for the ancient entry itself when it is new.
    let excess = updaters - MAX_UPDATE_MANAGERS + usize::from(!has_ancient);
    let oldest: Vec<usize> = by_age.into_iter().take(excess).collect();
    let mut ancient = entries
        .iter()
        .position(|e| e.manager == ANCIENT && e.operation == Operation::Update)
        .map(|i| entries.remove(i).fields)
        .unwrap_or_default();
    let mut time = String::new();
    let mut api_version = String::new();
    let mut kept = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        if oldest.contains(&i) {
            ancient.union(&e.fields);
            time = time.max(e.time);
            api_version = e.api_version;
        } else {
            kept.push(e);
        }
    }
    kept.push(Entry {
        manager: ANCIENT.into(),
        operation: Operation::Update,
        api_version,
        time,
        subresource: String::new(),
        fields: ancient,
    });
    kept
}
