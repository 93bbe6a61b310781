//! `corral port-forward` on the local rig, as a Kubernetes user runs it: a pod's HTTP server
//! serves 1,000 sequential requests and 20 concurrent connections through it; a port bound
//! only on 127.0.0.1 inside the pod is reachable (the agent dials inside the pod's network
//! namespace); `svc/NAME` follows a named targetPort; a refused port is reported in kubelet's
//! words. Ignored, as a figure: port-forward throughput against the pod IP.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use corral_api::k8s::api::core::v1::Pod;
use corral_tests::TestCluster;
use corral_tests::{corral, corral_command, eventually, pods, running, skip_unless_e2e};

const WAIT: Duration = Duration::from_secs(90);

/// One Deployment pod with three servers: busybox httpd on :80 (named `http`), one bound
/// only to 127.0.0.1:8081, and one on :8082 serving a 1 MiB and a 64 MiB file; a Service
/// whose port 8000 targets the named port.
const MANIFESTS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: fedek3/workshop-uns:v0.2.0
        ports: [{name: http, containerPort: 80}]
      - name: local
        image: fedek3/workshop-uns:v0.2.0
        command: [sh, -c, "mkdir -p /w && echo local-only > /w/index.html && exec httpd -f -p 127.0.0.1:8081 -h /w"]
      - name: files
        image: fedek3/workshop-uns:v0.2.0
        command: [sh, -c, "mkdir -p /f && dd if=/dev/zero of=/f/1m bs=1024 count=1024 && dd if=/dev/zero of=/f/big bs=1048576 count=64 && exec httpd -f -p 8082 -h /f"]
        ports: [{name: files, containerPort: 8082}]
---
apiVersion: v1
kind: Service
metadata:
  name: web-svc
spec:
  selector: {app: web}
  ports: [{name: web, port: 8000, targetPort: http}]
"#;

/// A running `corral port-forward`, interrupted (as Ctrl-C) when dropped.
struct PortForward {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl PortForward {
    fn start(server: &str, args: &[&str]) -> Self {
        let mut all = vec!["port-forward"];
        all.extend_from_slice(args);
        let mut child = corral_command(server, &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting corral port-forward");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        // Drained all along: "Handling connection for" is printed per connection.
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(|l| l.ok()) {
                let _ = tx.send(l);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(|l| l.ok()) {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        Self {
            child,
            lines,
            stderr,
        }
    }

    /// The first `n` `Forwarding from ADDR -> PORT` lines as (ADDR, PORT).
    fn forwarding(&self, n: usize) -> Vec<(String, u16)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no `Forwarding from` line in time; stderr:\n{}",
                    self.stderr()
                )
            });
            if let Some(rest) = line.strip_prefix("Forwarding from ") {
                let (addr, port) = rest.split_once(" -> ").expect("ADDR -> PORT");
                out.push((addr.to_string(), port.parse().unwrap()));
            }
        }
        out
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.0 GET on a fresh connection: (status, body).
fn get(addr: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "no HTTP header from {addr}: {:?}",
                String::from_utf8_lossy(&buf)
            )
        })?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status: {head}"))?;
    Ok((status, buf[split + 4..].to_vec()))
}

async fn web_pod(cluster: &TestCluster) -> Pod {
    let client = cluster.client().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yaml");
    std::fs::write(&path, MANIFESTS).unwrap();
    let (out, err, ok) = corral(&cluster.server(), &["apply", "-f", path.to_str().unwrap()]);
    assert!(ok, "apply failed:\n{out}\n{err}");
    eventually("the web pod to run and be ready", WAIT, || async {
        pods(&client, "app=web").await.into_iter().find(running)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_serves_pods_services_and_loopback_ports_and_reports_refused_ones() {
    skip_unless_e2e!();
    let cluster = TestCluster::create("portfwd", 1).await;
    let server = cluster.server();
    let pod = web_pod(&cluster).await;
    let name = pod.metadata.name.clone().unwrap();
    let target = format!("pod/{name}");

    // An explicit LOCAL: a port free a moment ago.
    let local = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let explicit = format!("{local}:8082");
    let pf = PortForward::start(&server, &[&target, ":80", ":8081", &explicit]);
    let fwd = pf.forwarding(3);
    assert!(fwd[0].0.starts_with("127.0.0.1:"), "{fwd:?}");
    assert_eq!(
        fwd.iter().map(|f| f.1).collect::<Vec<_>>(),
        [80, 8081, 8082]
    );
    assert_eq!(fwd[2].0, format!("127.0.0.1:{local}"));
    let (http, local_only, files) = (fwd[0].0.clone(), fwd[1].0.clone(), fwd[2].0.clone());

    // 1,000 sequential requests, each on its own connection and so its own stream.
    let started = Instant::now();
    for i in 0..1000 {
        let (status, body) = get(&http, "/").unwrap_or_else(|e| {
            panic!(
                "request {i}: {e}\nstderr:\n{}\n{}",
                pf.stderr(),
                cluster.logs()
            )
        });
        assert_eq!(status, 200, "request {i}");
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains(&format!("Hello from {name}")),
            "request {i}: {body}"
        );
    }
    eprintln!("1,000 sequential requests in {:?}", started.elapsed());

    // 20 connections at once, each fetching 1 MiB.
    let workers: Vec<_> = (0..20)
        .map(|_| {
            let files = files.clone();
            std::thread::spawn(move || get(&files, "/1m"))
        })
        .collect();
    for (i, w) in workers.into_iter().enumerate() {
        let (status, body) = w
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(status, 200);
        assert_eq!(body.len(), 1 << 20, "connection {i} got all of the file");
        assert!(body.iter().all(|b| *b == 0));
    }

    // Bound only on the pod's loopback: no address but the pod's own 127.0.0.1 reaches it.
    let (status, body) = get(&local_only, "/").unwrap();
    assert_eq!(
        (status, String::from_utf8_lossy(&body).trim()),
        (200, "local-only")
    );
    drop(pf);

    // A Service: port 8000 targets the pod's port named http (80).
    let pf = PortForward::start(&server, &["svc/web-svc", ":8000"]);
    let fwd = pf.forwarding(1);
    assert_eq!(fwd[0].1, 80, "svc port 8000 -> targetPort http -> 80");
    let (status, body) = get(&fwd[0].0, "/").unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("Hello from"));
    drop(pf);

    // Nothing listens on 81: the connection closes and the agent's error is printed.
    let pf = PortForward::start(&server, &["deployment/web", ":81"]);
    let fwd = pf.forwarding(1);
    assert!(
        get(&fwd[0].0, "/").is_err(),
        "no answer from a refused port"
    );
    let uid = pod.metadata.uid.clone().unwrap();
    let printed = eventually("the refused port's error", Duration::from_secs(10), || {
        let e = pf.stderr();
        std::future::ready(e.contains("connection refused").then_some(e))
    })
    .await;
    assert!(
        printed.contains(&format!("error forwarding port 81 to pod {uid}")),
        "{printed}"
    );
}

/// The figure: MB/s of a 64 MiB download through port-forward and straight from the pod
/// IP (the host routes to pod CIDRs), in the same run.
/// `cargo test -p corral-tests --test portforward -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark figure, not a check"]
async fn port_forward_throughput_against_direct() {
    skip_unless_e2e!();
    let cluster = TestCluster::create("pfbench", 1).await;
    let pod = web_pod(&cluster).await;
    let ip = pod.status.and_then(|s| s.pod_ip).unwrap();
    let target = format!("pod/{}", pod.metadata.name.unwrap());
    let pf = PortForward::start(&cluster.server(), &[&target, ":8082"]);
    let forwarded = pf.forwarding(1)[0].0.clone();
    let direct = format!("{ip}:8082");
    let mb = |addr: &str| {
        let t = Instant::now();
        let (status, body) = get(addr, "/big").unwrap();
        assert_eq!((status, body.len()), (200, 64 << 20));
        64.0 * 1.048_576 / t.elapsed().as_secs_f64()
    };
    // Warm both paths (page cache, first stream), then alternate.
    mb(&direct);
    mb(&forwarded);
    let (mut d, mut f) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        d.push(mb(&direct));
        f.push(mb(&forwarded));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (d, f) = (median(&mut d), median(&mut f));
    println!(
        "64 MiB download: direct {d:.0} MB/s, port-forward {f:.0} MB/s ({:.0}% of direct)",
        100.0 * f / d
    );
}
