//! Strategic merge patches against Corral's kinds, through `patch::apply`: the merge keys and
//! strategies of `schema.rs` as kubectl users meet them.

use crate::kinds;
use crate::patch::{apply, PatchType};
use serde_json::{json, Value};

fn smp(kind: &kinds::ResourceInfo, original: Value, patch: Value) -> Value {
    apply(
        kind,
        &original,
        patch.to_string().as_bytes(),
        PatchType::StrategicMerge,
    )
    .unwrap()
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

#[test]
fn containers_merge_by_name_and_their_lists_by_their_keys() {
    let original = pod(json!({
        "containers": [{
            "name": "web", "image": "nginx:1",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "ports": [{"containerPort": 80, "name": "http"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]
        }, {"name": "side", "image": "busybox"}],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "tolerations": [{"key": "a", "operator": "Exists"}]
    }));
    let patch = json!({"spec": {
        "containers": [{
            "name": "web", "image": "nginx:2",
            "env": [{"name": "B", "value": "3"}],
            "ports": [{"containerPort": 443, "name": "https"}],
            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]
        }],
        "tolerations": [{"key": "b", "operator": "Exists"}]
    }});
    let got = smp(&kinds::PODS, original, patch);
    let web = &got["spec"]["containers"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["image"], "nginx:2");
    assert_eq!(
        web["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}])
    );
    assert_eq!(
        web["ports"],
        json!([{"containerPort": 443, "name": "https"}, {"containerPort": 80, "name": "http"}])
    );
    assert_eq!(web["volumeMounts"].as_array().unwrap().len(), 2);
    assert_eq!(got["spec"]["containers"][1]["name"], "side");
    // Tolerations carry no strategy: replaced whole.
    assert_eq!(
        got["spec"]["tolerations"],
        json!([{"key": "b", "operator": "Exists"}])
    );
}

#[test]
fn kubectl_set_image_style_patch_touches_one_container_of_a_deployment() {
    let original = json!({
        "metadata": {"name": "d", "labels": {"app": "d"}},
        "spec": {"replicas": 2, "template": {
            "metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}
        }}
    });
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}});
    let got = smp(&kinds::DEPLOYMENTS, original, patch);
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}])
    );
    assert_eq!(got["spec"]["replicas"], 2);
}

#[test]
fn kubectl_apply_patches_order_delete_and_retain_as_sent() {
    // What `kubectl apply` sends after removing container "a", adding "c" and switching the
    // Deployment's strategy from RollingUpdate to Recreate.
    let original = json!({
        "metadata": {"name": "d", "finalizers": ["x", "y"]},
        "spec": {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"spec": {"containers": [
                {"name": "a", "image": "a"}, {"name": "b", "image": "b"}
            ]}}
        }
    });
    let patch = json!({
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "finalizers": ["z"]},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null},
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}],
                "containers": [{"name": "c", "image": "c"}, {"name": "a", "$patch": "delete"}]
            }}
        }
    });
    let got = smp(&kinds::DEPLOYMENTS, original, patch);
    assert_eq!(got["metadata"]["finalizers"], json!(["z", "y"]));
    assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"],
        json!([{"name": "c", "image": "c"}, {"name": "b", "image": "b"}])
    );
}

#[test]
fn merge_keys_of_the_other_kinds_follow_the_kubernetes_types() {
    let svc = smp(
        &kinds::SERVICES,
        json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "a"}}}),
        json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
    );
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
    );

    let owners = smp(
        &kinds::CONFIGMAPS,
        json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}, "data": {"k": "v"}}),
        json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}, "data": {"k2": "v2"}}),
    );
    assert_eq!(
        owners["metadata"]["ownerReferences"],
        json!([{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}])
    );
    assert_eq!(owners["data"], json!({"k": "v", "k2": "v2"}));

    let node = smp(
        &kinds::NODES,
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"},
                                         {"type": "DiskPressure", "status": "False"}]}}),
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    assert_eq!(
        node["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}])
    );

    // Ingress rules carry no strategy: replaced.
    let ing = smp(
        &kinds::INGRESSES,
        json!({"spec": {"rules": [{"host": "a"}]}}),
        json!({"spec": {"rules": [{"host": "b"}]}}),
    );
    assert_eq!(ing["spec"]["rules"], json!([{"host": "b"}]));

    let rs = smp(
        &kinds::REPLICASETS,
        json!({"spec": {"template": {"spec": {"imagePullSecrets": [{"name": "a"}]}}}}),
        json!({"spec": {"template": {"spec": {"imagePullSecrets": [{"name": "b"}]}}}}),
    );
    assert_eq!(
        rs["spec"]["template"]["spec"]["imagePullSecrets"],
        json!([{"name": "b"}, {"name": "a"}])
    );
}

#[test]
fn a_container_patch_without_its_name_is_refused_naming_the_field() {
    let err = apply(
        &kinds::PODS,
        &pod(json!({"containers": [{"name": "web", "image": "a"}]})),
        br#"{"spec": {"containers": [{"image": "b"}]}}"#,
        PatchType::StrategicMerge,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.containers: map does not contain declared merge key: name"
    );
    let not_object = apply(
        &kinds::PODS,
        &pod(json!({})),
        b"[1]",
        PatchType::StrategicMerge,
    )
    .unwrap_err();
    assert_eq!(
        not_object.to_string(),
        "a strategic merge patch must be a JSON object"
    );
}
