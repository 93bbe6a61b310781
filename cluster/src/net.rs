//! Host networking of a local cluster, carried out with iproute2: a bridge on the host, one
//! network namespace per node joined to it by a veth pair, and blackhole routes for the pod
//! and service ranges so that nothing unrouted leaves the machine. Pod routes come from
//! `corral-podnet`, the one home for them: each node's agent routes to the others (host-gw),
//! and the host, which is no node, routes to every node's pod CIDR with the same planner.

use std::process::Command;

use corral_podnet::netlink::Netlink;
use corral_podnet::{Cidr, Mode, NodeInfo};

use crate::layout::{Layout, NodeLayout, BLACKHOLES, SERVICE_CIDR};
use crate::Error;

fn run(args: &[&str]) -> Result<String, Error> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|source| Error::Exec {
            command: args.join(" "),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs a command whose "already exists" / "not found" outcome is fine (idempotent steps).
fn run_ok(args: &[&str]) -> Result<(), Error> {
    match run(args) {
        Ok(_) => Ok(()),
        Err(Error::Command { stderr, .. })
            if stderr.contains("File exists")
                || stderr.contains("already exists")
                || stderr.contains("already assigned")
                || stderr.contains("Cannot find device")
                || stderr.contains("No such file")
                || stderr.contains("No such process") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn link_exists(name: &str) -> bool {
    run(&["ip", "link", "show", "dev", name]).is_ok()
}

pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Creates (or completes) the cluster's network. Safe to run again.
pub async fn ensure(l: &Layout) -> Result<(), Error> {
    if !link_exists(&l.bridge) {
        run(&["ip", "link", "add", &l.bridge, "type", "bridge"])?;
    }
    run_ok(&[
        "ip",
        "addr",
        "add",
        &format!("{}/24", l.bridge_ip),
        "dev",
        &l.bridge,
    ])?;
    run(&["ip", "link", "set", &l.bridge, "up"])?;
    for range in BLACKHOLES {
        run_ok(&["ip", "route", "add", "blackhole", range])?;
    }
    for node in &l.nodes {
        ensure_node(l, node)?;
    }
    host_routes(l, &l.nodes).await
}

/// Makes the host's pod routes (protocol 77, inside this cluster's block of pod CIDRs) lead
/// to exactly `nodes`.
async fn host_routes(l: &Layout, nodes: &[NodeLayout]) -> Result<(), Error> {
    let podnet = |source| Error::PodNet {
        cluster: l.name.clone(),
        source,
    };
    let scope: Cidr = l.pod_block().parse().map_err(podnet)?;
    let infos = nodes
        .iter()
        .map(|n| {
            Ok(NodeInfo {
                name: n.name.clone(),
                pod_cidr: Some(n.pod_cidr.parse().map_err(podnet)?),
                ip: Some(n.ip.parse().map_err(|_| Error::PodNet {
                    cluster: l.name.clone(),
                    source: corral_podnet::Error::Invalid {
                        what: "node address",
                        value: n.ip.clone(),
                        reason: "not an IPv4 address",
                    },
                })?),
                vtep_mac: None,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let nl = Netlink::connect().map_err(podnet)?;
    let (report, _) = corral_podnet::netlink::sync(&nl, Mode::HostGw, None, None, scope, &infos)
        .await
        .map_err(podnet)?;
    if let Some((action, error)) = report.failed.into_iter().next() {
        return Err(Error::Command {
            command: action.to_string(),
            stderr: error,
        });
    }
    Ok(())
}

fn ensure_node(l: &Layout, node: &NodeLayout) -> Result<(), Error> {
    if !netns_exists(&node.netns) {
        run(&["ip", "netns", "add", &node.netns])?;
    }
    let has_eth0 = run(&["ip", "-n", &node.netns, "link", "show", "dev", "eth0"]).is_ok();
    if !has_eth0 {
        if link_exists(&node.host_veth) {
            run(&["ip", "link", "del", &node.host_veth])?;
        }
        run(&[
            "ip",
            "link",
            "add",
            &node.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            &node.peer_veth,
        ])?;
        run(&["ip", "link", "set", &node.peer_veth, "netns", &node.netns])?;
        run(&[
            "ip",
            "-n",
            &node.netns,
            "link",
            "set",
            &node.peer_veth,
            "name",
            "eth0",
        ])?;
    }
    run(&[
        "ip",
        "link",
        "set",
        &node.host_veth,
        "master",
        &l.bridge,
        "up",
    ])?;
    run_ok(&[
        "ip",
        "-n",
        &node.netns,
        "addr",
        "add",
        &format!("{}/24", node.ip),
        "dev",
        "eth0",
    ])?;
    run(&["ip", "-n", &node.netns, "link", "set", "eth0", "up"])?;
    run(&["ip", "-n", &node.netns, "link", "set", "lo", "up"])?;
    // A connection from the node itself to a ClusterIP is routed before the proxy's OUTPUT
    // DNAT rewrites it: without a route it fails with "network unreachable". The route leads
    // to the host, whose blackhole drops a service address that has no rule.
    run(&[
        "ip",
        "-n",
        &node.netns,
        "route",
        "replace",
        SERVICE_CIDR,
        "via",
        &l.bridge_ip,
    ])?;
    // A new namespace does not forward; the node routes between its pods and the others.
    run(&[
        "nsenter",
        &format!("--net=/run/netns/{}", node.netns),
        "--",
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ])?;
    Ok(())
}

/// Takes a node's link down or up (a failure drill: the node drops off the network).
pub fn set_node_link(node: &NodeLayout, up: bool) -> Result<(), Error> {
    run(&[
        "ip",
        "link",
        "set",
        &node.host_veth,
        if up { "up" } else { "down" },
    ])?;
    Ok(())
}

/// Removes everything `ensure` made. `last` also removes the shared blackhole routes.
pub async fn teardown(l: &Layout, last: bool) -> Result<(), Error> {
    host_routes(l, &[]).await?;
    for node in &l.nodes {
        if netns_exists(&node.netns) {
            run_ok(&["ip", "netns", "delete", &node.netns])?;
        }
        if link_exists(&node.host_veth) {
            run_ok(&["ip", "link", "del", &node.host_veth])?;
        }
    }
    if link_exists(&l.bridge) {
        run_ok(&["ip", "link", "del", &l.bridge])?;
    }
    if last {
        for range in BLACKHOLES {
            run_ok(&["ip", "route", "del", "blackhole", range])?;
        }
    }
    Ok(())
}
