//! The pod route planner: this node and the Nodes → the routes (host-gw) or the FDB entries,
//! neighbours and onlink routes (VXLAN) that should exist; then the exact difference from what
//! exists as add/delete actions. Pure: no I/O, table tests in `plan/tests.rs`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::model::{format_mac, Cidr, Mac, NodeInfo};
use crate::Error;

/// How pods reach the pods of other nodes (`--pod-network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// A route per node via its address: the hosts share one L2 segment.
    #[default]
    HostGw,
    /// A VXLAN overlay over the node addresses: the hosts need only reach each other by IP.
    Vxlan,
    /// Routes are not managed (something else routes the pod CIDRs).
    None,
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "host-gw" => Ok(Mode::HostGw),
            "vxlan" => Ok(Mode::Vxlan),
            "none" => Ok(Mode::None),
            _ => Err(Error::Invalid {
                what: "pod network",
                value: s.to_string(),
                reason: "must be host-gw, vxlan or none",
            }),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::HostGw => "host-gw",
            Mode::Vxlan => "vxlan",
            Mode::None => "none",
        })
    }
}

/// Where a route leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Via {
    /// `via GW` on whatever link reaches it (host-gw).
    Gateway(Ipv4Addr),
    /// `via GW dev corral.1 onlink` (VXLAN: GW is the remote pod CIDR's network address).
    Vxlan(Ipv4Addr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub dst: Cidr,
    pub via: Via,
}

/// A bridge FDB entry on the VXLAN device: frames for `mac` go to the VTEP at `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fdb {
    pub mac: Mac,
    pub remote: Ipv4Addr,
}

/// A permanent neighbour on the VXLAN device: the remote gateway `ip` has `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neigh {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

/// The entries that should exist (or, read from the kernel, that do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub routes: BTreeSet<Route>,
    pub fdb: BTreeSet<Fdb>,
    pub neigh: BTreeSet<Neigh>,
}

/// Why a node gets no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    NoPodCidr,
    NoAddress,
    /// VXLAN: the node has not published `corral.io/vtep-mac` yet.
    NoVtepMac,
    /// Its pod CIDR is outside the range this planner manages.
    OutsideScope,
    /// Another node (earlier by name) already has this pod CIDR.
    DuplicateCidr,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skip::NoPodCidr => "no spec.podCIDR yet",
            Skip::NoAddress => "no InternalIP address yet",
            Skip::NoVtepMac => "no corral.io/vtep-mac annotation yet",
            Skip::OutsideScope => "pod CIDR outside the cluster CIDR",
            Skip::DuplicateCidr => "pod CIDR already used by another node",
        })
    }
}

/// The network address of a pod CIDR: the remote gateway of VXLAN routes (flannel's choice).
pub fn vxlan_gateway(pod_cidr: &Cidr) -> Ipv4Addr {
    pod_cidr.addr
}

/// What should exist on node `this` (`None`: a machine that is no node, as the local rig's
/// host) for `nodes`, managing only pod CIDRs inside `scope`; plus the nodes skipped and why.
pub fn desired(
    mode: Mode,
    this: Option<&str>,
    scope: Cidr,
    nodes: &[NodeInfo],
) -> (Desired, Vec<(String, Skip)>) {
    let mut out = Desired::default();
    let mut skipped = Vec::new();
    if mode == Mode::None {
        return (out, skipped);
    }
    let mut sorted: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| Some(n.name.as_str()) != this)
        .collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let own = this
        .and_then(|t| nodes.iter().find(|n| n.name == t))
        .and_then(|n| n.pod_cidr);
    let mut taken: BTreeSet<Cidr> = own.into_iter().collect();
    for n in sorted {
        let Some(cidr) = n.pod_cidr else {
            skipped.push((n.name.clone(), Skip::NoPodCidr));
            continue;
        };
        let Some(ip) = n.ip else {
            skipped.push((n.name.clone(), Skip::NoAddress));
            continue;
        };
        if !scope.covers(&cidr) {
            skipped.push((n.name.clone(), Skip::OutsideScope));
            continue;
        }
        if !taken.insert(cidr) {
            skipped.push((n.name.clone(), Skip::DuplicateCidr));
            continue;
        }
        match mode {
            Mode::HostGw => {
                out.routes.insert(Route {
                    dst: cidr,
                    via: Via::Gateway(ip),
                });
            }
            Mode::Vxlan => {
                let Some(mac) = n.vtep_mac else {
                    skipped.push((n.name.clone(), Skip::NoVtepMac));
                    taken.remove(&cidr);
                    continue;
                };
                let gw = vxlan_gateway(&cidr);
                out.fdb.insert(Fdb { mac, remote: ip });
                out.neigh.insert(Neigh { ip: gw, mac });
                out.routes.insert(Route {
                    dst: cidr,
                    via: Via::Vxlan(gw),
                });
            }
            Mode::None => unreachable!("returned above"),
        }
    }
    (out, skipped)
}

/// One kernel change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    DelRoute(Route),
    DelNeigh(Neigh),
    DelFdb(Fdb),
    AddFdb(Fdb),
    AddNeigh(Neigh),
    AddRoute(Route),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let route = |r: &Route| match r.via {
            Via::Gateway(g) => format!("{} via {g}", r.dst),
            Via::Vxlan(g) => format!("{} via {g} dev {} onlink", r.dst, crate::VXLAN_DEV),
        };
        match self {
            Action::DelRoute(r) => write!(f, "delete route {}", route(r)),
            Action::AddRoute(r) => write!(f, "add route {}", route(r)),
            Action::DelNeigh(n) => {
                write!(f, "delete neighbour {} lladdr {}", n.ip, format_mac(&n.mac))
            }
            Action::AddNeigh(n) => {
                write!(f, "add neighbour {} lladdr {}", n.ip, format_mac(&n.mac))
            }
            Action::DelFdb(e) => write!(f, "delete fdb {} dst {}", format_mac(&e.mac), e.remote),
            Action::AddFdb(e) => write!(f, "add fdb {} dst {}", format_mac(&e.mac), e.remote),
        }
    }
}

/// The exact difference: deletions first (a changed entry is deleted, then added again), then
/// additions in dependency order (FDB, neighbour, route).
pub fn plan(desired: &Desired, observed: &Desired) -> Vec<Action> {
    let mut out = Vec::new();
    out.extend(
        observed
            .routes
            .difference(&desired.routes)
            .copied()
            .map(Action::DelRoute),
    );
    out.extend(
        observed
            .neigh
            .difference(&desired.neigh)
            .copied()
            .map(Action::DelNeigh),
    );
    out.extend(
        observed
            .fdb
            .difference(&desired.fdb)
            .copied()
            .map(Action::DelFdb),
    );
    out.extend(
        desired
            .fdb
            .difference(&observed.fdb)
            .copied()
            .map(Action::AddFdb),
    );
    out.extend(
        desired
            .neigh
            .difference(&observed.neigh)
            .copied()
            .map(Action::AddNeigh),
    );
    out.extend(
        desired
            .routes
            .difference(&observed.routes)
            .copied()
            .map(Action::AddRoute),
    );
    out
}

#[cfg(test)]
mod tests;
