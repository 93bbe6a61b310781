//! Component schemas of an OpenAPI v3 document, generated from k8s-openapi's `JsonSchema`
//! impls (Kubernetes' types and descriptions, the schema the registry validates with) and
//! made into what kube-apiserver serves: `#/components/schemas/io.k8s...` references (a
//! reference with a description becomes `allOf: [$ref]`), `x-kubernetes-group-version-kind`
//! on each kind, Quantity and IntOrString as Kubernetes spells them, merge keys and strategies
//! from the strategic merge patch's table.

use corral_api::kinds::ResourceInfo;
use corral_api::patch::strategic::schema::Ty;
use corral_api::patch::strategic::{Schema, Strategy};
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::JsonSchema;
use serde_json::{json, Map, Value};

/// Where component schemas live; every `$ref` points here.
pub const PREFIX: &str = "#/components/schemas/";

/// The name of the PATCH body's schema (an object of any shape).
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
pub const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";

/// The component name of the Scale subresource's type.
pub const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// Adds the schema of a kind's type, and of every type it reaches, to `generator`; returns its
/// component name, or `None` for a kind with no type here (a test keeps this table complete).
pub fn add_kind(generator: &mut SchemaGenerator, info: &ResourceInfo) -> Option<String> {
    use k8s_openapi::api::{
        apps::v1 as apps, authorization::v1 as authz, coordination::v1 as coord, core::v1 as core,
        networking::v1 as net, rbac::v1 as rbac,
    };
    fn add<T: JsonSchema>(g: &mut SchemaGenerator) -> Option<String> {
        g.subschema_for::<T>();
        Some(T::schema_name().into_owned())
    }
    let g = generator;
    match info.plural {
        "namespaces" => add::<core::Namespace>(g),
        "nodes" => add::<core::Node>(g),
        "pods" => add::<core::Pod>(g),
        "services" => add::<core::Service>(g),
        "endpoints" => add::<core::Endpoints>(g),
        "persistentvolumeclaims" => add::<core::PersistentVolumeClaim>(g),
        "persistentvolumes" => add::<core::PersistentVolume>(g),
        "events" => add::<core::Event>(g),
        "configmaps" => add::<core::ConfigMap>(g),
        "secrets" => add::<core::Secret>(g),
        "replicasets" => add::<apps::ReplicaSet>(g),
        "deployments" => add::<apps::Deployment>(g),
        "daemonsets" => add::<apps::DaemonSet>(g),
        "statefulsets" => add::<apps::StatefulSet>(g),
        "controllerrevisions" => add::<apps::ControllerRevision>(g),
        "ingresses" => add::<net::Ingress>(g),
        "ingressclasses" => add::<net::IngressClass>(g),
        "leases" => add::<coord::Lease>(g),
        "roles" => add::<rbac::Role>(g),
        "clusterroles" => add::<rbac::ClusterRole>(g),
        "rolebindings" => add::<rbac::RoleBinding>(g),
        "clusterrolebindings" => add::<rbac::ClusterRoleBinding>(g),
        "selfsubjectaccessreviews" => add::<authz::SelfSubjectAccessReview>(g),
        "subjectaccessreviews" => add::<authz::SubjectAccessReview>(g),
        _ => None,
    }
}

/// The component schemas for `kinds` (one group-version's), each kind's name beside it.
pub fn components(
    kinds: &[&'static ResourceInfo],
) -> (Map<String, Value>, Vec<(&'static ResourceInfo, String)>) {
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    let mut named = Vec::new();
    for info in kinds {
        if let Some(name) = add_kind(&mut generator, info) {
            named.push((*info, name));
        }
    }
    if kinds.iter().any(|k| k.has_scale) {
        generator.subschema_for::<k8s_openapi::api::autoscaling::v1::Scale>();
    }
    let mut schemas = generator.take_definitions(true);
    for (info, name) in &named {
        if let Some(Value::Object(s)) = schemas.get_mut(name) {
            s.insert("x-kubernetes-group-version-kind".into(), json!([gvk(info)]));
            // k8s-openapi's types hold `metadata` without an Option; Kubernetes does not
            // require it in the schema (kubectl explain would print `-required-`).
            if let Some(Value::Array(required)) = s.get_mut("required") {
                required.retain(|r| r != "metadata");
            }
            if s.get("required").is_some_and(|r| r == &json!([])) {
                s.remove("required");
            }
        }
    }
    if let Some(Value::Object(s)) = schemas.get_mut(SCALE) {
        s.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": "autoscaling", "version": "v1", "kind": "Scale"}]),
        );
    }
    // kube-openapi's spellings: a Quantity is a string or a number (so `kubectl explain` names
    // it `Quantity`), an IntOrString an integer or a string with its own format.
    if let Some(Value::Object(s)) = schemas.get_mut(QUANTITY) {
        s.remove("x-kubernetes-int-or-string");
        s.insert(
            "oneOf".into(),
            json!([{"type": "string"}, {"type": "number"}]),
        );
    }
    if let Some(Value::Object(s)) = schemas.get_mut(INT_OR_STRING) {
        s.insert("format".into(), json!("int-or-string"));
        s.insert(
            "oneOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    for (name, schema) in schemas.iter_mut() {
        if let Some(ty) = Ty::of_definition(name) {
            tag_patch_strategies(ty, schema);
        }
    }
    schemas.insert(
        PATCH.into(),
        json!({
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object",
        }),
    );
    (schemas, named)
}

/// `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key` on the properties of a
/// type, from the strategic merge patch's own table (`corral_api::patch::strategic::schema`).
fn tag_patch_strategies(ty: Ty, schema: &mut Value) {
    let Some(Value::Object(props)) = schema.get_mut("properties") else {
        return;
    };
    for (field, prop) in props.iter_mut() {
        let meta = ty.field(field);
        let (Strategy::Merge, Value::Object(p)) = (meta.strategy, prop) else {
            continue;
        };
        p.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
        if !meta.merge_key.is_empty() {
            p.insert("x-kubernetes-patch-merge-key".into(), json!(meta.merge_key));
        }
    }
}

/// A kind's `{group, version, kind}`, as operations and schemas are tagged.
pub fn gvk(info: &ResourceInfo) -> Value {
    json!({"group": info.group, "version": info.version, "kind": info.kind})
}

/// `{"$ref": "#/components/schemas/<name>"}`.
pub fn reference(name: &str) -> Value {
    json!({"$ref": format!("{PREFIX}{name}")})
}
