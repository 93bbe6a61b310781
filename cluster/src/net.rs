//! Host networking of a local cluster, carried out with iproute2: a bridge on the host, one
//! network namespace per node joined to it by a veth pair, routes to each node's pod CIDR
//! (host-gw style, on the host and in every node), and blackhole routes for the pod and
//! service ranges so that nothing unrouted leaves the machine.

use std::process::Command;

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
pub fn ensure(l: &Layout) -> Result<(), Error> {
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
    for node in &l.nodes {
        run(&["ip", "route", "replace", &node.pod_cidr, "via", &node.ip])?;
        for other in l.nodes.iter().filter(|o| o.name != node.name) {
            run(&[
                "ip",
                "-n",
                &node.netns,
                "route",
                "replace",
                &other.pod_cidr,
                "via",
                &other.ip,
            ])?;
        }
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
pub fn teardown(l: &Layout, last: bool) -> Result<(), Error> {
    for node in &l.nodes {
        run_ok(&["ip", "route", "del", &node.pod_cidr, "via", &node.ip])?;
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
