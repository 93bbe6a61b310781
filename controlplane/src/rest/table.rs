//! Server-side printing: `meta.k8s.io/v1` Table from the same printers `corral get` uses
//! (`corral_api::printers`), wide columns at priority 1. kubectl adds NAMESPACE (`-A`),
//! LABELS (`--show-labels`) and kind prefixes itself from each row's object metadata.

use corral_api::kinds::ResourceInfo;
use corral_api::printers::{self, PrintOptions};
use http::HeaderMap;
use jiff::Timestamp;
use serde_json::{json, Value};

/// Whether the client asked for a Table (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
        })
}

/// Column definitions: the plain columns, then the wide ones at priority 1.
pub fn columns(info: &ResourceInfo) -> Vec<Value> {
    let (plain, all) = headers(info);
    all.iter()
        .enumerate()
        .map(|(i, name)| {
            let format = if i == 0 && name == "NAME" { "name" } else { "" };
            json!({
                "name": name,
                "type": "string",
                "format": format,
                "description": "",
                "priority": if i < plain.len() { 0 } else { 1 },
            })
        })
        .collect()
}

/// Plain headers and all headers; a kind whose wide form is not plain + extras (events)
/// serves its plain columns only.
fn headers(info: &ResourceInfo) -> (Vec<String>, Vec<String>) {
    let mut opts = PrintOptions::new(Timestamp::UNIX_EPOCH);
    let plain = printers::headers(info, &opts);
    opts.wide = true;
    let all = printers::headers(info, &opts);
    if all.starts_with(&plain) {
        (plain, all)
    } else {
        (plain.clone(), plain)
    }
}

/// One row: the cells and the object's metadata as PartialObjectMetadata.
pub fn row(info: &ResourceInfo, obj: &Value, now: Timestamp) -> Value {
    let (plain, all) = headers(info);
    let mut opts = PrintOptions::new(now);
    opts.wide = all.len() > plain.len();
    let cells = printers::row(info, obj, &opts).unwrap_or_else(|_| {
        let mut c = vec![corral_api::object::name(obj).to_string()];
        c.resize(all.len(), "<unknown>".into());
        c
    });
    json!({
        "cells": cells,
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        },
    })
}

/// A Table of `objects`; `columns: false` leaves out the column definitions (watch events
/// after the first).
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    metadata: Value,
    with_columns: bool,
    now: Timestamp,
) -> Value {
    let rows: Vec<Value> = objects.iter().map(|o| row(info, o, now)).collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "rows": rows,
    });
    if with_columns {
        t["columnDefinitions"] = json!(columns(info));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::kinds;

    #[test]
    fn kubectl_accept_header_asks_for_a_table() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert!(wants_table(&h));
        h.insert(http::header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_table(&h));
        assert!(!wants_table(&HeaderMap::new()));
    }

    #[test]
    fn pod_columns_are_kubectls_with_wide_ones_at_priority_one() {
        let cols = columns(&kinds::PODS);
        let named: Vec<(&str, i64)> = cols
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["priority"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            named,
            vec![
                ("NAME", 0),
                ("READY", 0),
                ("STATUS", 0),
                ("RESTARTS", 0),
                ("AGE", 0),
                ("IP", 1),
                ("NODE", 1),
                ("NOMINATED NODE", 1),
                ("READINESS GATES", 1),
            ]
        );
        assert_eq!(cols[0]["format"], "name");
    }

    #[test]
    fn rows_carry_cells_and_object_metadata() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Pending"}});
        let now: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let t = table(
            &kinds::PODS,
            &[pod],
            json!({"resourceVersion": "7"}),
            true,
            now,
        );
        assert_eq!(t["kind"], "Table");
        let row = &t["rows"][0];
        assert_eq!(row["cells"][0], "web");
        assert_eq!(row["cells"][2], "Pending");
        assert_eq!(row["cells"][4], "5m");
        assert_eq!(row["cells"].as_array().unwrap().len(), 9);
        assert_eq!(row["object"]["metadata"]["labels"]["app"], "web");
        let events = table(&kinds::EVENTS, &[], json!({}), false, now);
        assert!(events.get("columnDefinitions").is_none());
    }
}
