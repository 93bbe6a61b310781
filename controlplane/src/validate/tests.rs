use super::*;
use corral_api::kinds;
use corral_api::rules::pull_policy::default_pull_policy;
use serde_json::json;

fn deployment(replicas: i64, selector: Value, labels: Value, restart: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "i:1"}]}}}
    })
}

fn errors(info: &ResourceInfo, v: &Value) -> Vec<String> {
    let mut v = v.clone();
    apply_defaults(info, &mut v, &Defaults::default());
    validate(info, &v).iter().map(ToString::to_string).collect()
}

#[test]
fn controller_templates_are_checked_like_kubernetes() {
    let cases = [
        (deployment(3, json!({"app": "a"}), json!({"app": "a"}), "Always"), None),
        (
            deployment(3, json!({"app": "a"}), json!({"app": "b"}), "Always"),
            Some("spec.template.metadata.labels: Invalid value: map[string]string{\"app\": \"b\"}: `selector` does not match template `labels`"),
        ),
        (
            deployment(3, json!({"app": "a"}), json!({"app": "a"}), "Never"),
            Some("spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""),
        ),
        (
            deployment(-1, json!({"app": "a"}), json!({"app": "a"}), "Always"),
            Some("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        ),
    ];
    for (obj, want) in cases {
        let got = errors(&kinds::DEPLOYMENTS, &obj);
        match want {
            None => assert!(got.is_empty(), "{got:?}"),
            Some(w) => assert!(got.iter().any(|g| g == w), "want {w:?} in {got:?}"),
        }
    }
}

#[test]
fn names_must_be_dns_1123() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Mi_Pod"},
                     "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let got = errors(&kinds::PODS, &pod);
    assert!(
        got[0].starts_with(
            "metadata.name: Invalid value: \"Mi_Pod\": a lowercase RFC 1123 subdomain"
        ),
        "{got:?}"
    );
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}});
    assert!(errors(&kinds::SERVICES, &svc)[0].contains("DNS-1035"));
}

#[test]
fn annotations_are_qualified_names_of_at_most_256_kib_in_all() {
    let cm = |annotations: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "annotations": annotations}})
    };
    let cases = [
        (json!({"example.com/Owner": "me", "note": ""}), None),
        (json!({"a": "x".repeat(256 * 1024 - 1)}), None),
        (
            json!({"a": "x".repeat(256 * 1024)}),
            Some("metadata.annotations: Too long: may not be more than 262144 bytes"),
        ),
        (
            json!({"a": "x".repeat(50 << 20)}),
            Some("metadata.annotations: Too long: may not be more than 262144 bytes"),
        ),
        (
            json!({"bad key!": "v"}),
            Some("metadata.annotations: Invalid value: \"bad key!\": name part must consist"),
        ),
    ];
    for (annotations, want) in cases {
        let got = errors(&kinds::CONFIGMAPS, &cm(annotations));
        match want {
            None => assert!(got.is_empty(), "{got:?}"),
            Some(w) => assert!(
                got.iter().any(|g| g.starts_with(w)),
                "want {w:?} in {got:?}"
            ),
        }
    }
}

#[test]
fn ports_must_be_in_range() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                     "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 70000}]}]}});
    assert_eq!(
        errors(&kinds::PODS, &pod),
        ["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"]
    );
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                     "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}});
    assert!(errors(&kinds::SERVICES, &svc)[0].contains("30000-32767"));
}

#[test]
fn defaults_follow_kubernetes() {
    let mut d = deployment(3, json!({"app": "a"}), json!({"app": "a"}), "Always");
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx");
    apply_defaults(&kinds::DEPLOYMENTS, &mut d, &Defaults::default());
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    assert_eq!(
        default_pull_policy("fedek3/workshop-uns:v0.2.0"),
        "IfNotPresent"
    );
    assert_eq!(default_pull_policy("localhost:5000/app"), "Always");
    assert_eq!(default_pull_policy("localhost:5000/app:latest"), "Always");
}

#[test]
fn quantities_must_be_readable_by_the_scheduler_and_the_agent() {
    let pod = |resources: Value, size_limit: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "c", "image": "i:1", "resources": resources}],
                        "initContainers": [{"name": "init", "image": "i:1",
                                            "resources": {"requests": {"memory": "1Ei"}}}],
                        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": size_limit}}]}})
    };
    let regex = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
    let cases: Vec<(Value, &str, Vec<String>)> = vec![
        (
            json!({"requests": {"cpu": "100n", "memory": "1Ei"}, "limits": {"cpu": "1e3", "memory": "64Mi"}}),
            "1Gi",
            vec![],
        ),
        (
            json!({"limits": {"cpu": "1x"}}),
            "1Gi",
            vec![format!("spec.containers[0].resources.limits[cpu]: Invalid value: \"1x\": {regex}")],
        ),
        (
            json!({"requests": {"memory": "lots", "cpu": "-1"}}),
            "1Gi",
            vec![
                "spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": must be greater than or equal to 0".to_string(),
                format!("spec.containers[0].resources.requests[memory]: Invalid value: \"lots\": {regex}"),
            ],
        ),
        (
            json!({"requests": {"cpu": "1E"}}),
            "1Gi",
            vec!["spec.containers[0].resources.requests[cpu]: Invalid value: \"1E\": must be less than 2^63 in the unit it is counted in".to_string()],
        ),
        (
            json!({}),
            "big",
            vec![format!("spec.volumes[0].emptyDir.sizeLimit: Invalid value: \"big\": {regex}")],
        ),
        (
            json!({}),
            "-1Gi",
            vec!["spec.volumes[0].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity".to_string()],
        ),
    ];
    for (resources, size_limit, want) in cases {
        assert_eq!(
            errors(&kinds::PODS, &pod(resources.clone(), size_limit)),
            want,
            "{resources} {size_limit}"
        );
    }
    let mut bad_init = pod(json!({}), "1Gi");
    bad_init["spec"]["initContainers"][0]["resources"]["limits"] = json!({"cpu": "2 cores"});
    assert_eq!(
        errors(&kinds::PODS, &bad_init),
        [format!(
            "spec.initContainers[0].resources.limits[cpu]: Invalid value: \"2 cores\": {regex}"
        )]
    );
}

#[test]
fn node_names_may_not_take_the_proxy_reports_prefix() {
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    assert!(errors(&kinds::NODES, &node("worker-1")).is_empty());
    let got = errors(&kinds::NODES, &node("corral-proxy-x"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("metadata.name: Invalid value: \"corral-proxy-x\": must not start with"),
        "{got:?}"
    );
}
