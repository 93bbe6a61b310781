//! The `paths` of a group-version's OpenAPI v3 document: one entry per URL Corral serves for
//! each kind, with the operations (tagged with the kind's `x-kubernetes-group-version-kind` and
//! `x-kubernetes-action`, as kubectl finds a resource's kind by them) and their parameters. PATCH
//! takes `fieldValidation`, which is how kubectl decides to leave validation to the server.

use corral_api::kinds::ResourceInfo;
use serde_json::{json, Map, Value};

use super::schemas::{self, gvk, reference};

fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty}, "uniqueItems": true})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}, "uniqueItems": true})
}

const FIELD_VALIDATION: &str = "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.";

/// The query parameters of a write (create, update, patch).
fn write_params(patch: bool) -> Vec<Value> {
    let mut p = vec![
        query("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
        query("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes."),
        query("fieldValidation", "string", FIELD_VALIDATION),
    ];
    if patch {
        p.push(query("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people."));
    }
    p
}

fn list_params() -> Vec<Value> {
    [
        ("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        ("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        ("limit", "integer", "limit is a maximum number of responses to return for a list call."),
        ("continue", "string", "The continue option should be set when retrieving more results from the server."),
        ("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        ("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
        ("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
        ("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    ]
    .iter()
    .map(|(n, t, d)| query(n, t, d))
    .collect()
}

/// One operation: its id, action, kind, parameters, and body and answer schemas.
struct Op<'a> {
    id: String,
    action: &'static str,
    gvk: Value,
    params: Vec<Value>,
    body: Option<(&'a [&'a str], &'a str)>,
    answer: Option<&'a str>,
}

impl Op<'_> {
    fn value(self) -> Value {
        let ok = match self.answer {
            Some(name) => {
                json!({"description": "OK", "content": {"application/json": {"schema": reference(name)}}})
            }
            None => json!({"description": "OK"}),
        };
        let mut op = json!({
            "operationId": self.id,
            "x-kubernetes-action": self.action,
            "x-kubernetes-group-version-kind": self.gvk,
            "parameters": self.params,
            "responses": {"200": ok, "401": {"description": "Unauthorized"}},
        });
        if let Some((media, schema)) = self.body {
            let content: Map<String, Value> = media
                .iter()
                .map(|m| (m.to_string(), json!({"schema": reference(schema)})))
                .collect();
            op["requestBody"] = json!({"content": content, "required": true});
        }
        op
    }
}

const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];
const OBJECT_TYPES: &[&str] = &["*/*"];

/// The paths serving `info` (whose schema is the component `name`) under `prefix`
/// (`/api/v1`, `/apis/apps/v1`).
pub fn add(out: &mut Map<String, Value>, prefix: &str, info: &ResourceInfo, name: &str) {
    let scope = if info.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let collection = format!("{prefix}{scope}/{}", info.plural);
    let item = format!("{collection}/{{name}}");
    let kind = info.kind;
    let ns = if info.namespaced { "Namespaced" } else { "" };
    let mut scope_params = Vec::new();
    if info.namespaced {
        scope_params.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    let with = |mut base: Vec<Value>, more: Vec<Value>| {
        base.extend(more);
        base
    };
    let op = |id: String,
              action: &'static str,
              params: Vec<Value>,
              body: Option<(&[&str], &str)>,
              answer: Option<&str>| {
        Op {
            id,
            action,
            gvk: gvk(info),
            params,
            body,
            answer,
        }
        .value()
    };
    if info.is_virtual() {
        out.insert(
            collection,
            json!({"post": op(format!("create{kind}"), "post", write_params(false), Some((OBJECT_TYPES, name)), Some(name))}),
        );
        return;
    }
    out.insert(
        collection,
        json!({
            "get": op(format!("list{ns}{kind}"), "list", with(scope_params.clone(), list_params()), None, None),
            "post": op(format!("create{ns}{kind}"), "post", with(scope_params.clone(), write_params(false)), Some((OBJECT_TYPES, name)), Some(name)),
            "delete": op(format!("deletecollection{ns}{kind}"), "deletecollection", with(scope_params.clone(), list_params()), None, None),
        }),
    );
    let mut item_params = vec![path_param("name", &format!("name of the {kind}"))];
    item_params.extend(scope_params);
    let item_ops = |suffix: &str, answer: &str| {
        json!({
            "get": op(format!("read{ns}{kind}{suffix}"), "get", item_params.clone(), None, Some(answer)),
            "put": op(format!("replace{ns}{kind}{suffix}"), "put", with(item_params.clone(), write_params(false)), Some((OBJECT_TYPES, answer)), Some(answer)),
            "patch": op(format!("patch{ns}{kind}{suffix}"), "patch", with(item_params.clone(), write_params(true)), Some((PATCH_TYPES, schemas::PATCH)), Some(answer)),
        })
    };
    let mut ops = item_ops("", name);
    ops["delete"] = op(
        format!("delete{ns}{kind}"),
        "delete",
        item_params.clone(),
        None,
        None,
    );
    out.insert(item.clone(), ops);
    if info.has_status {
        out.insert(format!("{item}/status"), item_ops("Status", name));
    }
    if info.has_scale {
        let mut scale = item_ops("Scale", schemas::SCALE);
        for verb in ["get", "put", "patch"] {
            scale[verb]["x-kubernetes-group-version-kind"] =
                json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
        }
        out.insert(format!("{item}/scale"), scale);
    }
}
