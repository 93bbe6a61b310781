//! Field ownership on the registry's write path: a create or main update made for a field
//! manager records what it changed in `metadata.managedFields` (the rules are
//! `corral_api::patch::apply`'s); a write without one keeps the stored managers.

use corral_api::kinds::ResourceInfo;
use corral_api::object;
use corral_api::patch::apply::{self, managed, Writer};
use serde_json::Value;

/// The field manager a write is made for (the REST API's `fieldManager` parameter, or the
/// client's User-Agent), carried to the gRPC service as a request extension. gRPC clients
/// (controllers, the CLI) send none: their writes record no ownership, which keeps them free
/// of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldManager(pub String);

/// The time a managedFields entry records: now, RFC 3339 in seconds.
pub fn now() -> String {
    match serde_json::to_value(object::now()) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A new object as created for `manager`.
pub(super) fn created(info: &ResourceInfo, manager: Option<&str>, object: Value) -> Value {
    match manager {
        Some(m) => apply::update(&writer(info, m, &now()), None, object),
        None => object,
    }
}

/// An updated object: for a manager, with the fields it changed now its own; without one,
/// with the stored managers unless the request sent its own (the API server keeps them so
/// that clients unaware of managedFields do not wipe them, and resets them on `[{}]`).
pub(super) fn updated(
    info: &ResourceInfo,
    manager: Option<&str>,
    current: &Value,
    mut updated: Value,
) -> Value {
    if let Some(m) = manager {
        return apply::update(&writer(info, m, &now()), Some(current), updated);
    }
    if managed::is_reset(&updated) {
        if let Some(meta) = updated.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
    } else if !managed::present(&updated) {
        if let Some(mf) = current.pointer("/metadata/managedFields") {
            object::set_meta(&mut updated, "managedFields", mf.clone());
        }
    }
    updated
}

fn writer<'a>(info: &'a ResourceInfo, manager: &'a str, now: &'a str) -> Writer<'a> {
    Writer {
        kind: info,
        manager,
        now,
    }
}
