//! A minimal OpenAPI v3: the index (`/openapi/v3`) and one document per group-version naming
//! each kind's PATCH operation with its `fieldValidation` parameter. That is what kubectl
//! looks for to leave validation to the server (`?fieldValidation=Strict`, answered by the
//! registry's typed decoding); without it kubectl refuses to create or apply. No schemas yet
//! (so no `kubectl explain`).

use corral_api::kinds;
use serde_json::{json, Value};

/// The group-versions served, as the index spells them (`api/v1`, `apis/apps/v1`).
fn group_versions() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in kinds::ALL {
        let gv = if k.group.is_empty() {
            format!("api/{}", k.version)
        } else {
            format!("apis/{}/{}", k.group, k.version)
        };
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out
}

/// `/openapi/v3`.
pub fn index() -> Value {
    let paths: serde_json::Map<String, Value> = group_versions()
        .into_iter()
        .map(|gv| {
            let url = format!("/openapi/v3/{gv}?hash={}", env!("CARGO_PKG_VERSION"));
            (gv, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v3/<gv>` (`gv` as in the index), if served.
pub fn document(gv: &str) -> Option<Value> {
    if !group_versions().iter().any(|g| g == gv) {
        return None;
    }
    let mut paths = serde_json::Map::new();
    for k in kinds::ALL {
        let prefix = if k.group.is_empty() {
            format!("api/{}", k.version)
        } else {
            format!("apis/{}/{}", k.group, k.version)
        };
        if prefix != gv || k.is_virtual() {
            continue;
        }
        let scope = if k.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
        let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}});
        paths.insert(
            format!("/{prefix}{scope}/{}/{{name}}", k.plural),
            json!({"patch": {
                "operationId": format!("patch{}", k.kind),
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
                "responses": {"200": {"description": "OK"}},
            }}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Corral", "version": format!("v1.{}.0", super::discovery::KUBE_MINOR)},
        "paths": paths,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_points_at_one_document_per_group_version() {
        let idx = index();
        let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        assert!(idx["paths"]["api/v1"].is_object());
        assert!(document("apis/batch/v1").is_none());
    }

    #[test]
    fn each_kind_has_a_patch_operation_taking_field_validation() {
        let doc = document("apis/apps/v1").unwrap();
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/replicasets/{name}"]["patch"];
        assert_eq!(
            op["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "ReplicaSet"})
        );
        assert!(op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        let core = document("api/v1").unwrap();
        assert!(core["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
    }
}
