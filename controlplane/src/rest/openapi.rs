//! A minimal OpenAPI v3: the index (`/openapi/v3`) and one document per group-version naming
//! each kind's PATCH operation with its `fieldValidation` parameter. That is what kubectl
//! looks for to leave validation to the server (`?fieldValidation=Strict`, answered by the
//! registry's typed decoding); without it kubectl refuses to create or apply. No schemas yet
//! (so no `kubectl explain`). Older kubectl (v1.20) reads `/openapi/v2` instead, as protobuf:
//! an empty document (no definitions), so it validates nothing itself and computes patches
//! from its built-in types.

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

/// The content type `/openapi/v2` is answered with, as kube-apiserver does: clients ask for
/// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, but Go's media type parser
/// refuses that name in a response (client-go then fails with "mime: unexpected content").
pub const V2_PROTOBUF: &str = "application/octet-stream";

/// `/openapi/v2`: an `openapi_v2.Document` with `swagger`, `info` and empty `paths`, encoded
/// by hand (three fields do not need a protobuf code generator).
pub fn v2_document() -> Vec<u8> {
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        // Wire type 2 (length-delimited); every length here is below 128 (one varint byte).
        out.push(number << 3 | 2);
        out.push(u8::try_from(bytes.len()).expect("a short field"));
        out.extend_from_slice(bytes);
    }
    let version = format!("v1.{}.0", super::discovery::KUBE_MINOR);
    let mut info = Vec::new();
    field(&mut info, 1, b"Corral");
    field(&mut info, 2, version.as_bytes());
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    field(&mut doc, 8, &[]);
    doc
}

#[cfg(test)]
mod tests {
    #[test]
    fn v2_document_is_swagger_info_and_empty_paths() {
        let doc = v2_document();
        assert_eq!(&doc[..5], b"\x0a\x032.0");
        assert_eq!(doc[5], 2 << 3 | 2);
        assert_eq!(&doc[doc.len() - 2..], &[8 << 3 | 2, 0]);
        let info = &doc[7..7 + doc[6] as usize];
        assert_eq!(&info[..8], b"\x0a\x06Corral");
    }

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
