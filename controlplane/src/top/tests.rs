//! Building NodeMetrics and PodMetrics from the agents' summaries: selectors, nodes that did
//! not answer, and the Kubernetes JSON kubectl reads.

use super::*;

fn summary(pods: Vec<pb::PodUsage>) -> pb::StatsSummary {
    pb::StatsSummary {
        request_id: 1,
        error: String::new(),
        ready: true,
        timestamp_ms: 1_700_000_000_000,
        window_ms: 5_002,
        node: Some(pb::Usage {
            cpu_nanocores: 1_234_567,
            memory_working_set_bytes: 10 << 20,
        }),
        pods,
    }
}

fn pod_usage(ns: &str, name: &str, containers: &[(&str, u64, u64)]) -> pb::PodUsage {
    pb::PodUsage {
        namespace: ns.into(),
        name: name.into(),
        containers: containers
            .iter()
            .map(|(n, cpu, mem)| pb::ContainerUsage {
                name: n.to_string(),
                usage: Some(pb::Usage {
                    cpu_nanocores: *cpu,
                    memory_working_set_bytes: *mem,
                }),
            })
            .collect(),
    }
}

#[test]
fn windows_are_go_durations() {
    for (ms, want) in [
        (0, "0s"),
        (750, "750ms"),
        (1000, "1s"),
        (5_002, "5.002s"),
        (10_500, "10.5s"),
        (60_000, "1m0s"),
        (61_250, "1m1.25s"),
        (3_600_000, "1h0m0s"),
    ] {
        assert_eq!(go_duration(ms), want, "{ms}");
    }
}

#[test]
fn node_metrics_carry_usage_as_quantities_and_the_node_labels() {
    let node = json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}});
    let m = node_metrics(&node, &summary(vec![]), "2026-01-01T00:00:00Z").unwrap();
    assert_eq!(m["kind"], "NodeMetrics");
    assert_eq!(m["apiVersion"], "metrics.k8s.io/v1beta1");
    assert_eq!(m["metadata"]["name"], "n1");
    assert_eq!(m["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
    assert!(m["metadata"].get("namespace").is_none());
    assert_eq!(m["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(m["window"], "5.002s");
    assert_eq!(m["usage"], json!({"cpu": "1234567n", "memory": "10Mi"}));
    // No figures yet: no object (metrics-server leaves the node out).
    let mut not_ready = summary(vec![]);
    not_ready.ready = false;
    assert_eq!(node_metrics(&node, &not_ready, "x"), None);
    let mut no_node = summary(vec![]);
    no_node.node = None;
    assert_eq!(node_metrics(&node, &no_node, "x"), None);
}

#[test]
fn pod_metrics_are_made_for_the_listed_pods_the_node_has_figures_for() {
    let s = summary(vec![
        pod_usage(
            "default",
            "web",
            &[("app", 250_000_000, 3 << 20), ("log", 5, 1000)],
        ),
        pod_usage("default", "not-listed", &[("app", 1, 1)]),
        pod_usage("other", "web", &[("app", 2, 2)]),
    ]);
    let web =
        json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}});
    let fresh = json!({"metadata": {"name": "fresh", "namespace": "default"}});
    let got = pod_metrics(&[&web, &fresh], &s, "now");
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m["kind"], "PodMetrics");
    assert_eq!(m["metadata"]["namespace"], "default");
    assert_eq!(m["metadata"]["labels"]["app"], "web");
    assert_eq!(
        m["containers"],
        json!([
            {"name": "app", "usage": {"cpu": "250m", "memory": "3Mi"}},
            {"name": "log", "usage": {"cpu": "5n", "memory": "1000"}},
        ])
    );
}

#[test]
fn the_warning_names_nodes_that_did_not_answer() {
    let failed = |names: &[&str]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (n.to_string(), "timeout".to_string()))
            .collect()
    };
    assert_eq!(unavailable_warning(2, &[]), None);
    assert_eq!(
        unavailable_warning(3, &failed(&["b"])).unwrap(),
        "metrics of 1 of 3 nodes unavailable: b (timeout)"
    );
    assert_eq!(
        unavailable_warning(2, &failed(&["a", "b"])).unwrap(),
        "metrics unavailable: no node answered: a (timeout), b (timeout)"
    );
}

#[test]
fn discovery_names_nodes_and_pods_of_v1beta1() {
    let g = group_doc();
    assert_eq!(g["name"], "metrics.k8s.io");
    assert_eq!(
        g["preferredVersion"]["groupVersion"],
        "metrics.k8s.io/v1beta1"
    );
    let r = resource_list();
    let names: Vec<&str> = r["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nodes", "pods"]);
    assert_eq!(r["resources"][1]["namespaced"], true);
    assert_eq!(r["resources"][0]["verbs"], json!(["get", "list"]));
}
