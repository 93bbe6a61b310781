//! Services on the multi-node rig: ClusterIP (from every node), NodePort (on every node) and
//! the Ingress reach every ready replica wherever it runs; a pod failing its readiness probe
//! leaves the endpoints and gets no traffic; and clients looping through a rolling update from
//! v0.2.0 to v0.3.0 see no failed request.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corral_api::k8s::api::core::v1::{Pod, Service};
use corral_tests::traffic::{
    endpoint_ips, pod_ips, pods, reaches_all, request, scrape, spawn_loop, wait_replicas, Route,
    WAIT,
};
use corral_tests::{corral, eventually, rows, skip_unless_e2e, TestCluster};

fn ok(server: &str, args: &[&str]) -> String {
    let (out, err, success) = corral(server, args);
    assert!(success, "corral {} failed:\n{out}\n{err}", args.join(" "));
    out
}

/// The workshop's Deployment as a Kubernetes user would write it for zero-downtime updates
/// (examples/zero-downtime): a readiness probe so that a new pod gets traffic only once it
/// serves, and a preStop pause so that proxies drop a terminating pod before it stops.
fn deployment(version: &str) -> String {
    example("mi-deploy.yaml").replace(
        "fedek3/workshop-uns:v0.3.0",
        &format!("fedek3/workshop-uns:{version}"),
    )
}

fn example(file: &str) -> String {
    let path = corral_tests::workspace_dir()
        .join("examples/zero-downtime")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A pod the Service selects whose readiness the test controls with a file on the host.
fn canary(flag_dir: &Path) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: mi-deploy-canary
  labels:
    app: mi-deploy
spec:
  containers:
  - name: workshop-uns
    image: fedek3/workshop-uns:v0.2.0
    ports:
    - name: http
      containerPort: 80
    readinessProbe:
      exec:
        command: ["test", "-f", "/flag/ready"]
      periodSeconds: 1
      failureThreshold: 1
    volumeMounts:
    - name: flag
      mountPath: /flag
  volumes:
  - name: flag
    hostPath:
      path: {}
"#,
        flag_dir.display()
    )
}

fn apply(server: &str, dir: &Path, file: &str, yaml: &str) -> String {
    let path = dir.join(file);
    std::fs::write(&path, yaml).unwrap();
    ok(server, &["apply", "-f", path.to_str().unwrap()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_ready_pods_on_every_node_and_survive_a_rolling_update() {
    skip_unless_e2e!();
    let cluster = TestCluster::create("services", 3).await;
    let s = cluster.server();
    let client = cluster.client().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster.state.layout.nodes.clone();

    apply(&s, dir.path(), "deploy.yaml", &deployment("v0.2.0"));
    apply(
        &s,
        dir.path(),
        "services.yaml",
        &example("mi-deploy-svc-ingress.yaml"),
    );
    let first = wait_replicas(&client, "v0.2.0", &cluster).await;
    let names: BTreeSet<String> = first
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let spread: BTreeSet<String> = first
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert!(spread.len() > 1, "replicas spread over nodes: {spread:?}");

    // `get ep` lists the three pod IPs with the named target port resolved.
    let want: BTreeSet<String> = pod_ips(&first)
        .iter()
        .map(|ip| format!("{ip}:80"))
        .collect();
    eventually("get ep to list the 3 pods", WAIT, || async {
        let ep = ok(&s, &["get", "ep", "mi-deploy-svc"]);
        (corral_tests::endpoints_column(&ep).as_ref() == Some(&want)).then_some(())
    })
    .await;

    let svc: Service = client.get("default", "mi-deploy-svc").await.unwrap();
    let spec = svc.spec.unwrap();
    let cluster_ip = spec.cluster_ip.unwrap();
    let node_port = spec.ports.unwrap()[0].node_port.expect("a node port");
    assert!((30000..=32767).contains(&node_port), "{node_port}");

    // Every path, from or on every node, reaches all three pods (most of them on other nodes).
    let mut paths = Vec::new();
    for n in &nodes {
        paths.push(Route {
            label: format!("ClusterIP from {}", n.name),
            netns: Some(n.netns.clone()),
            addr: format!("{cluster_ip}:80"),
            host: "mi-deploy-svc",
        });
        paths.push(Route {
            label: format!("NodePort on {}", n.name),
            netns: None,
            addr: format!("{}:{node_port}", n.ip),
            host: "mi-deploy-svc",
        });
        paths.push(Route {
            label: format!("Ingress on {}", n.name),
            netns: None,
            addr: format!("{}:80", n.ip),
            host: "mi-app.com",
        });
    }
    for p in &paths {
        reaches_all(p, &names).await;
    }

    // Readiness: the canary gets traffic while ready, and none once its probe fails.
    let flag = dir.path().join("flag");
    std::fs::create_dir_all(&flag).unwrap();
    std::fs::write(flag.join("ready"), "").unwrap();
    apply(&s, dir.path(), "canary.yaml", &canary(&flag));
    let canary_ip = eventually("the canary in the ready endpoints", WAIT, || async {
        let pod: Pod = client.get_opt("default", "mi-deploy-canary").await.ok()??;
        let ip = pod.status?.pod_ip?;
        endpoint_ips(&client).await.0.contains(&ip).then_some(ip)
    })
    .await;
    let with_canary: BTreeSet<String> = names
        .iter()
        .cloned()
        .chain(["mi-deploy-canary".to_string()])
        .collect();
    let probe_paths = [&paths[0], &paths[4], &paths[8]];
    for p in probe_paths {
        reaches_all(p, &with_canary).await;
    }
    std::fs::remove_file(flag.join("ready")).unwrap();
    eventually("the canary in notReadyAddresses", WAIT, || async {
        let (ready, not_ready) = endpoint_ips(&client).await;
        (!ready.contains(&canary_ip) && not_ready.contains(&canary_ip)).then_some(())
    })
    .await;
    let table = ok(&s, &["get", "pods", "mi-deploy-canary"]);
    assert!(
        rows(&table)[0][1] == "0/1",
        "READY shows the failing probe:\n{table}"
    );
    for p in probe_paths {
        let p = p.clone();
        tokio::task::spawn_blocking(move || {
            // Proxies follow the endpoint change: once a few answers in a row come from
            // others, none of the next 40 comes from the canary.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut clean = 0;
            while clean < 5 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} still sends to the canary",
                    p.label
                );
                match request(&p) {
                    Ok((pod, _)) if pod == "mi-deploy-canary" => clean = 0,
                    Ok(_) => clean += 1,
                    Err(e) => panic!("{}: {e}", p.label),
                }
            }
            for _ in 0..40 {
                let (pod, _) = request(&p).unwrap_or_else(|e| panic!("{}: {e}", p.label));
                assert_ne!(
                    pod, "mi-deploy-canary",
                    "{} sent traffic to a not-ready pod",
                    p.label
                );
            }
        })
        .await
        .unwrap();
    }
    ok(&s, &["delete", "pod", "mi-deploy-canary"]);
    eventually("the canary gone from the endpoints", WAIT, || async {
        let (ready, not_ready) = endpoint_ips(&client).await;
        (!ready.contains(&canary_ip) && !not_ready.contains(&canary_ip)).then_some(())
    })
    .await;

    // Rolling update under load: one client per path kind, each on a different node.
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = [&paths[0], &paths[4], &paths[8]]
        .into_iter()
        .map(|p| spawn_loop(p.clone(), stop.clone()))
        .collect();
    apply(&s, dir.path(), "deploy.yaml", &deployment("v0.3.0"));
    ok(
        &s,
        &[
            "rollout",
            "status",
            "deployment/mi-deploy",
            "--timeout=120s",
        ],
    );
    let second = wait_replicas(&client, "v0.3.0", &cluster).await;
    // The old pods are gone from the API only once their containers stopped.
    eventually("only the new pods left", WAIT, || async {
        (pods(&client).await.len() == 3).then_some(())
    })
    .await;
    let new_ips = pod_ips(&second);
    eventually("endpoints to list only the new pods", WAIT, || async {
        (endpoint_ips(&client).await == (new_ips.clone(), BTreeSet::new())).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for (l, p) in loops.into_iter().zip([&paths[0], &paths[4], &paths[8]]) {
        let (versions, failed) = l.join().unwrap();
        eprintln!("{}: {versions:?}, {} failed", p.label, failed.len());
        assert!(
            versions.contains_key("v0.2.0") && versions.contains_key("v0.3.0"),
            "{} saw both versions during the update: {versions:?}",
            p.label
        );
        failures.extend(failed);
    }
    assert!(
        failures.is_empty(),
        "{} failed requests during the rolling update:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        cluster.logs()
    );

    // Each node's agent and proxy serve /metrics inside the node, and they moved with the
    // work: pods started, iptables synced, Ingress requests by the rule's host.
    let mut started = 0.0;
    let mut ingress_ok = 0.0;
    for n in &nodes {
        let agent = scrape(&n.netns, "127.0.0.1:10255");
        started += agent["kubelet_pod_start_duration_seconds_count"];
        let proxy = scrape(&n.netns, "127.0.0.1:10249");
        assert!(proxy["kubeproxy_sync_proxy_rules_duration_seconds_count"] >= 1.0);
        ingress_ok += proxy
            .get(r#"corral_ingress_requests_total{host="mi-app.com",code="200"}"#)
            .copied()
            .unwrap_or(0.0);
    }
    assert!(
        started >= 6.0,
        "3 pods of v0.2.0 and 3 of v0.3.0 started: {started}"
    );
    assert!(ingress_ok >= 1.0, "Ingress requests counted: {ingress_ok}");
}
