use prost_reflect::DynamicMessage;
use serde_json::json;

use super::json::go_duration;
use super::*;
use crate::kinds;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/src/protobuf/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A body as client-go frames it: the magic, then `runtime.Unknown` around the object's bytes.
fn envelope_of(api_version: &str, kind: &str, raw: Vec<u8>, encoding: &str) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(encoding.into()),
        content_type: Some(String::new()),
    };
    [MAGIC, &unknown.encode_to_vec()].concat()
}

/// A body for `info` whose object is written in protobuf's own JSON mapping (the test's input
/// language), encoded with the vendored schema.
fn body(info: &ResourceInfo, proto_json: serde_json::Value) -> Vec<u8> {
    let desc = descriptor(&info.api_version(), info.kind).expect("a descriptor");
    let msg = DynamicMessage::deserialize(desc, proto_json).expect("valid protobuf JSON");
    envelope_of(&info.api_version(), info.kind, msg.encode_to_vec(), "")
}

#[test]
fn kubectl_create_bodies_decode_to_the_json_kubectl_sends_as_json() {
    // The .pb files are what kubectl 1.33 (1.32 sends the same bytes) POSTed for `kubectl
    // create ...`; the .json files are `kubectl create ... --dry-run=client -o json`.
    for (name, info) in [
        ("deployment", &kinds::DEPLOYMENTS),
        ("deployment-replicas0", &kinds::DEPLOYMENTS),
        ("configmap", &kinds::CONFIGMAPS),
        ("secret", &kinds::SECRETS),
        ("service-nodeport", &kinds::SERVICES),
        ("namespace", &kinds::NAMESPACES),
        ("rolebinding", &kinds::ROLEBINDINGS),
        ("ingress", &kinds::INGRESSES),
    ] {
        let got = to_json(&fixture(&format!("{name}.pb")), info).unwrap();
        let want: Value = serde_json::from_slice(&fixture(&format!("{name}.json"))).unwrap();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn kubectl_auth_can_i_bodies_decode_to_self_subject_access_reviews() {
    for (name, attributes) in [
        (
            "can-i.pb",
            json!({"namespace": "default", "resource": "pods", "verb": "get"}),
        ),
        (
            "can-i-ns.pb",
            json!({"namespace": "kube-system", "resource": "deployments.apps", "verb": "create"}),
        ),
    ] {
        let got = to_json(&fixture(name), &kinds::SELFSUBJECTACCESSREVIEWS).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "metadata": {"creationTimestamp": null},
                "spec": {"resourceAttributes": attributes},
                "status": {"allowed": false},
            }),
            "{name}"
        );
    }
}

#[test]
fn every_kind_corral_serves_has_a_protobuf_message() {
    for info in kinds::ALL {
        assert!(
            descriptor(&info.api_version(), info.kind).is_some(),
            "{}",
            info.kind
        );
    }
}

#[test]
fn kubernetes_wire_types_become_their_json_forms() {
    let cases = [
        (
            "times, int-or-strings, quantities, inlined fields and zero scalars",
            &kinds::PODS,
            json!({
                "metadata": {
                    "name": "p", "namespace": "",
                    "creationTimestamp": {"seconds": 1704164645, "nanos": 999},
                    "deletionGracePeriodSeconds": 0,
                    "generation": 0,
                    "managedFields": [{"manager": "kubectl", "time": {"seconds": 1704164645},
                        "fieldsV1": {"Raw": "eyJmOm1ldGFkYXRhIjp7fX0="}}],
                },
                "spec": {
                    "hostNetwork": false,
                    "containers": [{
                        "name": "",
                        "ports": [{"containerPort": 0}],
                        "readinessProbe": {"handler": {"httpGet": {"port": {"type": 1, "strVal": "http"}}}, "periodSeconds": 5},
                        "livenessProbe": {"handler": {"tcpSocket": {"port": {"type": 0, "intVal": 8080}}}},
                        "resources": {"limits": {"cpu": {"string": "500m"}, "memory": {"string": ""}}},
                    }],
                    "volumes": [{"name": "v", "volumeSource": {"emptyDir": {}}}],
                },
            }),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": "p",
                    "creationTimestamp": "2024-01-02T03:04:05Z",
                    "deletionGracePeriodSeconds": 0,
                    "managedFields": [{"manager": "kubectl", "time": "2024-01-02T03:04:05Z",
                        "fieldsV1": {"f:metadata": {}}}],
                },
                "spec": {
                    "containers": [{
                        "name": "",
                        "ports": [{"containerPort": 0}],
                        "readinessProbe": {"httpGet": {"port": "http"}, "periodSeconds": 5},
                        "livenessProbe": {"tcpSocket": {"port": 8080}},
                        "resources": {"limits": {"cpu": "500m", "memory": "0"}},
                    }],
                    "volumes": [{"name": "v", "emptyDir": {}}],
                },
            }),
        ),
        (
            "micro times keep microseconds",
            &kinds::LEASES,
            json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a",
                "renewTime": {"seconds": 1704164645, "nanos": 123456789}, "leaseDurationSeconds": 15}}),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
                "spec": {"holderIdentity": "a", "renewTime": "2024-01-02T03:04:05.123456Z", "leaseDurationSeconds": 15}}),
        ),
        (
            "bytes are base64 and raw extensions are their JSON",
            &kinds::CONTROLLERREVISIONS,
            json!({"metadata": {"name": "r"}, "revision": 2, "data": {"raw": "eyJzcGVjIjp7ImEiOjF9fQ=="}}),
            json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"},
                "revision": 2, "data": {"spec": {"a": 1}}}),
        ),
        (
            "secret data stays base64, string data stays text",
            &kinds::SECRETS,
            json!({"metadata": {"name": "s"}, "data": {"k": "AAH/"}, "stringData": {"t": "x"}, "type": "Opaque"}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "data": {"k": "AAH/"}, "stringData": {"t": "x"}, "type": "Opaque"}),
        ),
        (
            "list wrappers are arrays",
            &kinds::SUBJECTACCESSREVIEWS,
            json!({"spec": {"user": "u", "extra": {"scopes": {"items": ["a", "b"]}},
                "nonResourceAttributes": {"path": "/healthz", "verb": "get"}}}),
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": "u", "extra": {"scopes": ["a", "b"]},
                    "nonResourceAttributes": {"path": "/healthz", "verb": "get"}}}),
        ),
    ];
    for (name, info, input, want) in cases {
        assert_eq!(to_json(&body(info, input), info).unwrap(), want, "{name}");
    }
}

#[test]
fn subresource_bodies_decode_as_their_own_kinds() {
    for (api_version, kind, input, want) in [
        (
            "policy/v1",
            "Eviction",
            json!({"metadata": {"name": "web"}, "deleteOptions": {"gracePeriodSeconds": 0, "dryRun": ["All"]}}),
            json!({"metadata": {"name": "web"}, "deleteOptions": {"gracePeriodSeconds": 0, "dryRun": ["All"]}}),
        ),
        (
            // Scale's replicas is omitempty: a Scale to 0 says nothing, as its JSON does.
            "autoscaling/v1",
            "Scale",
            json!({"metadata": {"name": "web"}, "spec": {"replicas": 0}}),
            json!({"metadata": {"name": "web"}, "spec": {}}),
        ),
        (
            "v1",
            "Binding",
            json!({"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}}),
            json!({"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}}),
        ),
    ] {
        let desc = descriptor(api_version, kind).expect("a descriptor");
        let msg = DynamicMessage::deserialize(desc, input).expect("valid protobuf JSON");
        let bytes = envelope_of(api_version, kind, msg.encode_to_vec(), "");
        let mut want = want;
        want["apiVersion"] = json!(api_version);
        want["kind"] = json!(kind);
        assert_eq!(
            to_json_as(&bytes, api_version, kind).unwrap(),
            want,
            "{kind}"
        );
    }
}

#[test]
fn durations_are_written_as_go_writes_them() {
    for (ns, want) in [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (300_000_000, "300ms"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (-2_000_000_000, "-2s"),
    ] {
        assert_eq!(go_duration(ns), want, "{ns}");
    }
}

#[test]
fn malformed_bodies_are_errors_that_say_what_is_wrong() {
    let deployment = fixture("deployment.pb");
    let deep_groups: Vec<u8> = std::iter::repeat_n([0x9b_u8, 0x06], 500)
        .flatten()
        .collect();
    let nested_revision = {
        // A ControllerRevision whose data is a protobuf ControllerRevision, and so on.
        let mut inner = b"{}".to_vec();
        for _ in 0..10 {
            let rev = body(
                &kinds::CONTROLLERREVISIONS,
                json!({"data": {"raw": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &inner)}}),
            );
            inner = rev;
        }
        inner
    };
    let cases: Vec<(&str, Vec<u8>, &kinds::ResourceInfo, &str)> = vec![
        ("empty", vec![], &kinds::DEPLOYMENTS, "magic prefix"),
        (
            "JSON sent as protobuf",
            br#"{"kind":"Deployment"}"#.to_vec(),
            &kinds::DEPLOYMENTS,
            "magic prefix",
        ),
        (
            "truncated varint",
            [MAGIC, &[0x0a, 0xff]].concat(),
            &kinds::DEPLOYMENTS,
            "envelope (runtime.Unknown) is malformed",
        ),
        (
            "huge length prefix",
            [MAGIC, &[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 1]].concat(),
            &kinds::DEPLOYMENTS,
            "envelope (runtime.Unknown) is malformed: failed to decode Protobuf message: Unknown.raw: buffer underflow",
        ),
        (
            "wrong wire type",
            [MAGIC, &[0x08, 0x01]].concat(),
            &kinds::DEPLOYMENTS,
            "envelope (runtime.Unknown) is malformed",
        ),
        (
            "another kind",
            deployment.clone(),
            &kinds::CONFIGMAPS,
            "the protobuf body is a Deployment (apps/v1), but the request is for a ConfigMap (v1)",
        ),
        (
            "compressed",
            envelope_of("v1", "ConfigMap", vec![], "gzip"),
            &kinds::CONFIGMAPS,
            "content encoding \"gzip\"",
        ),
        (
            "object truncated",
            envelope_of("apps/v1", "Deployment", vec![0x0a, 0xff], ""),
            &kinds::DEPLOYMENTS,
            "the Deployment in the protobuf body is malformed",
        ),
        (
            "object field of the wrong wire type",
            envelope_of("apps/v1", "Deployment", vec![0x08, 0x01], ""),
            &kinds::DEPLOYMENTS,
            "the Deployment in the protobuf body is malformed",
        ),
        (
            "nesting too deep",
            envelope_of("v1", "ConfigMap", deep_groups, ""),
            &kinds::CONFIGMAPS,
            "the ConfigMap in the protobuf body is malformed: failed to decode Protobuf message: recursion limit reached",
        ),
        (
            "embedded objects too deep",
            nested_revision,
            &kinds::CONTROLLERREVISIONS,
            "nested too deep",
        ),
        (
            "unknown int-or-string type",
            body(
                &kinds::SERVICES,
                json!({"spec": {"ports": [{"targetPort": {"type": 7}}]}}),
            ),
            &kinds::SERVICES,
            "field spec.ports[0].targetPort: IntOrString of unknown type 7",
        ),
        (
            "raw extension not JSON",
            body(
                &kinds::CONTROLLERREVISIONS,
                json!({"data": {"raw": "bm90IGpzb24="}}),
            ),
            &kinds::CONTROLLERREVISIONS,
            "field data: the raw value is not JSON",
        ),
        (
            "time out of range",
            body(
                &kinds::PODS,
                json!({"metadata": {"creationTimestamp": {"seconds": i64::MAX}}}),
            ),
            &kinds::PODS,
            "field metadata.creationTimestamp: time",
        ),
    ];
    for (name, bytes, info, want) in cases {
        let err = to_json(&bytes, info).expect_err(name).to_string();
        assert!(err.contains(want), "{name}: {err}");
    }
}

#[test]
fn truncated_and_corrupted_bodies_never_panic() {
    let deployment = fixture("deployment.pb");
    for len in 0..deployment.len() {
        let _ = to_json(&deployment[..len], &kinds::DEPLOYMENTS);
    }
    // Every byte replaced by a few values that are tags, lengths and continuation bits.
    for i in 0..deployment.len() {
        for b in [0x00, 0x07, 0x0b, 0x7f, 0x80, 0xff] {
            let mut bytes = deployment.clone();
            bytes[i] = b;
            let _ = to_json(&bytes, &kinds::DEPLOYMENTS);
        }
    }
}
