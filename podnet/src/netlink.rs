//! The thin netlink executor (rtnetlink): reads what exists (routes of protocol 77 inside the
//! managed range, permanent FDB and neighbour entries on `corral.1`), carries out the
//! planner's actions, and creates the `corral.1` VXLAN device. Nothing else is touched.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlag, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlag, RouteHeader, RouteMessage, RouteProtocol,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, IpVersion};
use tracing::{debug, info, warn};

use crate::model::{Cidr, Mac, NodeInfo};
use crate::plan::{self, Action, Desired, Fdb, Mode, Neigh, Route, Via};
use crate::{Error, ROUTE_PROTOCOL, VXLAN_DEV, VXLAN_PORT, VXLAN_VNI};

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let op = op.into();
    move |source| Error::Netlink {
        op,
        source: Box::new(source),
    }
}

/// Whether a netlink error is the kernel's "no such entry" (ENOENT / ESRCH).
fn is_missing(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.is_some_and(|c| matches!(-c.get(), 2 | 3)))
}

/// What exists, with the kernel's own messages so deletion names exactly them.
#[derive(Debug, Default)]
pub struct Observed {
    pub entries: Desired,
    routes: BTreeMap<Route, RouteMessage>,
}

/// The result of one sync.
#[derive(Debug, Default)]
pub struct Report {
    pub actions: Vec<Action>,
    pub failed: Vec<(Action, String)>,
    pub skipped: Vec<(String, plan::Skip)>,
}

/// A netlink connection in the current network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the socket and runs its connection on the current tokio runtime.
    pub fn connect() -> Result<Self, Error> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    async fn link(&self, name: &str) -> Result<Option<LinkMessage>, Error> {
        let mut links = self
            .handle
            .clone()
            .link()
            .get()
            .match_name(name.into())
            .execute();
        match links.try_next().await {
            Ok(l) => Ok(l),
            Err(e)
                if is_missing(&e)
                    || matches!(&e, rtnetlink::Error::NetlinkError(m) if m.code.is_some_and(|c| -c.get() == 19)) =>
            {
                Ok(None)
            }
            Err(e) => Err(nl(format!("get link {name}"))(e)),
        }
    }

    /// The interface holding `ip`: its index and MTU.
    pub async fn interface_of(&self, ip: Ipv4Addr) -> Result<(u32, u32), Error> {
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_address_filter(IpAddr::V4(ip))
            .execute();
        let Some(a) = addrs.try_next().await.map_err(nl("get addresses"))? else {
            return Err(Error::NoInterface(ip));
        };
        let index = a.header.index;
        let mut links = self
            .handle
            .clone()
            .link()
            .get()
            .match_index(index)
            .execute();
        let link = links
            .try_next()
            .await
            .map_err(nl("get link"))?
            .ok_or(Error::NoInterface(ip))?;
        let mtu = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            })
            .unwrap_or(1500);
        Ok((index, mtu))
    }

    /// Creates `corral.1` (VNI 1, UDP 8472, local `local`, no learning) over the interface
    /// holding `local` if it is missing, sets it up, and returns its index and MAC.
    pub async fn ensure_vxlan(&self, local: Ipv4Addr) -> Result<(u32, Mac), Error> {
        if self.link(VXLAN_DEV).await?.is_none() {
            let (lower, _) = self.interface_of(local).await?;
            self.handle
                .link()
                .add()
                .vxlan(VXLAN_DEV.into(), VXLAN_VNI)
                .link(lower)
                .local(local)
                .port(VXLAN_PORT)
                .learning(false)
                .up()
                .execute()
                .await
                .map_err(nl(format!("add link {VXLAN_DEV}")))?;
            info!(dev = VXLAN_DEV, %local, "created the VXLAN device");
        }
        let link = self.link(VXLAN_DEV).await?.ok_or(Error::ForeignDevice)?;
        let vni = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Data(InfoData::Vxlan(v)) => v.iter().find_map(|x| match x {
                    InfoVxlan::Id(id) => Some(*id),
                    _ => None,
                }),
                _ => None,
            }),
            _ => None,
        });
        let is_vxlan = link.attributes.iter().any(|a| {
            matches!(a, LinkAttribute::LinkInfo(i) if i.iter().any(|x| matches!(x, LinkInfo::Kind(InfoKind::Vxlan))))
        });
        if !is_vxlan || vni != Some(VXLAN_VNI) {
            return Err(Error::ForeignDevice);
        }
        let index = link.header.index;
        self.handle
            .link()
            .set(index)
            .up()
            .execute()
            .await
            .map_err(nl(format!("set {VXLAN_DEV} up")))?;
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(m) if m.len() == 6 => {
                    Some([m[0], m[1], m[2], m[3], m[4], m[5]])
                }
                _ => None,
            })
            .ok_or(Error::ForeignDevice)?;
        Ok((index, mac))
    }

    /// Removes `corral.1` if it exists.
    pub async fn delete_vxlan(&self) -> Result<(), Error> {
        if let Some(link) = self.link(VXLAN_DEV).await? {
            self.handle
                .link()
                .del(link.header.index)
                .execute()
                .await
                .map_err(nl(format!("delete link {VXLAN_DEV}")))?;
        }
        Ok(())
    }

    /// Our routes inside `scope`, and the entries on the VXLAN device (index `vxlan`).
    pub async fn observe(&self, scope: Cidr, vxlan: Option<u32>) -> Result<Observed, Error> {
        let mut out = Observed::default();
        let mut routes = self.handle.route().get(IpVersion::V4).execute();
        while let Some(m) = routes.try_next().await.map_err(nl("dump routes"))? {
            if m.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL)
                || m.header.table != RouteHeader::RT_TABLE_MAIN
            {
                continue;
            }
            let (mut dst, mut gw, mut oif) = (None, None, None);
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = Some(*d),
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => gw = Some(*g),
                    RouteAttribute::Oif(o) => oif = Some(*o),
                    _ => {}
                }
            }
            let dst = Cidr::new(
                dst.unwrap_or(Ipv4Addr::UNSPECIFIED),
                m.header.destination_prefix_length,
            );
            if !scope.covers(&dst) {
                continue;
            }
            let gw = gw.unwrap_or(Ipv4Addr::UNSPECIFIED);
            let via = if oif.is_some() && oif == vxlan {
                Via::Vxlan(gw)
            } else {
                Via::Gateway(gw)
            };
            let r = Route { dst, via };
            out.entries.routes.insert(r);
            out.routes.insert(r, m);
        }
        let Some(index) = vxlan else { return Ok(out) };
        for family in [AddressFamily::Bridge, AddressFamily::Inet] {
            let mut req = self.handle.neighbours().get();
            req.message_mut().header.family = family;
            let mut neighs = req.execute();
            while let Some(m) = neighs.try_next().await.map_err(nl("dump neighbours"))? {
                if m.header.ifindex != index || m.header.state != NeighbourState::Permanent {
                    continue;
                }
                let (mut ip, mut mac) = (None, None);
                for a in &m.attributes {
                    match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) => ip = Some(*d),
                        // Bridge-family entries carry their IPv4 destination as raw bytes.
                        NeighbourAttribute::Destination(NeighbourAddress::Other(b))
                            if b.len() == 4 =>
                        {
                            ip = Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                        }
                        NeighbourAttribute::LinkLocalAddress(l) if l.len() == 6 => {
                            mac = Some([l[0], l[1], l[2], l[3], l[4], l[5]])
                        }
                        _ => {}
                    }
                }
                let (Some(ip), Some(mac)) = (ip, mac) else {
                    continue;
                };
                if family == AddressFamily::Bridge {
                    out.entries.fdb.insert(Fdb { mac, remote: ip });
                } else {
                    out.entries.neigh.insert(Neigh { ip, mac });
                }
            }
        }
        Ok(out)
    }

    async fn act(
        &self,
        a: &Action,
        observed: &Observed,
        vxlan: Option<u32>,
    ) -> Result<(), rtnetlink::Error> {
        let dev = || vxlan.ok_or(rtnetlink::Error::RequestFailed);
        match a {
            Action::AddRoute(r) => {
                let mut req = self
                    .handle
                    .route()
                    .add()
                    .v4()
                    .destination_prefix(r.dst.addr, r.dst.len)
                    .protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
                match r.via {
                    Via::Gateway(g) => req = req.gateway(g),
                    Via::Vxlan(g) => {
                        req = req.gateway(g).output_interface(dev()?);
                        req.message_mut().header.flags.push(RouteFlag::Onlink);
                    }
                }
                req.execute().await
            }
            Action::DelRoute(r) => match observed.routes.get(r) {
                Some(m) => self.handle.route().del(m.clone()).execute().await,
                None => Ok(()),
            },
            Action::AddFdb(e) => {
                self.handle
                    .neighbours()
                    .add_bridge(dev()?, &e.mac)
                    .destination(IpAddr::V4(e.remote))
                    .flags(vec![NeighbourFlag::Own])
                    .replace()
                    .execute()
                    .await
            }
            Action::DelFdb(e) => {
                let mut m = NeighbourMessage::default();
                m.header.family = AddressFamily::Bridge;
                m.header.ifindex = dev()?;
                m.header.state = NeighbourState::Permanent;
                m.header.flags = vec![NeighbourFlag::Own];
                m.attributes
                    .push(NeighbourAttribute::LinkLocalAddress(e.mac.to_vec()));
                m.attributes
                    .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                        e.remote,
                    )));
                self.handle.neighbours().del(m).execute().await
            }
            Action::AddNeigh(n) => {
                self.handle
                    .neighbours()
                    .add(dev()?, IpAddr::V4(n.ip))
                    .link_local_address(&n.mac)
                    .state(NeighbourState::Permanent)
                    .replace()
                    .execute()
                    .await
            }
            Action::DelNeigh(n) => {
                let mut m = NeighbourMessage::default();
                m.header.family = AddressFamily::Inet;
                m.header.ifindex = dev()?;
                m.attributes
                    .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                        n.ip,
                    )));
                self.handle.neighbours().del(m).execute().await
            }
        }
    }

    /// Makes the kernel match `desired` (computed with `vxlan`, the device's index), one
    /// action at a time: a failed action is reported and the others still run.
    pub async fn apply(
        &self,
        desired: &Desired,
        scope: Cidr,
        vxlan: Option<u32>,
    ) -> Result<Report, Error> {
        let observed = self.observe(scope, vxlan).await?;
        let actions = plan::plan(desired, &observed.entries);
        let mut report = Report::default();
        for a in &actions {
            match self.act(a, &observed, vxlan).await {
                Ok(()) => debug!(action = %a, "pod network"),
                Err(e)
                    if is_missing(&e)
                        && matches!(
                            a,
                            Action::DelRoute(_) | Action::DelFdb(_) | Action::DelNeigh(_)
                        ) => {}
                Err(e) => {
                    warn!(action = %a, error = %e, "pod network change failed");
                    report.failed.push((a.clone(), e.to_string()));
                }
            }
        }
        report.actions = actions;
        Ok(report)
    }
}

/// One full sync: the VXLAN device for `vxlan` mode (over `node_ip`), then the entries for
/// `nodes`. Returns the report and, in VXLAN mode, this node's VTEP MAC to publish.
pub async fn sync(
    nl: &Netlink,
    mode: Mode,
    this: Option<&str>,
    node_ip: Option<Ipv4Addr>,
    scope: Cidr,
    nodes: &[NodeInfo],
) -> Result<(Report, Option<Mac>), Error> {
    let (vxlan, mac) = match (mode, node_ip) {
        (Mode::None, _) => return Ok((Report::default(), None)),
        (Mode::Vxlan, Some(ip)) => {
            let (i, m) = nl.ensure_vxlan(ip).await?;
            (Some(i), Some(m))
        }
        // Without its address the node cannot be a VTEP yet: host-gw entries only.
        (Mode::Vxlan, None) => (None, None),
        (Mode::HostGw, _) => (nl.link(VXLAN_DEV).await?.map(|l| l.header.index), None),
    };
    let (desired, skipped) = plan::desired(mode, this, scope, nodes);
    let desired = if mode == Mode::Vxlan && vxlan.is_none() {
        Desired::default()
    } else {
        desired
    };
    let mut report = nl.apply(&desired, scope, vxlan).await?;
    report.skipped = skipped;
    // Switched from VXLAN to host-gw: its routes are gone now, so is the device.
    if mode == Mode::HostGw && vxlan.is_some() && report.failed.is_empty() {
        nl.delete_vxlan().await?;
    }
    Ok((report, mac))
}
