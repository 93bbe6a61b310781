//! Server-side apply, pure: field ownership in `metadata.managedFields` (`managed.rs`), field
//! sets in `FieldsV1` form (`fieldset.rs`), typed walks (`walk.rs`). [`apply`] merges an
//! applied configuration into the live object for one manager, with conflicts against the
//! others; [`update`] records what a create, update or patch changed for its writer.

pub mod csa;
pub mod fieldset;
pub mod managed;
pub mod walk;

use serde_json::Value;

use crate::kinds::ResourceInfo;
use crate::patch::strategic::schema::Ty;
use crate::status::{ApiStatus, CauseType, StatusCause, StatusDetails, StatusReason};
use fieldset::FieldSet;
use managed::{Entry, Operation};
use walk::Node;

/// Who writes, and when.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub kind: &'a ResourceInfo,
    pub manager: &'a str,
    /// RFC 3339, seconds (`2026-12-06T18:00:00Z`).
    pub now: &'a str,
}

impl Writer<'_> {
    fn api_version(&self) -> String {
        if self.kind.group.is_empty() {
            self.kind.version.to_string()
        } else {
            format!("{}/{}", self.kind.group, self.kind.version)
        }
    }

    fn node(&self) -> Node {
        Node::root(Ty::of_kind(self.kind))
    }
}

/// A field another manager owns that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager as the API server prints it (`"kubectl-edit" using apps/v1 at ...`).
    pub manager: String,
    /// The path as the API server prints it (`.spec.replicas`).
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsSet,
    #[error("the applied configuration is nested deeper than {max} levels", max = crate::patch::MAX_DEPTH)]
    TooDeep,
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
}

impl ApplyError {
    /// The Status the API server answers with: 400, or 409 with one `FieldManagerConflict`
    /// cause per field (kubectl prints the message and its advice on how to resolve it).
    pub fn status(&self) -> ApiStatus {
        match self {
            ApplyError::ManagedFieldsSet | ApplyError::TooDeep => {
                ApiStatus::new(StatusReason::BadRequest, self.to_string())
            }
            ApplyError::Conflicts(cs) => ApiStatus::new(StatusReason::Conflict, self.to_string())
                .with_details(StatusDetails {
                    causes: cs
                        .iter()
                        .map(|c| StatusCause {
                            kind: CauseType::FieldManagerConflict,
                            message: format!("conflict with {}", c.manager),
                            field: c.path.clone(),
                        })
                        .collect(),
                    ..Default::default()
                }),
        }
    }
}

/// The API server's words: one conflict on one line, several grouped by manager.
fn conflict_message(cs: &[Conflict]) -> String {
    if let [c] = cs {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager, c.path
        );
    }
    let mut managers: Vec<&str> = cs.iter().map(|c| c.manager.as_str()).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in cs.iter().filter(|c| c.manager == m) {
            lines.push(format!("- {}", c.path));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        cs.len(),
        lines.join("\n")
    )
}

/// `config` applied by `w.manager` over `live` (`None`: the object is created): the object to
/// write, with its managedFields. Fields others own with another value conflict unless
/// `force`, which takes them over; fields this manager applied before and no longer applies
/// are removed unless someone else owns them. For `kubectl`, client-side apply's annotation
/// counts too (`csa.rs`).
pub fn apply(
    w: &Writer<'_>,
    live: Option<&Value>,
    config: &Value,
    force: bool,
) -> Result<Value, ApplyError> {
    if config.pointer("/metadata/managedFields").is_some() {
        return Err(ApplyError::ManagedFieldsSet);
    }
    // The walks recurse; live objects are validated, a configuration is bounded here.
    if crate::patch::depth(config) > crate::patch::MAX_DEPTH {
        return Err(ApplyError::TooDeep);
    }
    let empty = Value::Object(Default::default());
    let live = live.unwrap_or(&empty);
    let node = w.node();
    let mut entries = managed::read(live);
    let mine = |e: &Entry| e.is(w.manager, Operation::Apply, "");
    let last = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut set = FieldSet::default();
    walk::set_of(node, config, &mut set);
    set.remove_subtrees(&stripped(w.kind));
    set.normalize();
    entries.retain(|e| !mine(e));
    entries.push(Entry {
        manager: w.manager.to_string(),
        operation: Operation::Apply,
        api_version: w.api_version(),
        time: w.now.to_string(),
        subresource: String::new(),
        fields: set.clone(),
    });

    let mut merged = walk::merge(node, live, config);
    let mut owned = FieldSet::default();
    for e in &entries {
        owned.union(&e.fields);
    }
    walk::prune(node, &mut merged, &last.difference(&set), Some(&owned));

    let (changed, removed) = changes(w, live, &merged);
    let mut conflicts = Vec::new();
    let mut conflicting = FieldSet::default();
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        let theirs = e.fields.intersection(&changed);
        for p in theirs.paths() {
            conflicts.push(Conflict {
                manager: e.describe(),
                path: fieldset::display(&p),
            });
        }
        conflicting.union(&theirs);
        e.fields = e.fields.difference(&theirs);
        e.fields.remove_subtrees(&removed);
    }
    let upgrading = w.manager == csa::KUBECTL
        && csa::forgiven(node, live).is_some_and(|ok| conflicting.difference(&ok).is_empty());
    if !conflicts.is_empty() && !force && !upgrading {
        return Err(ApplyError::Conflicts(conflicts));
    }
    if w.manager == csa::KUBECTL {
        csa::refresh_annotation(live, &mut merged, config);
    }
    managed::write(&mut merged, entries);
    Ok(merged)
}

/// `new` as written by `w.manager` over `old` (`None` on create), with its managedFields:
/// the fields the write added or changed become the writer's (`Update`) and leave every other
/// manager; removed fields leave everyone. The managedFields of `new` are kept when it has
/// some (a client may set them), else `old`'s; a list of one empty entry resets them.
pub fn update(w: &Writer<'_>, old: Option<&Value>, new: Value) -> Value {
    let mut new = new;
    let mut entries = if managed::is_reset(&new) {
        Vec::new()
    } else if managed::present(&new) {
        managed::read(&new)
    } else {
        old.map(managed::read).unwrap_or_default()
    };
    let empty = Value::Object(Default::default());
    let (changed, removed) = changes(w, old.unwrap_or(&empty), &new);
    let api_version = w.api_version();
    let mine = |e: &Entry| e.is(w.manager, Operation::Update, &api_version);
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        e.fields = e.fields.difference(&changed);
        e.fields.remove_subtrees(&removed);
    }
    if !changed.is_empty() || !removed.is_empty() {
        let mut fields = entries
            .iter()
            .position(mine)
            .map(|i| entries.remove(i).fields)
            .unwrap_or_default();
        fields.remove_subtrees(&removed);
        fields.union(&changed);
        entries.push(Entry {
            manager: w.manager.to_string(),
            operation: Operation::Update,
            api_version,
            time: w.now.to_string(),
            subresource: String::new(),
            fields,
        });
    }
    managed::write(&mut new, entries);
    new
}

/// What changed from `old` to `new`, without the fields nobody owns (type and identity
/// metadata, managedFields, and status where the kind has a status subresource).
fn changes(w: &Writer<'_>, old: &Value, new: &Value) -> (FieldSet, FieldSet) {
    let (mut changed, mut removed) = (FieldSet::default(), FieldSet::default());
    walk::compare(w.node(), Some(old), Some(new), &mut changed, &mut removed);
    let strip = stripped(w.kind);
    for set in [&mut changed, &mut removed] {
        set.remove_subtrees(&strip);
        set.normalize();
    }
    (changed, removed)
}

/// The paths no manager owns (the API server's stripped metadata and reset fields).
fn stripped(kind: &ResourceInfo) -> FieldSet {
    let mut s = FieldSet::default();
    for p in [
        &["f:apiVersion"][..],
        &["f:kind"],
        &["f:metadata", "f:name"],
        &["f:metadata", "f:namespace"],
        &["f:metadata", "f:uid"],
        &["f:metadata", "f:resourceVersion"],
        &["f:metadata", "f:generation"],
        &["f:metadata", "f:creationTimestamp"],
        &["f:metadata", "f:selfLink"],
        &["f:metadata", "f:managedFields"],
        &["f:metadata", "f:deletionTimestamp"],
        &["f:metadata", "f:deletionGracePeriodSeconds"],
    ] {
        s.insert(p);
    }
    if kind.has_status {
        s.insert(&["f:status"]);
    }
    s
}

#[cfg(test)]
mod tests;
