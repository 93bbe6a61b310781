//! Cluster DNS on the local rig: a pod on one node resolves the workshop Service (on the
//! other node) by every name form a Kubernetes user writes, a headless StatefulSet's pod by
//! its name, and fetches the Service by name, through the node-local DNS behind kube-dns.

use std::time::Duration;

use corral_api::k8s::api::core::v1::{Node, Pod, Service};
use corral_api::ListParams;
use corral_tests::{corral, eventually, skip_unless_e2e, TestCluster};

const WAIT: Duration = Duration::from_secs(60);

fn ok(server: &str, args: &[&str]) -> String {
    let (out, err, success) = corral(server, args);
    assert!(success, "corral {} failed:\n{out}\n{err}", args.join(" "));
    out
}

/// Full names carry the trailing dot, so no search domain of the host's (appended after the
/// cluster's, as kubelet does) sends a lookup out of the cluster: tests never reach a real
/// resolver.
const NAMES: &[&str] = &[
    "mi-deploy-svc",
    "mi-deploy-svc.default",
    "mi-deploy-svc.default.svc",
    "mi-deploy-svc.default.svc.cluster.local.",
    "web-0.web",
    "web-0.web.default.svc.cluster.local.",
];

/// The Service's app and a one-pod headless StatefulSet on `server_node`; a client pod on
/// `client_node` that retries until every name resolves, then prints `name=ip` lines, its
/// resolv.conf, and the page `wget http://mi-deploy-svc/` fetched.
fn manifests(server_node: &str, client_node: &str) -> String {
    // busybox's nslookup skips the search path for names with a dot; ping resolves through
    // the C library's getaddrinfo, as applications do (search path, ndots:5), and prints the
    // address it got: `PING name (10.43.0.20): 56 data bytes`.
    let lookups: String = NAMES
        .iter()
        .map(|n| {
            format!(
                "ip=$(ping -c 1 -W 1 {n} 2>/dev/null | sed -n '1s/^PING [^ ]* (\\([0-9.]*\\)).*/\\1/p'); \
                 [ -n \"$ip\" ] || ok=0; out=\"$out {n}=$ip\"; "
            )
        })
        .collect();
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: mi-deploy
spec:
  replicas: 1
  selector:
    matchLabels: {{app: mi-deploy}}
  template:
    metadata:
      labels: {{app: mi-deploy}}
    spec:
      nodeName: {server_node}
      containers:
      - name: app
        image: fedek3/workshop-uns:v0.2.0
        ports: [{{name: http, containerPort: 80}}]
---
apiVersion: v1
kind: Service
metadata:
  name: mi-deploy-svc
spec:
  selector: {{app: mi-deploy}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: web, port: 80}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      nodeName: {server_node}
      containers:
      - name: app
        image: fedek3/workshop-uns:v0.2.0
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: {client_node}
  restartPolicy: Never
  containers:
  - name: client
    image: fedek3/workshop-uns:v0.2.0
    command:
    - sh
    - -c
    - |
      for i in $(seq 1 100); do
        ok=1; out=""
        {lookups}
        [ $ok = 1 ] && break
        sleep 0.3
      done
      for kv in $out; do echo "RESOLVED $kv"; done
      sed 's/^/RESOLV /' /etc/resolv.conf
      if wget -q -O /dev/null http://mi-deploy-svc/; then echo "WGET ok"; fi
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_on_another_node_resolves_services_and_statefulset_pods_by_name() {
    skip_unless_e2e!();
    let cluster = TestCluster::create("dns", 1).await;
    let s = cluster.server();
    let client = cluster.client().await;
    let nodes: Vec<String> = eventually("two nodes", WAIT, || async {
        let (n, _) = client.list::<Node>("", &ListParams::default()).await.ok()?;
        let names: Vec<String> = n.into_iter().filter_map(|n| n.metadata.name).collect();
        (names.len() == 2).then_some(names)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dns.yaml");
    std::fs::write(&path, manifests(&nodes[0], &nodes[1])).unwrap();
    ok(&s, &["apply", "-f", path.to_str().unwrap()]);

    let dns: Service = client.get("kube-system", "kube-dns").await.unwrap();
    assert_eq!(
        dns.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some("10.43.0.10")
    );
    let phase = eventually("the client pod to finish", WAIT, || async {
        let p: Pod = client.get_opt("default", "client").await.ok()??;
        let phase = p.status?.phase?;
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
    })
    .await;
    let logs = ok(&s, &["logs", "client"]);
    assert_eq!(phase, "Succeeded", "{logs}\n{}", cluster.logs());

    let svc: Service = client.get("default", "mi-deploy-svc").await.unwrap();
    let cluster_ip = svc.spec.and_then(|s| s.cluster_ip).unwrap();
    let web0: Pod = client.get("default", "web-0").await.unwrap();
    let web0_ip = web0.status.and_then(|s| s.pod_ip).unwrap();
    let resolved: Vec<&str> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("RESOLVED "))
        .collect();
    let want: Vec<String> = NAMES
        .iter()
        .map(|n| {
            let ip = if n.starts_with("web-0") {
                &web0_ip
            } else {
                &cluster_ip
            };
            format!("{n}={ip}")
        })
        .collect();
    assert_eq!(resolved, want, "{logs}\n{}", cluster.logs());
    assert!(
        logs.contains("RESOLV nameserver 10.43.0.10")
            && logs.contains(
                "RESOLV search default.svc.cluster.local svc.cluster.local cluster.local"
            )
            && logs.contains("RESOLV options ndots:5"),
        "kubelet's resolv.conf:\n{logs}"
    );
    assert!(
        logs.contains("WGET ok"),
        "wget http://mi-deploy-svc/:\n{logs}"
    );
}
