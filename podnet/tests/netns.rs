//! The executor in real network namespaces: nodes on a bridge (inside a hub namespace, so the
//! host is never touched), a "pod" namespace behind each node, and the pod network between
//! them with host-gw routes and with VXLAN; iptables chains appear and go exactly. Needs root
//! and iproute2. Addresses in 10.62.0.0/16; every namespace has `podnet` in its name.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_podnet::netlink::{sync, Netlink};
use corral_podnet::{iptables, Cidr, Mode, NodeInfo};

macro_rules! skip_unless_root {
    () => {
        let missing = ["ip", "iptables-save", "iptables-restore"]
            .into_iter()
            .find(|b| Command::new(b).arg("-V").output().is_err());
        let why = if !nix::unistd::Uid::effective().is_root() {
            Some("not root".to_string())
        } else {
            missing.map(|b| format!("{b} is not installed"))
        };
        if let Some(why) = why {
            if std::env::var_os("CI").is_some() {
                panic!("end-to-end test cannot run in CI: {why}");
            }
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread inside network namespace `ns` (a thread's namespace is its own, and
/// processes it starts inherit it).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("netns file");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// Runs one async executor call inside `ns` on its own runtime.
fn block_in<T: Send + 'static, F: std::future::Future<Output = T>>(
    ns: &str,
    f: impl FnOnce(Netlink) -> F + Send + 'static,
) -> T {
    in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move { f(Netlink::connect().unwrap()).await })
    })
}

/// A hub namespace with a bridge, nodes `10.62.0.(10+i)` with pod CIDRs `10.62.(i+1).0/24`,
/// and a pod `10.62.(i+1).2` behind each node. Everything is removed on drop.
struct Lab {
    hub: String,
    nodes: Vec<String>,
    pods: Vec<String>,
}

fn lab(tag: &str, n: usize) -> Lab {
    let base = format!("podnet-{tag}-{}", std::process::id());
    let l = Lab {
        hub: format!("{base}-hub"),
        nodes: (0..n).map(|i| format!("{base}-n{i}")).collect(),
        pods: (0..n).map(|i| format!("{base}-p{i}")).collect(),
    };
    for ns in [&l.hub].into_iter().chain(&l.nodes).chain(&l.pods) {
        ip(&["netns", "add", ns]);
    }
    ip(&["-n", &l.hub, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &l.hub, "link", "set", "br0", "up"]);
    for i in 0..n {
        let (node, pod) = (&l.nodes[i], &l.pods[i]);
        let port = format!("n{i}");
        ip(&[
            "-n", &l.hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            node,
        ]);
        ip(&["-n", &l.hub, "link", "set", &port, "master", "br0", "up"]);
        ip(&[
            "-n",
            node,
            "addr",
            "add",
            &format!("{}/24", node_ip(i)),
            "dev",
            "eth0",
        ]);
        ip(&["-n", node, "link", "set", "eth0", "up"]);
        ip(&["-n", node, "link", "set", "lo", "up"]);
        ip(&[
            "-n", node, "link", "add", "pod", "type", "veth", "peer", "name", "eth0", "netns", pod,
        ]);
        ip(&[
            "-n",
            node,
            "addr",
            "add",
            &format!("10.62.{}.1/24", i + 1),
            "dev",
            "pod",
        ]);
        ip(&["-n", node, "link", "set", "pod", "up"]);
        ip(&[
            "-n",
            pod,
            "addr",
            "add",
            &format!("{}/24", pod_ip(i)),
            "dev",
            "eth0",
        ]);
        ip(&["-n", pod, "link", "set", "eth0", "up"]);
        ip(&["-n", pod, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            pod,
            "route",
            "add",
            "default",
            "via",
            &format!("10.62.{}.1", i + 1),
        ]);
        in_netns(node, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap()
        });
    }
    l
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.hub].into_iter().chain(&self.nodes).chain(&self.pods) {
            let _ = Command::new("ip").args(["netns", "delete", ns]).output();
        }
    }
}

fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 62, 0, 10 + i as u8)
}

fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 62, i as u8 + 1, 2)
}

fn scope() -> Cidr {
    "10.62.0.0/16".parse().unwrap()
}

/// Node `i` named `n{i}` (for calls that cannot borrow the lab).
fn info_plain(i: usize) -> NodeInfo {
    NodeInfo {
        name: format!("n{i}"),
        pod_cidr: Some(format!("10.62.{}.0/24", i + 1).parse().unwrap()),
        ip: Some(node_ip(i)),
        vtep_mac: None,
    }
}

fn info(l: &Lab, i: usize, mac: Option<[u8; 6]>) -> NodeInfo {
    NodeInfo {
        name: l.nodes[i].clone(),
        pod_cidr: Some(format!("10.62.{}.0/24", i + 1).parse().unwrap()),
        ip: Some(node_ip(i)),
        vtep_mac: mac,
    }
}

/// Syncs node `i` of `l` against `nodes`; returns its VTEP MAC (VXLAN).
fn sync_node(l: &Lab, i: usize, mode: Mode, nodes: Vec<NodeInfo>) -> Option<[u8; 6]> {
    let this = l.nodes[i].clone();
    block_in(&l.nodes[i], move |nl| async move {
        let (report, mac) = sync(&nl, mode, Some(&this), Some(node_ip(i)), scope(), &nodes)
            .await
            .unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        mac
    })
}

/// Pod `from` opens a TCP connection to pod `to` and gets a byte back, within 10 s.
fn pods_talk(l: &Lab, from: usize, to: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let addr = SocketAddr::from((pod_ip(to), 7070));
    let listener = in_netns(&l.pods[to], move || TcpListener::bind(addr).unwrap());
    listener.set_nonblocking(true).unwrap();
    let s2 = stop.clone();
    let server = std::thread::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            if let Ok((mut c, _)) = listener.accept() {
                let _ = c.write_all(b"k");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let ok = in_netns(&l.pods[from], move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                let mut b = [0u8; 1];
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                if c.read_exact(&mut b).is_ok() && b == *b"k" {
                    return true;
                }
            }
        }
        false
    });
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert!(ok, "pod {from} could not reach pod {to} at {addr}");
}

fn routes77(ns: &str) -> String {
    ip(&["-n", ns, "route", "show", "proto", "77"])
}

#[test]
fn host_gw_routes_connect_pods_across_nodes_and_follow_the_nodes() {
    skip_unless_root!();
    let l = lab("gw", 3);
    // A route of another protocol inside the managed range is not ours: it stays.
    ip(&[
        "-n",
        &l.nodes[0],
        "route",
        "add",
        "10.62.200.0/24",
        "via",
        "10.62.0.11",
        "proto",
        "static",
    ]);
    let all: Vec<NodeInfo> = (0..3).map(|i| info(&l, i, None)).collect();
    for i in 0..3 {
        sync_node(&l, i, Mode::HostGw, all.clone());
    }
    let r = routes77(&l.nodes[0]);
    assert!(r.contains("10.62.2.0/24 via 10.62.0.11"), "{r}");
    assert!(r.contains("10.62.3.0/24 via 10.62.0.12"), "{r}");
    assert_eq!(r.lines().count(), 2, "{r}");
    pods_talk(&l, 0, 1);
    pods_talk(&l, 2, 0);
    // Node 2 leaves: its route goes, the others and the foreign one stay.
    sync_node(&l, 0, Mode::HostGw, all[..2].to_vec());
    let r = routes77(&l.nodes[0]);
    assert_eq!(r.trim(), "10.62.2.0/24 via 10.62.0.11 dev eth0", "{r}");
    let all_routes = ip(&["-n", &l.nodes[0], "route", "show"]);
    assert!(
        all_routes.contains("10.62.200.0/24 via 10.62.0.11"),
        "{all_routes}"
    );
    // A deleted route is put back by the next sync; a second sync changes nothing.
    ip(&["-n", &l.nodes[0], "route", "del", "10.62.2.0/24"]);
    sync_node(&l, 0, Mode::HostGw, all[..2].to_vec());
    assert_eq!(routes77(&l.nodes[0]).lines().count(), 1);
    let again = block_in(&l.nodes[0], |nl| async move {
        let two: Vec<NodeInfo> = (0..2).map(info_plain).collect();
        let (d, _) = corral_podnet::plan::desired(Mode::HostGw, Some("n0"), scope(), &two);
        nl.apply(&d, scope(), None).await.unwrap().actions
    });
    assert_eq!(again, vec![], "nothing left to do");
}

#[test]
fn vxlan_connects_pods_across_nodes_and_a_removed_node_leaves_no_entries() {
    skip_unless_root!();
    let l = lab("vx", 2);
    // First pass: each node makes its device and learns its own MAC (the agent publishes it).
    let macs: Vec<[u8; 6]> = (0..2)
        .map(|i| sync_node(&l, i, Mode::Vxlan, vec![info(&l, i, None)]).expect("vtep mac"))
        .collect();
    let all: Vec<NodeInfo> = (0..2).map(|i| info(&l, i, Some(macs[i]))).collect();
    for i in 0..2 {
        sync_node(&l, i, Mode::Vxlan, all.clone());
    }
    let link = ip(&["-n", &l.nodes[0], "-d", "link", "show", "corral.1"]);
    assert!(
        link.contains("vxlan id 1") && link.contains("dstport 8472"),
        "{link}"
    );
    assert!(
        link.contains("local 10.62.0.10") && link.contains("nolearning"),
        "{link}"
    );
    let r = routes77(&l.nodes[0]);
    assert_eq!(
        r.trim(),
        "10.62.2.0/24 via 10.62.2.0 dev corral.1 onlink",
        "{r}"
    );
    let mac1 = corral_podnet::model::format_mac(&macs[1]);
    let fdb = Command::new("bridge")
        .args(["-n", &l.nodes[0], "fdb", "show", "dev", "corral.1"])
        .output()
        .unwrap();
    let fdb = String::from_utf8_lossy(&fdb.stdout).into_owned();
    assert!(fdb.contains(&format!("{mac1} dst 10.62.0.11")), "{fdb}");
    let neigh = ip(&["-n", &l.nodes[0], "neigh", "show", "dev", "corral.1"]);
    assert!(
        neigh.contains(&format!("10.62.2.0 lladdr {mac1} PERMANENT")),
        "{neigh}"
    );
    pods_talk(&l, 0, 1);
    pods_talk(&l, 1, 0);
    // A second sync finds everything in place.
    let again = block_in(&l.nodes[0], move |nl| async move {
        let idx = nl.ensure_vxlan(node_ip(0)).await.unwrap().0;
        let two: Vec<NodeInfo> = (0..2)
            .map(|i| NodeInfo {
                vtep_mac: Some(macs[i]),
                ..info_plain(i)
            })
            .collect();
        let (d, _) = corral_podnet::plan::desired(Mode::Vxlan, Some("n0"), scope(), &two);
        nl.apply(&d, scope(), Some(idx)).await.unwrap().actions
    });
    assert_eq!(again, vec![], "nothing left to do");
    // Node 1 leaves: its route, neighbour and FDB entry go.
    sync_node(&l, 0, Mode::Vxlan, all[..1].to_vec());
    assert_eq!(routes77(&l.nodes[0]).trim(), "");
    let neigh = ip(&["-n", &l.nodes[0], "neigh", "show", "dev", "corral.1"]);
    assert!(!neigh.contains(&mac1), "{neigh}");
    let fdb = Command::new("bridge")
        .args(["-n", &l.nodes[0], "fdb", "show", "dev", "corral.1"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&fdb.stdout).contains(&mac1));
    // Back to host-gw: the device goes too.
    sync_node(&l, 0, Mode::HostGw, all.clone());
    assert!(!ip(&["-n", &l.nodes[0], "link", "show"]).contains("corral.1"));
    assert!(routes77(&l.nodes[0]).contains("10.62.2.0/24 via 10.62.0.11"));
}

#[test]
fn iptables_chains_carry_corral_comments_and_are_removed_exactly() {
    skip_unless_root!();
    let l = lab("ipt", 1);
    let ns = l.nodes[0].clone();
    let (before, during, after) = in_netns(&ns, || {
        let sys = iptables::System::default();
        let before = sys.save().unwrap();
        let cluster: Cidr = "10.62.0.0/16".parse().unwrap();
        let pod = Some("10.62.1.0/24".parse().unwrap());
        assert!(sys.sync(cluster, pod).unwrap());
        assert!(
            !sys.sync(cluster, pod).unwrap(),
            "a second sync writes nothing"
        );
        let during = sys.save().unwrap();
        sys.cleanup().unwrap();
        (before, during, sys.save().unwrap())
    });
    let ours: Vec<&str> = during
        .lines()
        .filter(|l| l.starts_with("-A") && l.contains("CORRAL"))
        .collect();
    assert_eq!(ours.len(), 5, "{during}");
    for r in &ours {
        assert!(r.contains("--comment \"corral"), "{r}");
    }
    assert!(during.contains(
        "-A CORRAL-POD-EGRESS -s 10.62.1.0/24 ! -d 10.62.0.0/16 -m comment --comment \"corral pod egress masquerade\" -j MASQUERADE"
    ));
    let rules = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(" [").next().unwrap().to_string())
            .collect()
    };
    assert_eq!(rules(&before), rules(&after));
}
