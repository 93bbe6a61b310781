//! `-o yaml|json|name` output and kubectl's `create --dry-run=client -o yaml` shape.

use crate::kinds::ResourceInfo;
use serde_json::{json, Value};

/// `pod/mi-pod`, `deployment.apps/mi-deploy`.
pub fn name(info: &ResourceInfo, obj: &Value) -> String {
    format!("{}/{}", info.qualified(), crate::object::name(obj))
}

/// kubectl wraps several objects in a `List`.
pub fn list(items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    })
}

/// YAML with sorted keys and block sequences at the parent's indentation, as kubectl prints.
pub fn yaml(obj: &Value) -> String {
    // serde_json's map is ordered by key, which is kubectl's (sigs.k8s.io/yaml) order too.
    serde_yaml::to_string(obj).unwrap_or_else(|e| format!("# cannot render YAML: {e}\n"))
}

/// JSON indented by four spaces, as kubectl prints.
pub fn json(obj: &Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    match obj.serialize(&mut ser) {
        Ok(()) => {
            let mut s = String::from_utf8(buf).unwrap_or_default();
            s.push('\n');
            s
        }
        Err(e) => format!("{{\"error\": {:?}}}\n", e.to_string()),
    }
}

/// The container name kubectl derives from an image: last path element, without tag or
/// digest, `_` replaced by `-` (`fedek3/workshop-uns:v0.2.0` → `workshop-uns`).
pub fn container_name_from_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split('@').next().unwrap_or(last);
    let last = last.split(':').next().unwrap_or(last);
    last.replace('_', "-").to_ascii_lowercase()
}

/// The Deployment `kubectl create deployment` builds, field for field.
pub fn create_deployment(name: &str, images: &[String], replicas: i32, port: Option<i32>) -> Value {
    let mut used: Vec<String> = Vec::new();
    let containers: Vec<Value> = images
        .iter()
        .map(|image| {
            let mut cname = container_name_from_image(image);
            if used.contains(&cname) {
                cname = format!("{cname}-{}", crate::object::random_suffix(5));
            }
            used.push(cname.clone());
            let mut c = json!({"image": image, "name": cname, "resources": {}});
            if let (Some(p), 1) = (port, images.len()) {
                c["ports"] = json!([{"containerPort": p}]);
            }
            c
        })
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"creationTimestamp": null, "labels": {"app": name}, "name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": name}},
                "spec": {"containers": containers},
            },
        },
        "status": {},
    })
}

pub fn create_namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"creationTimestamp": null, "name": name},
        "spec": {},
        "status": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_deployment_dry_run_yaml_is_kubectls() {
        let d = create_deployment(
            "mi-deploy",
            &["fedek3/workshop-uns:v0.2.0".to_string()],
            3,
            Some(80),
        );
        let want = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  creationTimestamp: null
  labels:
    app: mi-deploy
  name: mi-deploy
spec:
  replicas: 3
  selector:
    matchLabels:
      app: mi-deploy
  strategy: {}
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: mi-deploy
    spec:
      containers:
      - image: fedek3/workshop-uns:v0.2.0
        name: workshop-uns
        ports:
        - containerPort: 80
        resources: {}
status: {}
";
        assert_eq!(yaml(&d), want);
    }

    #[test]
    fn container_names_come_from_the_image_like_kubectl() {
        assert_eq!(container_name_from_image("nginx"), "nginx");
        assert_eq!(
            container_name_from_image("registry:5000/team/my_app:1.2"),
            "my-app"
        );
        assert_eq!(container_name_from_image("busybox@sha256:abcd"), "busybox");
    }

    #[test]
    fn json_is_indented_by_four_spaces() {
        assert_eq!(
            json(&json!({"a": [1]})),
            "{\n    \"a\": [\n        1\n    ]\n}\n"
        );
    }
}
