//! A one-node rig in network namespaces for the proxy's end-to-end test and benchmark:
//! a "node" netns with a bridge and a node address, "pod" netns on the bridge serving HTTP
//! (answering their own name), the control plane in-process (reached from the node netns
//! through a loopback relay), and the real corral-proxy binary started in the node netns.
//! Host blackhole routes cover every CIDR used; Drop guards remove netns, routes and processes.
#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use corral_api::k8s::api::core::v1::{
    Container, Node, NodeAddress, NodeCondition, NodeStatus, Pod, PodCondition, PodSpec, PodStatus,
    Service, ServicePort, ServiceSpec,
};
use corral_api::k8s::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use corral_api::k8s::apimachinery::pkg::util::intstr::IntOrString;
use corral_api::Client;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

pub fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn must(args: &[&str]) -> String {
    sh(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Why the rig cannot run here, if it cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (network namespaces)".into());
    }
    for bin in ["iptables-restore", "iptables-save", "ip", "nsenter"] {
        if sh(&["sh", "-c", &format!("command -v {bin}")]).is_err() {
            return Some(format!("{bin} is not installed"));
        }
    }
    None
}

/// A network namespace, deleted on drop (with the interfaces and iptables rules inside).
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: &str) -> Result<Self, String> {
        sh(&["ip", "netns", "add", name])?;
        let ns = Netns(name.to_string());
        sh(&["ip", "-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
    /// Runs a command inside (nsenter, as a process started in the netns).
    pub fn exec(&self, args: &[&str]) -> Result<String, String> {
        let net = format!("--net={}", self.path());
        let mut full = vec!["nsenter", net.as_str(), "--"];
        full.extend_from_slice(args);
        sh(&full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.0]);
    }
}

/// A host blackhole route, so test addresses never leave the machine.
pub struct Blackhole(String);

impl Blackhole {
    pub fn new(cidr: &str) -> Result<Self, String> {
        sh(&["ip", "route", "add", "blackhole", cidr])?;
        Ok(Blackhole(cidr.into()))
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = sh(&["ip", "route", "del", "blackhole", &self.0]);
    }
}

/// A Tokio runtime whose threads live in a network namespace: every socket its tasks open is
/// in that namespace. Stopped on drop.
pub struct NsRuntime {
    pub handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    pub fn new(netns: &str, workers: usize) -> Self {
        let path = format!("/run/netns/{netns}");
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            // Worker threads are cloned from this one and inherit its namespace.
            let rt = if workers <= 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
            }
            .expect("runtime");
            tx.send(rt.handle().clone()).expect("send handle");
            rt.block_on(async {
                let _ = stopped.await;
            });
            rt.shutdown_background();
        });
        let handle = rx.recv().expect("runtime started");
        NsRuntime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Runs `fut` inside the namespace and waits for it.
    pub async fn run<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut).await.expect("task in netns")
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `200 <name>` on every request, forever (until the runtime stops).
pub async fn name_server(listener: tokio::net::TcpListener, name: String) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let name = name.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req| {
                let body = Bytes::from(format!("{name}\n"));
                async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body))) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Forwards connections made to `listener` (accepted in some netns) to `target`, connecting
/// from the `host` runtime (host netns loopback).
pub async fn relay(
    listener: tokio::net::TcpListener,
    target: SocketAddr,
    host: tokio::runtime::Handle,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let Ok(inbound) = inbound.into_std() else {
            continue;
        };
        host.spawn(async move {
            let Ok(mut inbound) = tokio::net::TcpStream::from_std(inbound) else {
                return;
            };
            if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
            }
        });
    }
}

pub struct PodNs {
    pub name: String,
    pub ip: Ipv4Addr,
    pub rt: NsRuntime,
    pub netns: Netns,
}

/// The rig. Field order is drop order: processes and runtimes before namespaces and routes.
pub struct Rig {
    pub proxy: Option<Child>,
    pub relay_rt: NsRuntime,
    pub node_rt: NsRuntime,
    pub pods: Vec<PodNs>,
    pub node: Netns,
    pub node_ip: Ipv4Addr,
    pub pod_cidr: String,
    pub service_cidr: String,
    /// Control plane URL as seen from the node netns.
    pub server_in_node: String,
    /// The node's kubeconfig (its `system:node:node-1` certificate), written by `deploy`.
    pub kubeconfig: Option<std::path::PathBuf>,
    _routes: Vec<Blackhole>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Rig {
    /// Builds the namespaces and starts the pods' servers.
    pub fn new(pods: &[&str]) -> Rig {
        // A free /24 triple: another test holding it makes the blackhole route fail.
        let mut last_err = String::new();
        for _ in 0..20 {
            let x = 20 + (std::process::id() + SEQ.fetch_add(7, Ordering::SeqCst)) % 200;
            match Self::with_subnet(x, pods) {
                Ok(r) => return r,
                Err(e) => last_err = e,
            }
        }
        panic!("could not build the rig: {last_err}");
    }

    fn with_subnet(x: u32, pods: &[&str]) -> Result<Rig, String> {
        let pod_cidr = format!("10.250.{x}.0/24");
        let node_cidr = format!("10.251.{x}.0/24");
        let service_cidr = format!("10.252.{x}.0/24");
        let routes = vec![
            Blackhole::new(&pod_cidr)?,
            Blackhole::new(&node_cidr)?,
            Blackhole::new(&service_cidr)?,
        ];
        let node = Netns::new(&format!("cpx-node-{x}"))?;
        let n = node.0.clone();
        let node_ip: Ipv4Addr = format!("10.251.{x}.1").parse().unwrap();
        sh(&["ip", "-n", &n, "link", "add", "cbr0", "type", "bridge"])?;
        sh(&[
            "ip",
            "-n",
            &n,
            "addr",
            "add",
            &format!("10.250.{x}.1/24"),
            "dev",
            "cbr0",
        ])?;
        sh(&["ip", "-n", &n, "link", "set", "cbr0", "up"])?;
        // The node's "uplink": a veth whose peer stays in the node too (no dummy module here).
        sh(&[
            "ip",
            "-n",
            &n,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0-peer",
        ])?;

        sh(&[
            "ip",
            "-n",
            &n,
            "addr",
            "add",
            &format!("{node_ip}/24"),
            "dev",
            "eth0",
        ])?;
        sh(&["ip", "-n", &n, "link", "set", "eth0", "up"])?;
        // Service IPs need a route before the OUTPUT DNAT happens, as on any node: a default
        // route out of the uplink (its peer is down, so nothing un-NATed goes anywhere).
        sh(&[
            "ip",
            "-n",
            &n,
            "route",
            "add",
            "default",
            "via",
            &format!("10.251.{x}.254"),
            "dev",
            "eth0",
        ])?;
        node.exec(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
        let mut out = vec![];
        for (i, name) in pods.iter().enumerate() {
            let ns = Netns::new(&format!("cpx-pod-{x}-{i}"))?;
            let ip: Ipv4Addr = format!("10.250.{x}.{}", 10 + i).parse().unwrap();
            let host_if = format!("veth{i}");
            sh(&[
                "ip", "-n", &n, "link", "add", &host_if, "type", "veth", "peer", "name", "eth0",
                "netns", &ns.0,
            ])?;
            sh(&[
                "ip", "-n", &n, "link", "set", &host_if, "master", "cbr0", "up",
            ])?;
            sh(&[
                "ip",
                "-n",
                &ns.0,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ])?;
            sh(&["ip", "-n", &ns.0, "link", "set", "eth0", "up"])?;
            sh(&[
                "ip",
                "-n",
                &ns.0,
                "route",
                "add",
                "default",
                "via",
                &format!("10.250.{x}.1"),
            ])?;
            let rt = NsRuntime::new(&ns.0, 1);
            let name_s = name.to_string();
            rt.handle.spawn(async move {
                let l = tokio::net::TcpListener::bind("0.0.0.0:80")
                    .await
                    .expect("bind pod port");
                name_server(l, name_s).await
            });
            out.push(PodNs {
                name: name.to_string(),
                ip,
                rt,
                netns: ns,
            });
        }
        let node_rt = NsRuntime::new(&n, 2);
        let relay_rt = NsRuntime::new(&n, 1);
        Ok(Rig {
            proxy: None,
            relay_rt,
            node_rt,
            pods: out,
            node,
            node_ip,
            pod_cidr,
            service_cidr,
            server_in_node: String::new(),
            kubeconfig: None,
            _routes: routes,
        })
    }

    /// Makes the control plane at `cp` (host loopback) reachable from the node netns.
    pub fn start_relay(&mut self, cp: SocketAddr) {
        let host = tokio::runtime::Handle::current();
        let (ltx, lrx) = std::sync::mpsc::channel();
        self.relay_rt.handle.spawn(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind relay");
            ltx.send(l.local_addr().unwrap()).unwrap();
            relay(l, cp, host).await
        });
        let addr = lrx.recv().expect("relay started");
        self.server_in_node = format!("https://{addr}");
    }

    /// Starts the real corral-proxy binary in the node netns.
    pub fn start_proxy(&mut self, ingress_port: u16) {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.node.path()))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_corral-proxy"))
            .args(["--server", &self.server_in_node, "--node-name", "node-1"])
            .arg("--kubeconfig")
            .arg(
                self.kubeconfig
                    .as_ref()
                    .expect("deploy writes the node's kubeconfig"),
            )
            .args(["--ingress-port", &ingress_port.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("start corral-proxy");
        self.proxy = Some(child);
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn stop_proxy(&mut self) -> bool {
        let Some(mut child) = self.proxy.take() else {
            return true;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill_proxy(&mut self) {
        if let Some(mut child) = self.proxy.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn iptables_save(&self) -> String {
        let mut s = self
            .node
            .exec(&["iptables-save", "-t", "nat"])
            .unwrap_or_default();
        s.push_str(
            &self
                .node
                .exec(&["iptables-save", "-t", "filter"])
                .unwrap_or_default(),
        );
        s
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.kill_proxy();
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        ..Default::default()
    }
}

fn labels() -> std::collections::BTreeMap<String, String> {
    [("app".to_string(), "mi-app".to_string())]
        .into_iter()
        .collect()
}

pub async fn set_ready(client: &Client, name: &str, ip: &str, ready: bool) {
    let mut p = client.get::<Pod>("default", name).await.unwrap();
    p.metadata.resource_version = None;
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some(ip.into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    client.update_status(&p).await.unwrap();
}

/// The cluster state the proxy serves: a Ready node, the rig's pods (Ready, with their IPs,
/// labelled `app=mi-app`), NodePort Service `mi-app-svc` (80 → 80) and Ingress
/// `mi-app-ingress` (`mi-app.com/` → the service). The control plane runs its controllers, so
/// the Endpoints come from the Endpoints controller.
pub struct Deployed {
    pub client: Client,
    pub cluster_ip: Ipv4Addr,
    pub node_port: u16,
    _cp: corral_controlplane::Running,
    _dir: tempfile::TempDir,
}

pub async fn deploy(rig: &mut Rig) -> Deployed {
    let dir = tempfile::tempdir().unwrap();
    let cp = corral_controlplane::start(corral_controlplane::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        service_cidr: rig.service_cidr.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = cp.client().await.unwrap();
    rig.start_relay(cp.addr);
    let kubeconfig = dir.path().join("node-1.kubeconfig");
    let creds = cp
        .credentials_for("system:node:node-1", &["system:nodes"])
        .unwrap();
    corral_api::kubeconfig::write(&kubeconfig, "corral", &rig.server_in_node, &creds).unwrap();
    rig.kubeconfig = Some(kubeconfig);

    // The node (Ready, with its InternalIP) and the pods, Ready with their IPs.
    let node = client
        .create(&Node {
            metadata: ObjectMeta {
                name: Some("node-1".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
    let mut node = node;
    node.status = Some(NodeStatus {
        addresses: Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: rig.node_ip.to_string(),
        }]),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    node.metadata.resource_version = None;
    client.update_status(&node).await.unwrap();
    for p in &rig.pods {
        let mut m = meta(&p.name);
        m.labels = Some(labels());
        client
            .create(&Pod {
                metadata: m,
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("fedek3/workshop-uns:v0.2.0".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        set_ready(&client, &p.name, &p.ip.to_string(), true).await;
    }
    let svc = client
        .create(&Service {
            metadata: meta("mi-app-svc"),
            spec: Some(ServiceSpec {
                type_: Some("NodePort".into()),
                selector: Some(labels()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::Int(80)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let spec = svc.spec.unwrap();
    let cluster_ip: std::net::Ipv4Addr = spec.cluster_ip.unwrap().parse().unwrap();
    let node_port = spec.ports.unwrap()[0].node_port.unwrap() as u16;
    client
        .create(&Ingress {
            metadata: meta("mi-app-ingress"),
            spec: Some(IngressSpec {
                rules: Some(vec![IngressRule {
                    host: Some("mi-app.com".into()),
                    http: Some(HTTPIngressRuleValue {
                        paths: vec![HTTPIngressPath {
                            path: Some("/".into()),
                            path_type: "Prefix".into(),
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: "mi-app-svc".into(),
                                    port: Some(ServiceBackendPort {
                                        number: Some(80),
                                        ..Default::default()
                                    }),
                                }),
                                ..Default::default()
                            },
                        }],
                    }),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let spec_ = (cluster_ip, node_port);
    Deployed {
        client,
        cluster_ip: spec_.0,
        node_port: spec_.1,
        _cp: cp,
        _dir: dir,
    }
}

/// Polls `check` every 20 ms until it returns Some, failing after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
