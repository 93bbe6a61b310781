//! Corral's pod network across hosts, the one home for pod routes: a pure planner turns this
//! node and the Node objects into host-gw routes or VXLAN entries (`plan`), a thin netlink
//! executor makes the kernel match (`netlink`), and the pod egress masquerade and forward
//! rules are kept in two iptables chains (`iptables`).

pub mod iptables;
pub mod model;
pub mod netlink;
pub mod plan;

pub use model::{Cidr, NodeInfo};
pub use plan::{Desired, Mode};

/// The route protocol of every route Corral adds (`ip route show proto 77`): removal touches
/// nothing else.
pub const ROUTE_PROTOCOL: u8 = 77;
/// The VXLAN device, its VNI and UDP port (flannel's port, as k3s uses it).
pub const VXLAN_DEV: &str = "corral.1";
pub const VXLAN_VNI: u32 = 1;
pub const VXLAN_PORT: u16 = 8472;
/// VXLAN's headers (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// The Node annotation holding a node's VTEP MAC address (`aa:bb:cc:dd:ee:ff`).
pub const VTEP_MAC_ANNOTATION: &str = "corral.io/vtep-mac";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink {op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("opening a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("no interface holds address {0}")]
    NoInterface(std::net::Ipv4Addr),
    #[error("device {VXLAN_DEV} exists but is not a VXLAN device with VNI {VXLAN_VNI}")]
    ForeignDevice,
    #[error("running {program}: {source}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {stderr}")]
    Iptables { program: String, stderr: String },
    #[error("{what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}
