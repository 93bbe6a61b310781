//! corral-proxy end to end: the real binary in a node netns, pods in their own netns on the
//! node's bridge, the control plane (with its Endpoints controller) in-process.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use common::*;
use corral_api::k8s::api::core::v1::{Endpoints, Service};
use corral_api::k8s::api::networking::v1::{Ingress, IngressClass};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use corral_proxy::loadgen::{get_once, Target};

const PODS: &[&str] = &["pod-a", "pod-b", "pod-c"];
const INGRESS_PORT: u16 = 80;

/// Sends `n` requests on fresh connections from the node netns; the answering pod names.
async fn names(rig: &Rig, target: &Target, n: usize) -> Vec<String> {
    let t = target.clone();
    rig.node_rt
        .run(async move {
            let mut out = vec![];
            for _ in 0..n {
                match get_once(&t, Duration::from_secs(2)).await {
                    Ok((200, body)) => out.push(body),
                    Ok((status, body)) => out.push(format!("{status} {body}")),
                    Err(e) => out.push(format!("error: {e}")),
                }
            }
            out
        })
        .await
}

async fn reaches_all(rig: &Rig, target: &Target, want: &[&str], what: &str) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let mut seen = BTreeSet::new();
    let mut last = vec![];
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen != want {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: saw {seen:?}, last answers {last:?}\n{}",
            rig.iptables_save()
        );
        last = names(rig, target, 6).await;
        for n in last.clone() {
            if want.contains(&n) {
                seen.insert(n);
            }
        }
    }
}

fn target(addr: SocketAddr, host: &str) -> Target {
    Target {
        addr,
        host: host.into(),
        path: "/".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_node_port_and_ingress_reach_ready_pods_only() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the corral-proxy end-to-end test: {why}");
        return;
    }
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let mut rig = Rig::new(PODS);
    let d = deploy(&mut rig).await;
    let (client, cluster_ip, node_port) = (d.client.clone(), d.cluster_ip, d.node_port);
    rig.start_proxy(INGRESS_PORT);

    let via_cluster_ip = target(SocketAddr::from((cluster_ip, 80)), "mi-app-svc");
    let via_node_port = target(SocketAddr::from((rig.node_ip, node_port)), "x");
    let via_ingress = target(SocketAddr::from((rig.node_ip, INGRESS_PORT)), "mi-app.com");
    reaches_all(
        &rig,
        &via_cluster_ip,
        PODS,
        "the ClusterIP reaching all pods",
    )
    .await;
    reaches_all(&rig, &via_node_port, PODS, "the NodePort reaching all pods").await;
    reaches_all(&rig, &via_ingress, PODS, "the Ingress reaching all pods").await;
    let unknown = names(&rig, &target(via_ingress.addr, "otro.com"), 1).await;
    assert!(unknown[0].starts_with("404"), "{unknown:?}");

    // The Ingress reports the node address.
    let node_ip = rig.node_ip.to_string();
    eventually(10, "ingress status with the node address", || {
        let client = client.clone();
        let node_ip = node_ip.clone();
        async move {
            let ing = client
                .get::<Ingress>("default", "mi-app-ingress")
                .await
                .ok()?;
            let ips: Vec<String> = ing
                .status?
                .load_balancer?
                .ingress?
                .into_iter()
                .filter_map(|i| i.ip)
                .collect();
            (ips == [node_ip]).then_some(())
        }
    })
    .await;

    // A pod leaving the endpoints gets no new connection within a second.
    let c = &rig.pods[2];
    let changed_at = Instant::now();
    set_ready(&client, &c.name, &c.ip.to_string(), false).await;
    let mut last_c = None;
    let mut clean_run = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while clean_run < 30 {
        assert!(Instant::now() < deadline, "pod-c kept receiving traffic");
        for n in names(&rig, &via_cluster_ip, 5).await {
            if n == "pod-c" {
                last_c = Some(Instant::now());
                clean_run = 0;
            } else {
                assert!(n == "pod-a" || n == "pod-b", "unexpected answer {n}");
                clean_run += 1;
            }
        }
    }
    if let Some(t) = last_c {
        let lag = t - changed_at;
        assert!(
            lag < Duration::from_secs(1),
            "pod-c answered {lag:?} after leaving"
        );
    }
    let ep = client
        .get::<Endpoints>("default", "mi-app-svc")
        .await
        .unwrap();
    assert_eq!(
        ep.subsets.unwrap()[0].not_ready_addresses.as_ref().unwrap()[0].ip,
        c.ip.to_string()
    );

    // No ready endpoint: the Ingress answers 503 and the ClusterIP refuses at once.
    for p in &rig.pods[..2] {
        set_ready(&client, &p.name, &p.ip.to_string(), false).await;
    }
    eventually(5, "503 from the ingress", || {
        let fut = names(&rig, &via_ingress, 1);
        async move { fut.await[0].starts_with("503").then_some(()) }
    })
    .await;
    eventually(5, "the ClusterIP refusing connections", || {
        let fut = names(&rig, &via_cluster_ip, 1);
        async move { fut.await[0].starts_with("error").then_some(()) }
    })
    .await;

    // A clean stop removes every rule; a restart rebuilds them; a crash and a restart leave
    // no duplicates.
    for p in &rig.pods {
        set_ready(&client, &p.name, &p.ip.to_string(), true).await;
    }
    reaches_all(&rig, &via_cluster_ip, PODS, "all pods back").await;
    assert!(rig.stop_proxy(), "corral-proxy exits cleanly on SIGTERM");
    let after_stop = rig.iptables_save();
    assert!(!after_stop.contains("CORRAL-"), "{after_stop}");
    rig.start_proxy(INGRESS_PORT);
    reaches_all(&rig, &via_cluster_ip, PODS, "rules rebuilt after restart").await;
    rig.kill_proxy();
    rig.start_proxy(INGRESS_PORT);
    reaches_all(
        &rig,
        &via_ingress,
        PODS,
        "ingress after a crash and restart",
    )
    .await;
    let save = rig.iptables_save();
    for chain in ["PREROUTING", "OUTPUT", "POSTROUTING", "INPUT", "FORWARD"] {
        let jumps = save
            .lines()
            .filter(|l| l.starts_with(&format!("-A {chain} ")) && l.contains("-j CORRAL-"))
            .count();
        let want = if chain == "OUTPUT" { 2 } else { 1 };
        assert_eq!(jumps, want, "jumps from {chain}\n{save}");
    }
    // One DNAT per pod of the Service (the API server's `default/kubernetes` has its own).
    assert_eq!(
        save.lines()
            .filter(|l| l.contains("--to-destination") && l.contains("default/mi-app-svc"))
            .count(),
        3,
        "{save}"
    );

    // A deleted Service takes its chains and rules along, the node port's included.
    let chains: BTreeSet<String> = save
        .lines()
        .filter(|l| l.contains("\"default/mi-app-svc"))
        .flat_map(|l| l.split_whitespace())
        .filter(|w| {
            ["CORRAL-SVC-", "CORRAL-SEP-", "CORRAL-EXT-"]
                .iter()
                .any(|p| w.starts_with(p))
        })
        .map(str::to_string)
        .collect();
    assert_eq!(chains.len(), 5, "1 SVC, 3 SEP, 1 EXT chains\n{save}");
    client
        .delete::<Service>("default", "mi-app-svc", Default::default())
        .await
        .unwrap();
    let node_port_match = format!("--dport {node_port} ");
    let save = eventually(5, "the deleted service's rules gone", || {
        let save = rig.iptables_save();
        let gone = !save.lines().any(|l| {
            l.contains("default/mi-app-svc")
                || l.contains(&node_port_match)
                || chains.iter().any(|c| l.contains(c.as_str()))
        });
        async move { gone.then_some(save) }
    })
    .await;
    // The proxy's own chains and jumps stay for the next service.
    assert!(save.contains(":CORRAL-SERVICES"), "{save}");
    assert!(save.contains("-j CORRAL-NODEPORTS"), "{save}");
    assert!(rig.stop_proxy());
    assert!(!rig.iptables_save().contains("CORRAL-"));
}

/// Answers on fresh connections, asserting they are all the same pod; returns it.
async fn one_pod(rig: &Rig, target: &Target, n: usize, what: &str) -> String {
    let got = names(rig, target, n).await;
    assert!(PODS.contains(&got[0].as_str()), "{what}: {got:?}");
    assert!(got.iter().all(|g| *g == got[0]), "{what}: {got:?}");
    got[0].clone()
}

async fn set_affinity(client: &corral_api::Client, affinity: &str, timeout: Option<i32>) {
    use corral_api::k8s::api::core::v1::{ClientIPConfig, SessionAffinityConfig};
    let mut svc = client
        .get::<Service>("default", "mi-app-svc")
        .await
        .unwrap();
    let spec = svc.spec.as_mut().unwrap();
    spec.session_affinity = Some(affinity.into());
    spec.session_affinity_config = timeout.map(|t| SessionAffinityConfig {
        client_ip: Some(ClientIPConfig {
            timeout_seconds: Some(t),
        }),
    });
    client.update(&svc).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_keeps_fresh_connections_on_one_pod() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the corral-proxy end-to-end test: {why}");
        return;
    }
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let mut rig = Rig::new(PODS);
    let d = deploy(&mut rig).await;
    rig.start_proxy(INGRESS_PORT);
    let via_cluster_ip = target(SocketAddr::from((d.cluster_ip, 80)), "mi-app-svc");
    let via_node_port = target(SocketAddr::from((rig.node_ip, d.node_port)), "x");

    // Without affinity, fresh connections from one client spread over the pods.
    reaches_all(&rig, &via_cluster_ip, PODS, "connections spreading").await;

    set_affinity(&d.client, "ClientIP", Some(300)).await;
    eventually(5, "the affinity rules", || {
        let save = rig.iptables_save();
        async move { save.contains("--rcheck --seconds 300 --reap").then_some(()) }
    })
    .await;
    let pinned = one_pod(&rig, &via_cluster_ip, 40, "ClusterIP with affinity").await;
    // The node port reaches the same service chain and its client lists.
    let np = one_pod(&rig, &via_node_port, 20, "NodePort with affinity").await;
    assert_eq!(np, pinned);

    // The pinned pod leaving moves the client to another one, which then sticks.
    let p = rig.pods.iter().find(|p| p.name == pinned).unwrap();
    set_ready(&d.client, &p.name, &p.ip.to_string(), false).await;
    let moved = eventually(5, "the client moving off the unready pod", || {
        let fut = names(&rig, &via_cluster_ip, 1);
        let pinned = pinned.clone();
        async move {
            let n = fut.await.remove(0);
            (PODS.contains(&n.as_str()) && n != pinned).then_some(n)
        }
    })
    .await;
    assert_eq!(
        one_pod(&rig, &via_cluster_ip, 20, "after the move").await,
        moved
    );

    // Affinity off again: back to spreading.
    set_ready(&d.client, &p.name, &p.ip.to_string(), true).await;
    set_affinity(&d.client, "None", None).await;
    reaches_all(
        &rig,
        &via_cluster_ip,
        PODS,
        "spreading after affinity is off",
    )
    .await;
    assert!(!rig.iptables_save().contains("-m recent"));
    assert!(rig.stop_proxy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_serves_its_class_and_unclassed_ingresses_but_not_other_classes() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the corral-proxy end-to-end test: {why}");
        return;
    }
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let mut rig = Rig::new(PODS);
    let d = deploy(&mut rig).await;
    rig.start_proxy(INGRESS_PORT);
    let client = d.client.clone();

    // The proxy creates the default class for its controller.
    let class = eventually(10, "the corral IngressClass", || {
        let client = client.clone();
        async move { client.get_opt::<IngressClass>("", "corral").await.ok()? }
    })
    .await;
    assert_eq!(
        class.spec.unwrap().controller.as_deref(),
        Some("corral.io/ingress")
    );
    assert_eq!(
        class.metadata.annotations.unwrap()["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );

    // An Ingress of another class, then one naming ours: once ours is served, the proxy has
    // seen the other (watch events arrive in order), which must stay a 404.
    let base = client
        .get::<Ingress>("default", "mi-app-ingress")
        .await
        .unwrap();
    for (name, class, host) in [
        ("nginx-ingress", "nginx", "nginx.mi-app.com"),
        ("corral-ingress", "corral", "corral.mi-app.com"),
    ] {
        let mut ing = base.clone();
        ing.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        ing.status = None;
        let spec = ing.spec.as_mut().unwrap();
        spec.ingress_class_name = Some(class.into());
        spec.rules.as_mut().unwrap()[0].host = Some(host.into());
        client.create(&ing).await.unwrap();
    }
    let addr = SocketAddr::from((rig.node_ip, INGRESS_PORT));
    reaches_all(
        &rig,
        &target(addr, "corral.mi-app.com"),
        PODS,
        "the corral-class Ingress",
    )
    .await;
    reaches_all(
        &rig,
        &target(addr, "mi-app.com"),
        PODS,
        "the unclassed Ingress",
    )
    .await;
    let other = names(&rig, &target(addr, "nginx.mi-app.com"), 3).await;
    assert!(other.iter().all(|a| a.starts_with("404")), "{other:?}");
    // Nor does it get this proxy's address in its status.
    eventually(10, "the corral-class Ingress status", || {
        let client = client.clone();
        async move {
            let ing = client
                .get::<Ingress>("default", "corral-ingress")
                .await
                .ok()?;
            ing.status?.load_balancer?.ingress.map(|_| ())
        }
    })
    .await;
    let nginx = client
        .get::<Ingress>("default", "nginx-ingress")
        .await
        .unwrap();
    let lb = nginx
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|l| l.ingress);
    assert!(lb.as_ref().is_none_or(|l| l.is_empty()), "{lb:?}");
    assert!(rig.stop_proxy());
}

/// Keep-alive GET loops through the Ingress until `stop`: answers by pod name, failures
/// (non-200 statuses and connection errors) as text.
struct Looper {
    ok: Arc<AtomicU64>,
    failures: Arc<parking_lot::Mutex<Vec<String>>>,
    answers: Arc<parking_lot::Mutex<Vec<String>>>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Looper {
    fn start(rig: &Rig, target: &Target, workers: usize) -> Looper {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(parking_lot::Mutex::new(vec![]));
        let answers = Arc::new(parking_lot::Mutex::new(vec![]));
        let tasks = (0..workers)
            .map(|_| {
                let (t, stopped) = (target.clone(), stopped.clone());
                let (ok, failures, answers) = (ok.clone(), failures.clone(), answers.clone());
                rig.node_rt.handle.spawn(async move {
                    let mut sender = None;
                    while !*stopped.borrow() {
                        if sender.is_none() {
                            match tokio::net::TcpStream::connect(t.addr).await {
                                Ok(s) => {
                                    let io = hyper_util::rt::TokioIo::new(s);
                                    match hyper::client::conn::http1::handshake(io).await {
                                        Ok((s, conn)) => {
                                            tokio::spawn(conn);
                                            sender = Some(s);
                                        }
                                        Err(e) => failures.lock().push(format!("handshake: {e}")),
                                    }
                                }
                                Err(e) => failures.lock().push(format!("connect: {e}")),
                            }
                            continue;
                        }
                        let s: &mut hyper::client::conn::http1::SendRequest<
                            http_body_util::Empty<bytes::Bytes>,
                        > = sender.as_mut().unwrap();
                        let req = http::Request::get("/")
                            .header(http::header::HOST, t.host.as_str())
                            .body(http_body_util::Empty::new())
                            .unwrap();
                        let res = async {
                            let resp = s.send_request(req).await?;
                            let status = resp.status().as_u16();
                            let body = resp.into_body().collect().await?.to_bytes();
                            Ok::<_, hyper::Error>((
                                status,
                                String::from_utf8_lossy(&body).trim().to_string(),
                            ))
                        }
                        .await;
                        match res {
                            Ok((200, name)) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                                answers.lock().push(name);
                            }
                            Ok((status, body)) => failures.lock().push(format!("{status} {body}")),
                            Err(e) => {
                                failures.lock().push(format!("request: {e}"));
                                sender = None;
                            }
                        }
                    }
                })
            })
            .collect();
        Looper {
            ok,
            failures,
            answers,
            stop,
            tasks,
        }
    }

    async fn wait_for(&self, n: u64, what: &str) {
        let ok = self.ok.clone();
        let failures = self.failures.clone();
        eventually(20, what, || {
            let done = ok.load(Ordering::SeqCst) >= n || !failures.lock().is_empty();
            async move { done.then_some(()) }
        })
        .await;
    }

    async fn finish(self) -> (u64, Vec<String>) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let failures = self.failures.lock().clone();
        (self.ok.load(Ordering::SeqCst), failures)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_gets_survive_a_listed_pod_whose_server_is_gone() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the corral-proxy end-to-end test: {why}");
        return;
    }
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let mut rig = Rig::new(PODS);
    let d = deploy(&mut rig).await;
    rig.start_proxy(INGRESS_PORT);
    let via_ingress = target(SocketAddr::from((rig.node_ip, INGRESS_PORT)), "mi-app.com");
    reaches_all(&rig, &via_ingress, PODS, "the Ingress reaching all pods").await;

    // Clients loop on keep-alive connections, so the proxy holds pooled connections to every
    // pod; then pod-c's server dies while the Endpoints still list it (as a pod does between
    // its process exiting and the endpoint update): its pooled connections are closed and new
    // ones are refused.
    let looper = Looper::start(&rig, &via_ingress, 4);
    looper.wait_for(300, "GETs through the ingress").await;
    let before = looper.answers.lock().len();
    let c = rig.pods.len() - 1;
    let ns = rig.pods[c].netns.0.clone();
    drop(std::mem::replace(
        &mut rig.pods[c].rt,
        NsRuntime::new(&ns, 1),
    ));
    let after = looper.ok.load(Ordering::SeqCst);
    looper
        .wait_for(after + 1000, "GETs after pod-c's server died")
        .await;
    let answers: Vec<String> = looper.answers.lock()[before..].to_vec();
    let (ok, failures) = looper.finish().await;
    assert!(
        failures.is_empty(),
        "{} failed GETs: {failures:?}",
        failures.len()
    );
    assert!(ok > after + 1000);
    // pod-c stays listed, and requests that went its way were answered by the others.
    let ep = d
        .client
        .get::<Endpoints>("default", "mi-app-svc")
        .await
        .unwrap();
    let listed: Vec<String> = ep.subsets.unwrap()[0]
        .addresses
        .iter()
        .flatten()
        .map(|a| a.ip.clone())
        .collect();
    assert!(listed.contains(&rig.pods[c].ip.to_string()), "{listed:?}");
    let last: BTreeSet<&String> = answers[answers.len() - 300..].iter().collect();
    assert!(!last.contains(&"pod-c".to_string()), "{last:?}");
    assert_eq!(last.len(), 2, "both live pods keep answering: {last:?}");

    // A POST with a body to the dead pod never left the proxy either: it goes elsewhere too.
    let posts = rig
        .node_rt
        .run(async move {
            let mut out = vec![];
            for _ in 0..6 {
                let s = tokio::net::TcpStream::connect(via_ingress.addr)
                    .await
                    .unwrap();
                let (mut s, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let req = http::Request::post("/")
                    .header(http::header::HOST, "mi-app.com")
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x=1")))
                    .unwrap();
                let resp = s.send_request(req).await.unwrap();
                out.push(resp.status().as_u16());
            }
            out
        })
        .await;
    assert!(posts.iter().all(|s| *s == 200), "{posts:?}");
    assert!(rig.stop_proxy());
}
