use super::*;
use serde_json::json;

fn pod(name: &str, ports: &[(&str, i32)]) -> Pod {
    let ports: Vec<_> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "containerPort": p}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [
            {"name": "a", "image": "x"},
            {"name": "b", "image": "x", "ports": ports}
        ]}
    }))
    .unwrap()
}

fn svc(cluster_ip: &str, ports: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"clusterIP": cluster_ip, "ports": ports}
    }))
    .unwrap()
}

fn specs(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

fn f(local: u16, remote: u16) -> Forward {
    Forward { local, remote }
}

#[test]
fn pod_port_specs_are_read_as_kubectl_reads_them() {
    let p = pod("web-0", &[("http", 8080), ("metrics", 9090)]);
    let cases: Vec<(&str, Result<Forward, PortError>)> = vec![
        ("80", Ok(f(80, 80))),
        ("8080:80", Ok(f(8080, 80))),
        (":80", Ok(f(0, 80))),
        ("http", Ok(f(8080, 8080))),
        ("5000:http", Ok(f(5000, 8080))),
        (":metrics", Ok(f(0, 9090))),
        (
            "ftp",
            Err(PortError::PodPortName {
                pod: "web-0".into(),
                port: "ftp".into(),
            }),
        ),
        ("1:2:3", Err(PortError::Format("1:2:3".into()))),
        ("x:80", Err(PortError::Local("x".into()))),
        ("70000", Err(PortError::Remote("70000".into()))),
        ("8080:-1", Err(PortError::Remote("-1".into()))),
        ("8080:", Err(PortError::Remote("".into()))),
        ("0", Err(PortError::RemoteZero)),
    ];
    for (spec, want) in cases {
        let got = pod_forwards(&specs(&[spec]), &p).map(|v| v[0]);
        assert_eq!(got, want, "{spec}");
    }
}

#[test]
fn service_ports_map_to_the_pods_target_port_as_kubectl_does() {
    let p = pod("web-0", &[("http", 8080)]);
    let s = svc(
        "10.43.0.20",
        json!([
            {"name": "web", "port": 80, "targetPort": "http"},
            {"name": "admin", "port": 81, "targetPort": 9000},
            {"name": "plain", "port": 82},
            {"name": "numstr", "port": 83, "targetPort": "9001"},
            {"name": "gone", "port": 84, "targetPort": "nope"}
        ]),
    );
    let cases: Vec<(&str, Result<Forward, PortError>)> = vec![
        ("80", Ok(f(80, 8080))),
        ("5000:80", Ok(f(5000, 8080))),
        (":80", Ok(f(0, 8080))),
        ("web", Ok(f(80, 8080))),
        ("5000:web", Ok(f(5000, 8080))),
        ("81", Ok(f(81, 9000))),
        ("82", Ok(f(82, 82))),
        ("83", Ok(f(83, 9001))),
        (
            "99",
            Err(PortError::ServicePort {
                service: "web".into(),
                port: 99,
            }),
        ),
        (
            "ftp",
            Err(PortError::ServicePortName {
                service: "web".into(),
                port: "ftp".into(),
            }),
        ),
        (
            "84",
            Err(PortError::PodPortName {
                pod: "web-0".into(),
                port: "nope".into(),
            }),
        ),
    ];
    for (spec, want) in cases {
        let got = service_forwards(&specs(&[spec]), &s, &p).map(|v| v[0]);
        assert_eq!(got, want, "{spec}");
    }
}

#[test]
fn a_headless_services_port_is_forwarded_as_it_is() {
    let p = pod("web-0", &[("http", 8080)]);
    let s = svc(
        "None",
        json!([{"name": "web", "port": 80, "targetPort": "http"}]),
    );
    assert_eq!(
        service_forwards(&specs(&["80", "web"]), &s, &p),
        Ok(vec![f(80, 80), f(80, 80)])
    );
}

#[test]
fn the_most_active_pod_of_a_selector_is_picked() {
    let mk = |name: &str, node: bool, phase: &str, ready: bool| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [], "nodeName": if node { "n1" } else { "" }},
            "status": {"phase": phase, "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}
            ]}
        }))
        .unwrap()
    };
    let mut unscheduled = mk("a", false, "Pending", false);
    unscheduled.spec.as_mut().unwrap().node_name = None;
    let pending = mk("b", true, "Pending", false);
    let running = mk("c", true, "Running", false);
    let ready_z = mk("z", true, "Running", true);
    let ready_y = mk("y", true, "Running", true);
    let pick = |pods: Vec<Pod>| pick_pod(&pods).and_then(|p| p.metadata.name.clone());
    assert_eq!(pick(vec![]), None);
    assert_eq!(
        pick(vec![unscheduled.clone(), pending.clone()]),
        Some("b".into())
    );
    assert_eq!(
        pick(vec![pending.clone(), running.clone()]),
        Some("c".into())
    );
    assert_eq!(
        pick(vec![running, ready_z, ready_y, pending, unscheduled]),
        Some("y".into()),
        "ready first, then by name"
    );
}
