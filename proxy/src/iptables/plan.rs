//! The iptables planner: service ports plus what `iptables-save` shows → one
//! `iptables-restore --noflush` text that rewrites every CORRAL-* chain, fixes the jumps from
//! the built-in chains (missing or duplicated) and deletes chains of services that are gone.
//! The layout follows kube-proxy's iptables mode. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use sha2::{Digest, Sha256};

use crate::model::ServicePortInfo;

pub const SERVICES: &str = "CORRAL-SERVICES";
pub const NODEPORTS: &str = "CORRAL-NODEPORTS";
pub const POSTROUTING: &str = "CORRAL-POSTROUTING";
pub const MARK_MASQ: &str = "CORRAL-MARK-MASQ";
/// The packet mark asking for masquerade (kube-proxy's 0x4000).
pub const MASQ_MARK: &str = "0x4000";

/// Whether a chain is the proxy's: other CORRAL-* chains (the agent's pod network chains
/// `CORRAL-POD-EGRESS`, `CORRAL-FORWARD`) share these tables and are not ours to flush.
fn is_ours(chain: &str) -> bool {
    [SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ].contains(&chain)
        || ["CORRAL-SVC-", "CORRAL-EXT-", "CORRAL-SEP-"]
            .iter()
            .any(|p| chain.starts_with(p))
}

/// A rule in a built-in chain jumping into ours, exactly as `iptables-save` prints it.
struct Jump {
    table: &'static str,
    chain: &'static str,
    spec: &'static str,
}

const PORTALS: &str = "-m comment --comment \"corral service portals\" -j CORRAL-SERVICES";
const FILTER_PORTALS: &str =
    "-m conntrack --ctstate NEW -m comment --comment \"corral service portals\" -j CORRAL-SERVICES";
const JUMPS: &[Jump] = &[
    Jump {
        table: "nat",
        chain: "PREROUTING",
        spec: PORTALS,
    },
    Jump {
        table: "nat",
        chain: "OUTPUT",
        spec: PORTALS,
    },
    Jump {
        table: "nat",
        chain: "POSTROUTING",
        spec: "-m comment --comment \"corral postrouting rules\" -j CORRAL-POSTROUTING",
    },
    Jump {
        table: "filter",
        chain: "INPUT",
        spec: FILTER_PORTALS,
    },
    Jump {
        table: "filter",
        chain: "FORWARD",
        spec: FILTER_PORTALS,
    },
    Jump {
        table: "filter",
        chain: "OUTPUT",
        spec: FILTER_PORTALS,
    },
];

/// Chains and rules of one table, from `iptables-save`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Table {
    pub chains: BTreeSet<String>,
    /// `-A ...` lines.
    pub rules: Vec<String>,
}

/// The tables the proxy writes, as they are now.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Existing {
    pub tables: BTreeMap<String, Table>,
}

impl Existing {
    pub fn parse(save: &str) -> Self {
        let mut tables: BTreeMap<String, Table> = BTreeMap::new();
        let mut current: Option<String> = None;
        for line in save.lines() {
            if let Some(t) = line.strip_prefix('*') {
                current = Some(t.trim().to_string());
                tables.entry(t.trim().to_string()).or_default();
                continue;
            }
            let Some(t) = current.as_ref().and_then(|c| tables.get_mut(c)) else {
                continue;
            };
            if let Some(decl) = line.strip_prefix(':') {
                if let Some(name) = decl.split_whitespace().next() {
                    t.chains.insert(name.to_string());
                }
            } else if line.starts_with("-A ") {
                t.rules.push(line.to_string());
            }
        }
        Existing { tables }
    }

    fn table(&self, name: &str) -> Table {
        self.tables.get(name).cloned().unwrap_or_default()
    }
}

fn count_jumps(table: &Table, jump: &Jump) -> usize {
    let line = format!("-A {} {}", jump.chain, jump.spec);
    table.rules.iter().filter(|r| **r == line).count()
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode_upper(&h.finalize()[..8])
}

pub fn svc_chain(p: &ServicePortInfo) -> String {
    format!("CORRAL-SVC-{}", hash(&[&p.id(), &p.protocol]))
}

fn ext_chain(p: &ServicePortInfo) -> String {
    format!("CORRAL-EXT-{}", hash(&[&p.id(), &p.protocol]))
}

fn sep_chain(p: &ServicePortInfo, ep: &str) -> String {
    format!("CORRAL-SEP-{}", hash(&[&p.id(), &p.protocol, ep]))
}

/// Text for one table: declarations (which flush), jump fixes, rules, then deletion of our
/// chains that are no longer wanted.
fn table_text(
    out: &mut String,
    name: &str,
    existing: &Table,
    chains: &BTreeSet<String>,
    rules: &[String],
) {
    let stale: Vec<&String> = existing
        .chains
        .iter()
        .filter(|c| is_ours(c) && !chains.contains(*c))
        .collect();
    let _ = writeln!(out, "*{name}");
    for c in chains.iter().chain(stale.iter().copied()) {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    for jump in JUMPS.iter().filter(|j| j.table == name) {
        match count_jumps(existing, jump) {
            0 => {
                let _ = writeln!(out, "-I {} {}", jump.chain, jump.spec);
            }
            n => {
                for _ in 1..n {
                    let _ = writeln!(out, "-D {} {}", jump.chain, jump.spec);
                }
            }
        }
    }
    for r in rules {
        let _ = writeln!(out, "{r}");
    }
    for c in stale {
        let _ = writeln!(out, "-X {c}");
    }
    let _ = writeln!(out, "COMMIT");
}

/// The restore text that makes the kernel match `ports`.
pub fn plan(ports: &[ServicePortInfo], existing: &Existing) -> String {
    let mut nat_chains: BTreeSet<String> = [SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut nat = vec![
        format!("-A {MARK_MASQ} -j MARK --or-mark {MASQ_MARK}"),
        format!("-A {POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
        format!("-A {POSTROUTING} -j MARK --xor-mark {MASQ_MARK}"),
        format!(
            "-A {POSTROUTING} -m comment --comment \"corral service traffic requiring SNAT\" -j MASQUERADE"
        ),
    ];
    let mut filter = vec![];
    for p in ports {
        let (id, proto) = (p.id(), &p.protocol);
        if p.endpoints.is_empty() {
            // Refuse at once rather than let the packet wander off by the default route.
            if let Some(ip) = p.cluster_ip {
                filter.push(format!(
                    "-A {SERVICES} -d {ip}/32 -p {proto} -m comment --comment \"{id} has no endpoints\" -m {proto} --dport {} -j REJECT --reject-with icmp-port-unreachable",
                    p.port
                ));
            }
            if let Some(np) = p.node_port {
                filter.push(format!(
                    "-A {SERVICES} -p {proto} -m comment --comment \"{id} has no endpoints\" -m addrtype --dst-type LOCAL -m {proto} --dport {np} -j REJECT --reject-with icmp-port-unreachable"
                ));
            }
            continue;
        }
        let svc = svc_chain(p);
        nat_chains.insert(svc.clone());
        if let Some(ip) = p.cluster_ip {
            nat.push(format!(
                "-A {SERVICES} -d {ip}/32 -p {proto} -m comment --comment \"{id} cluster IP\" -m {proto} --dport {} -j {svc}",
                p.port
            ));
        }
        if let Some(np) = p.node_port {
            let ext = ext_chain(p);
            nat_chains.insert(ext.clone());
            nat.push(format!(
                "-A {NODEPORTS} -p {proto} -m comment --comment \"{id}\" -m {proto} --dport {np} -j {ext}"
            ));
            nat.push(format!("-A {ext} -j {MARK_MASQ}"));
            nat.push(format!("-A {ext} -j {svc}"));
        }
        // Masquerade every service connection: without br_netfilter a pod's reply to a client
        // on the same bridge would skip the un-DNAT (see ARCHITECTURE-proxy.md).
        nat.push(format!("-A {svc} -j {MARK_MASQ}"));
        let seps: Vec<(String, String)> = p
            .endpoints
            .iter()
            .map(|ep| (ep.to_string(), sep_chain(p, &ep.to_string())))
            .collect();
        // ClientIP affinity, as kube-proxy: a client seen by an endpoint chain within the
        // timeout goes back there (each endpoint chain records its clients in a `recent` list
        // named after it); only new clients reach the random choice below.
        if let Some(timeout) = p.affinity_timeout {
            for (ep, sep) in &seps {
                nat.push(format!(
                    "-A {svc} -m comment --comment \"{id} -> {ep}\" -m recent --name {sep} --rcheck --seconds {timeout} --reap -j {sep}"
                ));
            }
        }
        let n = seps.len();
        for (i, (ep, sep)) in seps.iter().enumerate() {
            nat_chains.insert(sep.clone());
            if i + 1 < n {
                nat.push(format!(
                    "-A {svc} -m comment --comment \"{id} -> {ep}\" -m statistic --mode random --probability {:.10} -j {sep}",
                    1.0 / (n - i) as f64
                ));
            } else {
                nat.push(format!(
                    "-A {svc} -m comment --comment \"{id} -> {ep}\" -j {sep}"
                ));
            }
            let record = match p.affinity_timeout {
                Some(_) => format!(" -m recent --name {sep} --set"),
                None => String::new(),
            };
            nat.push(format!(
                "-A {sep} -p {proto} -m comment --comment \"{id}\"{record} -m {proto} -j DNAT --to-destination {ep}"
            ));
        }
    }
    // Last, so cluster IPs are matched first; loopback node ports would need route_localnet.
    nat.push(format!(
        "-A {SERVICES} ! -d 127.0.0.0/8 -m comment --comment \"corral service nodeports; must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j {NODEPORTS}"
    ));
    let mut out = String::new();
    table_text(&mut out, "nat", &existing.table("nat"), &nat_chains, &nat);
    let filter_chains = [SERVICES.to_string()].into_iter().collect();
    table_text(
        &mut out,
        "filter",
        &existing.table("filter"),
        &filter_chains,
        &filter,
    );
    out
}

/// The restore text removing every CORRAL-* chain and every jump to them; empty when there is
/// nothing of ours left.
pub fn cleanup(existing: &Existing) -> String {
    let mut out = String::new();
    for (name, table) in &existing.tables {
        let ours: Vec<&String> = table.chains.iter().filter(|c| is_ours(c)).collect();
        let jumps: Vec<(&Jump, usize)> = JUMPS
            .iter()
            .filter(|j| j.table == name)
            .map(|j| (j, count_jumps(table, j)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if ours.is_empty() && jumps.is_empty() {
            continue;
        }
        let _ = writeln!(out, "*{name}");
        for c in &ours {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for (j, n) in jumps {
            for _ in 0..n {
                let _ = writeln!(out, "-D {} {}", j.chain, j.spec);
            }
        }
        for c in &ours {
            let _ = writeln!(out, "-X {c}");
        }
        let _ = writeln!(out, "COMMIT");
    }
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
