//! Cluster DNS on the local rig: a pod on one node resolves the workshop Service (on the
//! other node) by every name form a Kubernetes user writes, a headless StatefulSet's pod by
//! its name, and fetches the Service by name, through the node-local DNS behind kube-dns.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

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

/// The figure: cluster DNS as a pod sees it. 16 clients in the network namespace of a pod
/// (threads that entered it, as the pod's own processes would be) ask 10.43.0.10 for a
/// Service name in a closed loop for 3 s, through the node's DNAT to its proxy's resolver.
/// `cargo test -p corral-tests --release --test dns -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figure: DNS queries/s and p99 from a pod"]
async fn figure_dns_queries_per_second_from_a_pod() {
    skip_unless_e2e!();
    let cluster = TestCluster::create("dnsfig", 1).await;
    let s = cluster.server();
    let client = cluster.client().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fig.yaml");
    std::fs::write(&path, FIGURE_MANIFESTS).unwrap();
    ok(&s, &["apply", "-f", path.to_str().unwrap()]);
    let uid = eventually("the client pod to run", WAIT, || async {
        let p: Pod = client.get_opt("default", "client").await.ok()??;
        corral_tests::running(&p).then_some(p.metadata.uid?)
    })
    .await;
    let netns = cluster
        .state
        .layout
        .run_dir
        .join("netns")
        .join(format!("corral-{uid}"));
    let query = {
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("mi-deploy-svc.default.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        q.to_vec().unwrap()
    };
    let run = Duration::from_secs(3);
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| ask_from(&netns, &query, run)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });
    let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut lost = 0;
    for (h, l) in results {
        all.add(h).unwrap();
        lost += l;
    }
    assert!(
        !all.is_empty(),
        "no answer from the cluster DNS\n{}",
        cluster.logs()
    );
    println!(
        "cluster DNS from a pod: {} answers in {run:?} = {:.0} q/s, {lost} unanswered within 1 s; \
         latency p50 {} us, p99 {} us, max {} us",
        all.len(),
        all.len() as f64 / run.as_secs_f64(),
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99),
        all.max()
    );
}

const FIGURE_MANIFESTS: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: mi-deploy-svc
spec:
  selector: {app: mi-deploy}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  containers:
  - name: c
    image: fedek3/workshop-uns:v0.2.0
    command: ["sleep", "3600"]
"#;

/// One closed-loop client inside network namespace `netns`: the latencies of its answers
/// (µs) and how many queries went unanswered within a second.
fn ask_from(netns: &std::path::Path, query: &[u8], run: Duration) -> (Histogram<u64>, u64) {
    let ns = std::fs::File::open(netns).unwrap_or_else(|e| panic!("{}: {e}", netns.display()));
    // setns changes only this thread's namespace; the socket is made inside it.
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.connect("10.43.0.10:53").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut h = Histogram::<u64>::new(3).unwrap();
    let mut lost = 0;
    let mut buf = [0u8; 512];
    let until = Instant::now() + run;
    while Instant::now() < until {
        let t = Instant::now();
        sock.send(query).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) if n > 12 => h.record(t.elapsed().as_micros() as u64).unwrap(),
            _ => lost += 1,
        }
    }
    (h, lost)
}
