//! Service addresses across updates and applies, over gRPC: what was allocated stays, a type
//! change adds or releases node ports, and nobody takes another service's address.

mod common;

use common::boot;
use corral_api::kinds;
use serde_json::{json, Value};

fn service(name: &str, kind: &str, extra: Value) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": kind, "selector": {"app": name}, "ports": [{"port": 80}]}});
    if let (Some(spec), Some(extra)) = (s["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    s
}

fn node_port(s: &Value) -> Option<i64> {
    s.pointer("/spec/ports/0/nodePort").and_then(Value::as_i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_keep_allocations_and_type_changes_add_or_release_node_ports() {
    let (_d, _r, c) = boot().await;
    let (_, web) = c
        .apply_value("default", &service("web", "ClusterIP", json!({})), false)
        .await
        .unwrap();
    let ip = web["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert_eq!(node_port(&web), None);

    // ClusterIP -> NodePort: a node port appears, the address stays.
    let (_, np) = c
        .apply_value("default", &service("web", "NodePort", json!({})), false)
        .await
        .unwrap();
    assert_eq!(np["spec"]["clusterIP"], ip.as_str());
    let port = node_port(&np).expect("a node port");
    assert!((30000..=32767).contains(&port));
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");

    // Re-applying keeps it; back to ClusterIP releases it, and another service can take it.
    let (_, again) = c
        .apply_value("default", &service("web", "NodePort", json!({})), false)
        .await
        .unwrap();
    assert_eq!(node_port(&again), Some(port));
    let (_, back) = c
        .apply_value("default", &service("web", "ClusterIP", json!({})), false)
        .await
        .unwrap();
    assert_eq!(node_port(&back), None, "{back}");
    let other = service(
        "other",
        "NodePort",
        json!({"ports": [{"port": 80, "nodePort": port}]}),
    );
    let created = c
        .create_value(&kinds::SERVICES, "default", &other, false)
        .await
        .unwrap();
    assert_eq!(node_port(&created), Some(port));

    // Taking that port back, or another service's address, is refused and changes nothing.
    let steal = service(
        "web",
        "NodePort",
        json!({"ports": [{"port": 80, "nodePort": port}]}),
    );
    let err = c
        .apply_value("default", &steal, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.ports[0].nodePort: Invalid value:"),
        "{err}"
    );
    assert!(err.contains("provided port is already allocated"), "{err}");
    let other_ip = created["spec"]["clusterIP"].as_str().unwrap();
    let mut moved = c
        .get_value(&kinds::SERVICES, "default", "web")
        .await
        .unwrap();
    moved["spec"]["clusterIP"] = json!(other_ip);
    let err = c
        .update_value(&kinds::SERVICES, "default", &moved, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.clusterIPs[0]: Invalid value:"), "{err}");
    assert!(err.contains("may not change once set"), "{err}");
    let stored = c
        .get_value(&kinds::SERVICES, "default", "web")
        .await
        .unwrap();
    assert_eq!(stored["spec"]["clusterIP"], ip.as_str());
    assert_eq!(node_port(&stored), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistyped_services_and_ingresses_are_refused_with_kubernetes_wording() {
    let (_d, _r, c) = boot().await;
    let bad = service(
        "bad",
        "ClusterIP",
        json!({"sessionAffinity": "Sticky", "ports": [
            {"name": "HTTP", "port": 80}, {"name": "web", "port": 80, "nodePort": 30080}]}),
    );
    let err = c
        .create_value(&kinds::SERVICES, "default", &bad, false)
        .await
        .unwrap_err()
        .to_string();
    for want in [
        "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
        "spec.ports[0].name: Invalid value: \"HTTP\": a lowercase RFC 1123 label",
        "spec.ports[1]: Duplicate value: \"80/TCP\"",
        "spec.ports[1].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
        "spec": {"rules": [{"host": "Mi-App.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {}}}}]}}]}});
    let err = c
        .create_value(&kinds::INGRESSES, "default", &ing, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "spec.rules[0].host: Invalid value: \"Mi-App.com\": a lowercase RFC 1123 subdomain"
        ),
        "{err}"
    );
    assert!(err.contains("spec.rules[0].http.paths[0].backend.service.port: Invalid value: {}: port name or number is required"), "{err}");
    let (list, _) = c
        .list_value(&kinds::SERVICES, "default", &Default::default())
        .await
        .unwrap();
    // Nothing stored: the only Service in `default` is the API server's own.
    let names: Vec<&str> = list
        .iter()
        .filter_map(|s| s.pointer("/metadata/name").and_then(|n| n.as_str()))
        .collect();
    assert_eq!(names, ["kubernetes"], "nothing stored");
}
