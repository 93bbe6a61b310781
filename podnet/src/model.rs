//! What the planner reads from a Node: its pod CIDR, InternalIP and VTEP MAC, parsed and
//! checked once here (IPv4 only, as the rest of Corral). Pure.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Node;

use crate::{Error, VTEP_MAC_ANNOTATION};

/// An IPv4 network, its address masked to the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub fn new(addr: Ipv4Addr, len: u8) -> Self {
        Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask(len)),
            len,
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == u32::from(self.addr)
    }

    /// Whether `other` lies entirely inside this network.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

impl FromStr for Cidr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::Invalid {
            what: "CIDR",
            value: s.to_string(),
            reason,
        };
        let (a, l) = s.split_once('/').ok_or_else(|| bad("no prefix length"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad("not an IPv4 address"))?;
        let len: u8 = l.parse().map_err(|_| bad("bad prefix length"))?;
        if len > 32 {
            return Err(bad("prefix length over 32"));
        }
        Ok(Cidr::new(addr, len))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

pub type Mac = [u8; 6];

pub fn parse_mac(s: &str) -> Result<Mac, Error> {
    let bad = || Error::Invalid {
        what: "MAC address",
        value: s.to_string(),
        reason: "not six hex bytes separated by ':'",
    };
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

pub fn format_mac(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One node as the pod network sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub pod_cidr: Option<Cidr>,
    pub ip: Option<Ipv4Addr>,
    pub vtep_mac: Option<Mac>,
}

impl NodeInfo {
    /// Reads a Node; fields that are missing or do not parse are `None` (the planner skips
    /// what it cannot route, and the node is taken again once its object is complete).
    pub fn from_node(node: &Node) -> Self {
        let name = node.metadata.name.clone().unwrap_or_default();
        let pod_cidr = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(|c| c.parse().ok());
        let ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse().ok());
        let vtep_mac = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(VTEP_MAC_ANNOTATION))
            .and_then(|m| parse_mac(m).ok());
        Self {
            name,
            pod_cidr,
            ip,
            vtep_mac,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_mask_and_contain() {
        let c: Cidr = "10.42.3.7/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.42.3.0/24");
        assert!(c.contains("10.42.3.200".parse().unwrap()));
        assert!(!c.contains("10.42.4.1".parse().unwrap()));
        let wide: Cidr = "10.42.0.0/16".parse().unwrap();
        assert!(wide.covers(&c));
        assert!(!c.covers(&wide));
        for bad in ["10.42.0.0", "10.42.0.0/33", "x/8", "10.42.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().len, 0);
    }

    #[test]
    fn macs_round_trip_and_bad_ones_are_refused() {
        let m = parse_mac("0a:1B:ff:00:01:02").unwrap();
        assert_eq!(format_mac(&m), "0a:1b:ff:00:01:02");
        for bad in [
            "",
            "0a:1b:ff:00:01",
            "0a:1b:ff:00:01:02:03",
            "0a:1b:ff:00:01:zz",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }
}
