//! Service address allocation: ClusterIPs from the service CIDR and NodePorts from
//! 30000-32767, unique across services and across servers on one store. This file holds the
//! pure choice of addresses (given the ones in use); `claims.rs` keeps one claim key per
//! address in the store, `service.rs` runs service writes around them, `repair.rs` mends leaks.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use crate::validate::FieldError;

mod claims;
mod repair;
mod service;
#[cfg(test)]
mod tests;

pub use claims::Address;
pub use repair::{spawn as spawn_repair, Repairer, GRACE};

/// The addresses other services hold (or have claimed): what a new allocation must avoid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Used {
    pub ips: BTreeSet<String>,
    pub ports: BTreeSet<i64>,
}

impl Used {
    /// Every address the given services hold.
    pub fn held_by(services: &[Value]) -> Self {
        let mut used = Used::default();
        for s in services {
            used.extend(claims::addresses(s));
        }
        used
    }

    pub fn extend(&mut self, addresses: impl IntoIterator<Item = Address>) {
        for a in addresses {
            match a {
                Address::Ip(ip) => self.ips.insert(ip.to_string()),
                Address::NodePort(p) => self.ports.insert(i64::from(p)),
            };
        }
    }
}

pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i64> = 30000..=32767;

pub struct ServiceAllocator {
    base: u32,
    size: u32,
    lock: Mutex<()>,
}

impl ServiceAllocator {
    /// `cidr` like `10.43.0.0/16`.
    pub fn new(cidr: &str) -> Result<Self, String> {
        let (addr, bits) = cidr
            .split_once('/')
            .ok_or_else(|| format!("service CIDR {cidr:?} needs a /prefix"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|e| format!("service CIDR {cidr:?}: {e}"))?;
        let bits: u32 = bits
            .parse()
            .map_err(|e| format!("service CIDR {cidr:?}: {e}"))?;
        if !(8..=30).contains(&bits) {
            return Err(format!(
                "service CIDR {cidr:?}: prefix must be between /8 and /30"
            ));
        }
        let size = 1u32 << (32 - bits);
        Ok(Self {
            base: u32::from(addr) & !(size - 1),
            size,
            lock: Mutex::new(()),
        })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip >= self.base && ip < self.base + self.size
    }

    /// The range's first address, kept for the `default/kubernetes` Service.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// Serializes this server's choose-and-claim, so its own requests do not race each other
    /// for one candidate (servers race only through the claims, which the store arbitrates).
    pub async fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// Fills `spec.clusterIP(s)` and node ports of a new service, avoiding `used`. Pure: the
    /// caller claims what it chose before writing the service.
    pub fn allocate(&self, service: &mut Value, used: &Used) -> Result<(), FieldError> {
        let kind = service
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if kind == "ExternalName" {
            return Ok(());
        }
        let used_ips = &used.ips;
        let requested = service
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ip = match requested.as_str() {
            "None" => "None".to_string(),
            "" => self.next_free_ip(used_ips).ok_or_else(|| FieldError {
                path: "spec.clusterIP".into(),
                detail: "Internal error: failed to allocate a serviceIP: range is full".into(),
            })?,
            ip => {
                let parsed: Ipv4Addr = ip.parse().map_err(|_| FieldError {
                    path: "spec.clusterIP".into(),
                    detail: format!("Invalid value: {ip:?}: must be a valid IP address"),
                })?;
                if !self.contains(parsed) {
                    return Err(FieldError {
                        path: "spec.clusterIP".into(),
                        detail: format!(
                            "Invalid value: {ip:?}: provided IP is not in the valid range"
                        ),
                    });
                }
                if used_ips.contains(ip) {
                    return Err(FieldError {
                        path: "spec.clusterIP".into(),
                        detail: format!("Invalid value: {ip:?}: provided IP is already allocated"),
                    });
                }
                ip.to_string()
            }
        };
        service["spec"]["clusterIP"] = Value::from(ip.clone());
        service["spec"]["clusterIPs"] = serde_json::json!([ip]);
        if kind == "NodePort" || kind == "LoadBalancer" {
            let mut used_ports = used.ports.clone();
            if let Some(ports) = service
                .pointer_mut("/spec/ports")
                .and_then(Value::as_array_mut)
            {
                for (i, port) in ports.iter_mut().enumerate() {
                    match port
                        .get("nodePort")
                        .and_then(Value::as_i64)
                        .filter(|p| *p != 0)
                    {
                        Some(p) if used_ports.contains(&p) => {
                            return Err(FieldError {
                                path: format!("spec.ports[{i}].nodePort"),
                                detail: format!(
                                    "Invalid value: {p}: provided port is already allocated"
                                ),
                            })
                        }
                        Some(p) => {
                            used_ports.insert(p);
                        }
                        None => {
                            let free = NODE_PORT_RANGE
                                .clone()
                                .find(|p| !used_ports.contains(p))
                                .ok_or_else(|| FieldError {
                                    path: format!("spec.ports[{i}].nodePort"),
                                    detail: "Internal error: range is full".into(),
                                })?;
                            used_ports.insert(free);
                            port["nodePort"] = Value::from(free);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// An update keeps the addresses the service was given, as Kubernetes' service REST does:
    /// an omitted clusterIP or nodePort keeps the old one, a changed clusterIP is refused, a
    /// type that no longer needs node ports drops the ones the server gave, a type that needs
    /// them gets new ones, and a port another service holds is refused. `used`: what the
    /// other services hold. Pure, as [`ServiceAllocator::allocate`].
    pub fn update_allocations(
        &self,
        current: &Value,
        updated: &mut Value,
        used: &Used,
    ) -> Result<(), FieldError> {
        let type_of = |v: &Value| {
            v.pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_string()
        };
        let (old_type, new_type) = (type_of(current), type_of(updated));
        if new_type == "ExternalName" {
            if let Some(spec) = updated.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
            strip_node_ports(updated);
            return Ok(());
        }
        let old_ip = current
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let wanted = updated
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if old_type == "ExternalName" || old_ip.is_empty() {
            // Nothing was allocated: allocate as for a new service.
            return self.allocate(updated, used);
        }
        if !wanted.is_empty() && wanted != old_ip {
            return Err(FieldError {
                path: "spec.clusterIPs[0]".into(),
                detail: format!("Invalid value: [{wanted:?}]: may not change once set"),
            });
        }
        updated["spec"]["clusterIP"] = Value::from(old_ip.clone());
        updated["spec"]["clusterIPs"] = serde_json::json!([old_ip]);

        let old_ports = current
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let old_port_of = |port: &Value| -> Option<i64> {
            old_ports
                .iter()
                .find(|o| {
                    o.get("port") == port.get("port")
                        && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                            == port
                                .get("protocol")
                                .and_then(Value::as_str)
                                .unwrap_or("TCP")
                })
                .and_then(|o| o.get("nodePort").and_then(Value::as_i64))
                .filter(|p| *p != 0)
        };
        let needs_ports = new_type == "NodePort" || new_type == "LoadBalancer";
        let mut used = used.ports.clone();
        let Some(ports) = updated
            .pointer_mut("/spec/ports")
            .and_then(Value::as_array_mut)
        else {
            return Ok(());
        };
        for (i, port) in ports.iter_mut().enumerate() {
            let given = port
                .get("nodePort")
                .and_then(Value::as_i64)
                .filter(|p| *p != 0);
            let old = old_port_of(port);
            if !needs_ports {
                // The server's own node port goes with the type; one the user set stays for
                // validation to refuse.
                if given.is_none() || given == old {
                    if let Some(m) = port.as_object_mut() {
                        m.remove("nodePort");
                    }
                }
                continue;
            }
            let chosen = match given.or(old) {
                Some(p) if used.contains(&p) => {
                    return Err(FieldError {
                        path: format!("spec.ports[{i}].nodePort"),
                        detail: format!("Invalid value: {p}: provided port is already allocated"),
                    })
                }
                Some(p) => p,
                None => NODE_PORT_RANGE
                    .clone()
                    .find(|p| {
                        !used.contains(p)
                            && !old_ports
                                .iter()
                                .any(|o| o.get("nodePort").and_then(Value::as_i64) == Some(*p))
                    })
                    .ok_or_else(|| FieldError {
                        path: format!("spec.ports[{i}].nodePort"),
                        detail: "Internal error: range is full".into(),
                    })?,
            };
            used.insert(chosen);
            port["nodePort"] = Value::from(chosen);
        }
        Ok(())
    }

    fn next_free_ip(&self, used: &BTreeSet<String>) -> Option<String> {
        // .0 is the network, .1 is kept for the `kubernetes` service, the last is broadcast.
        (2..self.size - 1)
            .map(|off| Ipv4Addr::from(self.base + off).to_string())
            .find(|ip| !used.contains(ip))
    }
}

fn strip_node_ports(service: &mut Value) {
    if let Some(ports) = service
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
    {
        for p in ports {
            if let Some(m) = p.as_object_mut() {
                m.remove("nodePort");
            }
        }
    }
}
