use serde_json::{json, Value};

use super::*;

fn doc(gv: &str) -> Value {
    serde_json::from_slice(&documents().by_gv[gv].json).unwrap()
}

/// Follows a `$ref` (directly or as the one entry of `allOf`) to its component schema.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let r = schema
        .get("$ref")
        .or_else(|| schema.pointer("/allOf/0/$ref"))
        .and_then(Value::as_str);
    match r {
        Some(r) => {
            let name = r
                .strip_prefix(schemas::PREFIX)
                .expect("a component reference");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// The schema of a dotted field path below a component, through references and list items.
fn field<'a>(doc: &'a Value, component: &str, path: &str) -> &'a Value {
    let mut cur = &doc["components"]["schemas"][component];
    for name in path.split('.') {
        let mut s = resolve(doc, cur);
        if let Some(items) = s.get("items") {
            s = resolve(doc, items);
        }
        cur = &s["properties"][name];
        assert!(cur.is_object(), "{component}: no field {name} in {path}");
    }
    cur
}

#[test]
fn the_v2_document_holds_every_kind_tagged_and_references_as_definitions() {
    use prost::Message;
    let doc = v2::Document::decode(v2::document()).unwrap();
    assert_eq!(doc.swagger, "2.0");
    let patch = doc
        .paths
        .unwrap()
        .path
        .into_iter()
        .find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        .and_then(|p| p.value?.patch)
        .unwrap();
    assert_eq!(
        patch.vendor_extension[0].value.as_ref().unwrap().yaml,
        "group: apps\nkind: Deployment\nversion: v1\n"
    );
    assert!(patch.parameters.iter().any(|p| p
        .parameter
        .as_ref()
        .and_then(|p| p
            .non_body_parameter
            .as_ref()?
            .query_parameter_sub_schema
            .as_ref())
        .is_some_and(|q| q.name == "dryRun")));
    let defs = doc.definitions.unwrap().additional_properties;
    let find = |name: &str| {
        defs.iter()
            .find(|d| d.name == name)
            .and_then(|d| d.value.clone())
            .unwrap_or_else(|| panic!("no definition {name}"))
    };
    let deploy = find("io.k8s.api.apps.v1.Deployment");
    let gvk = deploy
        .vendor_extension
        .iter()
        .find(|x| x.name == "x-kubernetes-group-version-kind")
        .unwrap();
    assert_eq!(
        gvk.value.as_ref().unwrap().yaml,
        "- group: apps\n  kind: Deployment\n  version: v1\n"
    );
    let spec = deploy
        .properties
        .unwrap()
        .additional_properties
        .into_iter()
        .find(|p| p.name == "spec")
        .unwrap()
        .value
        .unwrap();
    assert_eq!(
        spec.r#ref,
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert!(spec
        .description
        .starts_with("Specification of the desired behavior"));
    let quantity = find(schemas::QUANTITY);
    assert_eq!(quantity.r#type.unwrap().value, ["string"]);
    for k in kinds::ALL {
        assert!(defs.iter().any(|d| d.value.as_ref().is_some_and(|s| s
            .vendor_extension
            .iter()
            .any(|x| x.name == "x-kubernetes-group-version-kind"
                && x.value
                    .as_ref()
                    .unwrap()
                    .yaml
                    .contains(&format!("kind: {}\n", k.kind))))));
    }
}

#[test]
fn index_points_at_one_document_per_group_version_by_its_hash() {
    let docs = documents();
    let idx: Value = serde_json::from_slice(&docs.index).unwrap();
    let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    let hash = &docs.by_gv["apis/apps/v1"].hash;
    assert_eq!(url, format!("/openapi/v3/apis/apps/v1?hash={hash}"));
    assert_eq!(hash.len(), 128);
    assert!(idx["paths"]["api/v1"].is_object());
    assert!(!docs.by_gv.contains_key("apis/batch/v1"));
}

#[test]
fn a_deployment_schema_resolves_the_pod_template_containers_with_descriptions() {
    let apps = doc("apis/apps/v1");
    let containers = field(
        &apps,
        "io.k8s.api.apps.v1.Deployment",
        "spec.template.spec.containers",
    );
    assert_eq!(containers["type"], "array");
    assert!(containers["description"]
        .as_str()
        .unwrap()
        .starts_with("List of containers belonging to the pod."));
    let image = field(
        &apps,
        "io.k8s.api.apps.v1.Deployment",
        "spec.template.spec.containers.image",
    );
    assert_eq!(image["type"], "string");
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    // A reference with a description is `allOf: [$ref]` (OpenAPI 3.0 ignores `$ref` siblings).
    let template = field(&apps, "io.k8s.api.apps.v1.Deployment", "spec.template");
    assert!(template["description"].is_string());
    assert_eq!(
        template["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec"
    );
    // Every reference resolves inside the document.
    let text = serde_json::to_string(&apps).unwrap();
    for r in text.split("\"$ref\":\"").skip(1) {
        let name = r.split('"').next().unwrap();
        let name = name.strip_prefix(schemas::PREFIX).unwrap();
        assert!(
            apps["components"]["schemas"][name].is_object(),
            "dangling {name}"
        );
    }
}

#[test]
fn every_served_kind_has_a_schema_tagged_with_its_group_version_kind() {
    for k in kinds::ALL {
        let d = doc(&group_version(k));
        let tagged = d["components"]["schemas"]
            .as_object()
            .unwrap()
            .values()
            .filter(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|l| l.contains(&schemas::gvk(k)))
            })
            .count();
        assert_eq!(tagged, 1, "{}", k.kind);
        let required = d.pointer("/components/schemas/io.k8s.api.apps.v1.Deployment/required");
        assert!(!required.is_some_and(|r| r.to_string().contains("metadata")));
    }
}

#[test]
fn each_kind_has_a_patch_operation_taking_field_validation() {
    for k in kinds::ALL.iter().filter(|k| !k.is_virtual()) {
        let d = doc(&group_version(k));
        let scope = if k.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let path = format!("/{}{scope}/{}/{{name}}", group_version(k), k.plural);
        let op = &d["paths"][&path]["patch"];
        assert_eq!(
            op["x-kubernetes-group-version-kind"],
            schemas::gvk(k),
            "{path}"
        );
        assert!(
            op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation"),
            "{path}"
        );
    }
}

#[test]
fn quantities_int_or_strings_and_times_are_spelled_as_kubernetes_does() {
    let core = doc("api/v1");
    let s = &core["components"]["schemas"];
    assert_eq!(
        s[schemas::QUANTITY]["oneOf"],
        json!([{"type": "string"}, {"type": "number"}])
    );
    assert_eq!(s[schemas::INT_OR_STRING]["format"], "int-or-string");
    assert_eq!(
        s[schemas::INT_OR_STRING]["x-kubernetes-int-or-string"],
        true
    );
    let time = &s["io.k8s.apimachinery.pkg.apis.meta.v1.Time"];
    assert_eq!(
        (&time["type"], &time["format"]),
        (&json!("string"), &json!("date-time"))
    );
}

#[test]
fn documents_are_served_cacheable_only_under_their_current_hash() {
    let hash = documents().by_gv["api/v1"].hash.clone();
    let cached = serve_document("api/v1", Some(&hash)).unwrap();
    assert_eq!(cached.headers()[header::CACHE_CONTROL], "public, immutable");
    let stale = serve_document("api/v1", Some("0")).unwrap();
    assert_eq!(stale.headers()[header::CACHE_CONTROL], "no-cache, private");
    assert!(serve_document("apis/batch/v1", None).is_none());
}
