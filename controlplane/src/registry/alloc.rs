//! Service address allocation: ClusterIPs from the service CIDR and NodePorts from
//! 30000-32767, unique across services, released when the service is deleted (allocations are
//! derived from the stored services, so there is no separate bitmap to drift out of sync).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use crate::validate::FieldError;

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

    pub async fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// Fills `spec.clusterIP(s)` and node ports of a new service. Caller holds `lock()`.
    pub fn allocate(
        &self,
        service: &mut Value,
        _previous: Option<&Value>,
        existing: &[Value],
    ) -> Result<(), FieldError> {
        let kind = service
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if kind == "ExternalName" {
            return Ok(());
        }
        let used_ips: BTreeSet<String> = existing
            .iter()
            .filter_map(|s| {
                s.pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        let requested = service
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ip = match requested.as_str() {
            "None" => "None".to_string(),
            "" => self.next_free_ip(&used_ips).ok_or_else(|| FieldError {
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
            let mut used_ports = used_node_ports(existing);
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
    /// them gets new ones, and a port another service holds is refused. `others` are the
    /// other stored services. Caller holds `lock()`.
    pub fn update_allocations(
        &self,
        current: &Value,
        updated: &mut Value,
        others: &[Value],
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
            return self.allocate(updated, Some(current), others);
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
        let mut used = used_node_ports(others);
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

/// Every node port the given services hold.
fn used_node_ports(services: &[Value]) -> BTreeSet<i64> {
    services
        .iter()
        .flat_map(|s| {
            s.pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cluster_ips_and_node_ports_are_unique() {
        let a = ServiceAllocator::new("10.43.0.0/16").unwrap();
        let mut s1 = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        a.allocate(&mut s1, None, &[]).unwrap();
        let mut s2 = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        a.allocate(&mut s2, None, std::slice::from_ref(&s1))
            .unwrap();
        assert_eq!(s1["spec"]["clusterIP"], "10.43.0.2");
        assert_eq!(s2["spec"]["clusterIP"], "10.43.0.3");
        assert_ne!(
            s1["spec"]["ports"][0]["nodePort"],
            s2["spec"]["ports"][0]["nodePort"]
        );
        let mut dup = json!({"spec": {"clusterIP": "10.43.0.2", "ports": [{"port": 80}]}});
        assert!(a
            .allocate(&mut dup, None, &[s1.clone()])
            .unwrap_err()
            .detail
            .contains("already allocated"));
        let mut outside = json!({"spec": {"clusterIP": "192.0.2.1", "ports": [{"port": 80}]}});
        assert!(a.allocate(&mut outside, None, &[]).is_err());
    }

    #[test]
    fn updates_keep_change_or_drop_allocations_as_kubernetes_does() {
        let a = ServiceAllocator::new("10.43.0.0/16").unwrap();
        let mut np =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        a.allocate(&mut np, None, &[]).unwrap();
        let port = np["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        let mut other = json!({"spec": {"type": "NodePort", "ports": [{"port": 81}]}});
        a.allocate(&mut other, None, std::slice::from_ref(&np))
            .unwrap();
        let others = [other.clone()];

        // An apply that omits the allocated fields keeps them.
        let mut same =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        a.update_allocations(&np, &mut same, &others).unwrap();
        assert_eq!(same["spec"]["clusterIP"], np["spec"]["clusterIP"]);
        assert_eq!(same["spec"]["ports"][0]["nodePort"], port);

        // NodePort -> ClusterIP drops the server-given node port.
        let mut cip = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "nodePort": port}]}});
        a.update_allocations(&np, &mut cip, &others).unwrap();
        assert!(cip["spec"]["ports"][0].get("nodePort").is_none(), "{cip}");

        // ClusterIP -> NodePort allocates one.
        let mut back =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        a.update_allocations(&cip, &mut back, &others).unwrap();
        let new_port = back["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!(NODE_PORT_RANGE.contains(&new_port));
        assert_ne!(
            Some(new_port),
            other["spec"]["ports"][0]["nodePort"].as_i64()
        );

        // Taking another service's port or changing the cluster IP is refused.
        let taken = other["spec"]["ports"][0]["nodePort"].clone();
        let mut steal =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": taken}]}});
        let err = a.update_allocations(&np, &mut steal, &others).unwrap_err();
        assert_eq!(err.path, "spec.ports[0].nodePort");
        assert!(
            err.detail.ends_with("provided port is already allocated"),
            "{}",
            err.detail
        );
        let mut moved = json!({"spec": {"type": "NodePort", "clusterIP": "10.43.0.3", "ports": [{"port": 80}]}});
        let err = a.update_allocations(&np, &mut moved, &others).unwrap_err();
        assert_eq!(err.path, "spec.clusterIPs[0]");
        assert_eq!(
            err.detail,
            "Invalid value: [\"10.43.0.3\"]: may not change once set"
        );
    }
}
