//! A host's address when none is given (the agent's `--node-ip`, the control plane's
//! `--advertise-address`): the first IPv4 of `--node-interface`,
//! else of the interface holding the default IPv4 route, else the first global IPv4 of an up
//! interface. `choose` is pure; `read_interfaces` reads the host (getifaddrs, /proc/net/route).

use std::net::Ipv4Addr;

/// What `choose` needs of one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub up: bool,
    pub loopback: bool,
    /// IPv4 addresses, primary first.
    pub addrs: Vec<Ipv4Addr>,
    /// Holds a default IPv4 route (0.0.0.0/0).
    pub default_route: bool,
}

/// How the address was chosen (logged with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    Flag,
    Interface(String),
    DefaultRoute(String),
    FirstGlobal(String),
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            How::Flag => write!(f, "--node-ip"),
            How::Interface(i) => write!(f, "first IPv4 of --node-interface {i}"),
            How::DefaultRoute(i) => write!(f, "first IPv4 of {i}, which holds the default route"),
            How::FirstGlobal(i) => write!(f, "first global IPv4 of an up interface ({i})"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeIpError {
    #[error("--node-ip {value:?}: not an IPv4 address")]
    Flag { value: String },
    #[error("--node-interface {name}: no such interface")]
    NoInterface { name: String },
    #[error("--node-interface {name}: the interface has no IPv4 address")]
    NoAddress { name: String },
    #[error("no up interface has a global IPv4 address: give --node-ip or --node-interface")]
    NoneFound,
    #[error("reading the network interfaces")]
    Read(#[source] nix::Error),
}

fn global(a: &Ipv4Addr) -> bool {
    !(a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_broadcast())
}

fn first_global(i: &Interface) -> Option<Ipv4Addr> {
    i.addrs.iter().copied().find(global)
}

/// Picks the node address from the flags and the host's interfaces (in their kernel order).
pub fn choose(
    flag: Option<&str>,
    interface: Option<&str>,
    interfaces: &[Interface],
) -> Result<(Ipv4Addr, How), NodeIpError> {
    if let Some(v) = flag {
        let ip = v
            .parse()
            .map_err(|_| NodeIpError::Flag { value: v.into() })?;
        return Ok((ip, How::Flag));
    }
    if let Some(name) = interface {
        let i = interfaces
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| NodeIpError::NoInterface { name: name.into() })?;
        // Its first global address; a link-local one only when it has nothing else.
        let ip = first_global(i)
            .or_else(|| i.addrs.first().copied())
            .ok_or_else(|| NodeIpError::NoAddress { name: name.into() })?;
        return Ok((ip, How::Interface(name.into())));
    }
    let usable = |i: &&Interface| i.up && !i.loopback;
    if let Some((i, ip)) = interfaces
        .iter()
        .filter(usable)
        .filter(|i| i.default_route)
        .find_map(|i| first_global(i).map(|ip| (i, ip)))
    {
        return Ok((ip, How::DefaultRoute(i.name.clone())));
    }
    interfaces
        .iter()
        .filter(usable)
        .find_map(|i| first_global(i).map(|ip| (ip, How::FirstGlobal(i.name.clone()))))
        .ok_or(NodeIpError::NoneFound)
}

/// The node address from the flags, reading the host's interfaces only when needed; the
/// address and how it was chosen are logged.
pub fn resolve(flag: Option<&str>, interface: Option<&str>) -> Result<Ipv4Addr, NodeIpError> {
    let interfaces = if flag.is_some() {
        Vec::new()
    } else {
        read_interfaces()?
    };
    let (ip, how) = choose(flag, interface, &interfaces)?;
    tracing::info!(node_ip = %ip, chosen_by = %how, "node address");
    Ok(ip)
}

/// Interfaces holding an up default IPv4 route in `/proc/net/route`'s text, lowest metric first.
pub fn default_route_interfaces(route_table: &str) -> Vec<String> {
    const RTF_UP: u32 = 0x1;
    let mut found: Vec<(u32, String)> = route_table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (iface, dest, flags, metric, mask) =
                (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            (*dest == "00000000" && *mask == "00000000" && flags & RTF_UP != 0)
                .then(|| (metric.parse().unwrap_or(u32::MAX), iface.to_string()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, i)| i).collect()
}

/// The host's interfaces with their IPv4 addresses and which hold the default route.
pub fn read_interfaces() -> Result<Vec<Interface>, NodeIpError> {
    use nix::net::if_::InterfaceFlags;
    let defaults =
        default_route_interfaces(&std::fs::read_to_string("/proc/net/route").unwrap_or_default());
    let mut out: Vec<Interface> = Vec::new();
    for a in nix::ifaddrs::getifaddrs().map_err(NodeIpError::Read)? {
        let pos = match out.iter().position(|i| i.name == a.interface_name) {
            Some(p) => p,
            None => {
                out.push(Interface {
                    name: a.interface_name.clone(),
                    up: a.flags.contains(InterfaceFlags::IFF_UP),
                    loopback: a.flags.contains(InterfaceFlags::IFF_LOOPBACK),
                    addrs: Vec::new(),
                    default_route: defaults.contains(&a.interface_name),
                });
                out.len() - 1
            }
        };
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            out[pos].addrs.push(sin.ip());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, addrs: &[&str], default_route: bool) -> Interface {
        Interface {
            name: name.into(),
            up: true,
            loopback: name == "lo",
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            default_route,
        }
    }

    /// (what, --node-ip, --node-interface, the host's interfaces, expected)
    type Case = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Vec<Interface>,
        (Ipv4Addr, How),
    );

    #[test]
    fn the_node_ip_comes_from_the_flag_the_interface_the_default_route_or_the_first_global() {
        let host = vec![
            iface("lo", &["127.0.0.1"], false),
            iface("eth0", &["169.254.3.3", "10.61.0.5"], false),
            iface("eth1", &["10.61.1.7", "10.61.1.8"], true),
            iface("eth2", &[], false),
        ];
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let cases: Vec<Case> = vec![
            (
                "flag wins",
                Some("10.61.9.9"),
                Some("eth0"),
                host.clone(),
                (ip("10.61.9.9"), How::Flag),
            ),
            (
                "named interface, its first global address",
                None,
                Some("eth0"),
                host.clone(),
                (ip("10.61.0.5"), How::Interface("eth0".into())),
            ),
            (
                "default route interface",
                None,
                None,
                host.clone(),
                (ip("10.61.1.7"), How::DefaultRoute("eth1".into())),
            ),
            (
                "no default route: first global of an up non-loopback interface",
                None,
                None,
                vec![
                    iface("lo", &["127.0.0.1"], false),
                    iface("eth0", &["169.254.3.3", "10.61.0.5"], false),
                ],
                (ip("10.61.0.5"), How::FirstGlobal("eth0".into())),
            ),
            (
                "a down interface is passed over",
                None,
                None,
                vec![
                    Interface {
                        up: false,
                        ..iface("eth0", &["10.61.0.5"], true)
                    },
                    iface("eth1", &["10.61.1.1"], false),
                ],
                (ip("10.61.1.1"), How::FirstGlobal("eth1".into())),
            ),
        ];
        for (name, flag, interface, ifaces, want) in cases {
            assert_eq!(choose(flag, interface, &ifaces).unwrap(), want, "{name}");
        }
        for (flag, interface, ifaces, want) in [
            (
                Some("nope"),
                None,
                host.clone(),
                "--node-ip \"nope\": not an IPv4 address",
            ),
            (
                None,
                Some("eth9"),
                host.clone(),
                "--node-interface eth9: no such interface",
            ),
            (
                None,
                Some("eth2"),
                host.clone(),
                "--node-interface eth2: the interface has no IPv4 address",
            ),
            (
                None,
                None,
                vec![iface("lo", &["127.0.0.1"], true)],
                "no up interface has a global IPv4",
            ),
        ] {
            let e = choose(flag, interface, &ifaces).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn default_routes_are_read_from_the_kernel_route_table_lowest_metric_first() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
            eth0\t00000000\t01003D0A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t00003D0A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
            down0\t00000000\t01003D0A\t0002\t0\t0\t1\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interfaces(table), ["eth0", "wlan0"]);
        assert!(default_route_interfaces("").is_empty());
    }
}
