//! Pod egress and forwarding in iptables: nat `CORRAL-POD-EGRESS` (from POSTROUTING)
//! masquerades pods leaving the cluster CIDR, filter `CORRAL-FORWARD` (from FORWARD) accepts
//! pod traffic; the planner writes one `iptables-restore --noflush` text from what
//! `iptables-save` shows (as the proxy does), the small executor runs the two binaries.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::model::Cidr;
use crate::Error;

pub const EGRESS_CHAIN: &str = "CORRAL-POD-EGRESS";
pub const FORWARD_CHAIN: &str = "CORRAL-FORWARD";

/// A rule in a built-in chain jumping into ours, exactly as `iptables-save` prints it.
struct Jump {
    table: &'static str,
    chain: &'static str,
    target: &'static str,
    spec: &'static str,
}

const JUMPS: &[Jump] = &[
    Jump {
        table: "nat",
        chain: "POSTROUTING",
        target: EGRESS_CHAIN,
        spec: "-m comment --comment \"corral pod egress\" -j CORRAL-POD-EGRESS",
    },
    Jump {
        table: "filter",
        chain: "FORWARD",
        target: FORWARD_CHAIN,
        spec: "-m comment --comment \"corral pod forward\" -j CORRAL-FORWARD",
    },
];

/// The rules of our chains, as `iptables-save` prints them.
fn rules(cluster: Cidr, pod_cidr: Option<Cidr>) -> [(&'static str, &'static str, Vec<String>); 2] {
    let egress = pod_cidr
        .map(|p| {
            format!(
                "-A {EGRESS_CHAIN} -s {p} ! -d {cluster} -m comment --comment \"corral pod egress masquerade\" -j MASQUERADE"
            )
        })
        .into_iter()
        .collect();
    let forward = vec![
        format!("-A {FORWARD_CHAIN} -s {cluster} -m comment --comment \"corral forward from pods\" -j ACCEPT"),
        format!("-A {FORWARD_CHAIN} -d {cluster} -m comment --comment \"corral forward to pods\" -j ACCEPT"),
    ];
    [
        ("nat", EGRESS_CHAIN, egress),
        ("filter", FORWARD_CHAIN, forward),
    ]
}

/// One table of an `iptables-save` text: its chains and `-A` lines.
#[derive(Debug, Default)]
struct Table {
    chains: Vec<String>,
    rules: Vec<String>,
}

fn table(save: &str, name: &str) -> Table {
    let mut t = Table::default();
    let mut inside = false;
    for line in save.lines() {
        if let Some(n) = line.strip_prefix('*') {
            inside = n.trim() == name;
        } else if !inside {
            continue;
        } else if let Some(decl) = line.strip_prefix(':') {
            t.chains
                .extend(decl.split_whitespace().next().map(str::to_string));
        } else if line.starts_with("-A ") {
            t.rules.push(line.to_string());
        }
    }
    t
}

fn jumps(t: &Table, j: &Jump) -> usize {
    let line = format!("-A {} {}", j.chain, j.spec);
    t.rules.iter().filter(|r| **r == line).count()
}

/// The restore text making the chains and jumps exactly right; empty when they already are.
pub fn plan(cluster: Cidr, pod_cidr: Option<Cidr>, save: &str) -> String {
    let mut out = String::new();
    for (name, chain, want) in rules(cluster, pod_cidr) {
        let t = table(save, name);
        let jump = JUMPS
            .iter()
            .find(|j| j.target == chain)
            .expect("one jump per chain");
        let have: Vec<&String> = t
            .rules
            .iter()
            .filter(|r| r.starts_with(&format!("-A {chain} ")))
            .collect();
        let n = jumps(&t, jump);
        if t.chains.iter().any(|c| c == chain) && n == 1 && have.iter().copied().eq(want.iter()) {
            continue;
        }
        // Declaring the chain flushes it (with --noflush only the declared chains).
        let _ = writeln!(out, "*{name}\n:{chain} - [0:0]");
        if n == 0 {
            let _ = writeln!(out, "-I {} 1 {}", jump.chain, jump.spec);
        }
        for _ in 1..n.max(1) {
            let _ = writeln!(out, "-D {} {}", jump.chain, jump.spec);
        }
        for r in &want {
            let _ = writeln!(out, "{r}");
        }
        let _ = writeln!(out, "COMMIT");
    }
    out
}

/// The restore text removing our chains and the jumps to them; empty when none exist.
pub fn cleanup(save: &str) -> String {
    let mut out = String::new();
    for j in JUMPS {
        let t = table(save, j.table);
        let exists = t.chains.iter().any(|c| c == j.target);
        let n = jumps(&t, j);
        if !exists && n == 0 {
            continue;
        }
        let _ = writeln!(out, "*{}", j.table);
        if exists {
            let _ = writeln!(out, ":{} - [0:0]", j.target);
        }
        for _ in 0..n {
            let _ = writeln!(out, "-D {} {}", j.chain, j.spec);
        }
        if exists {
            let _ = writeln!(out, "-X {}", j.target);
        }
        let _ = writeln!(out, "COMMIT");
    }
    out
}

/// The `iptables-save` / `iptables-restore` binaries of this network namespace.
#[derive(Debug, Clone)]
pub struct System {
    pub save_bin: String,
    pub restore_bin: String,
}

impl Default for System {
    fn default() -> Self {
        Self {
            save_bin: "iptables-save".into(),
            restore_bin: "iptables-restore".into(),
        }
    }
}

impl System {
    pub fn save(&self) -> Result<String, Error> {
        let mut text = String::new();
        for t in ["nat", "filter"] {
            text.push_str(&self.run(&self.save_bin, &["-t", t], None)?);
        }
        Ok(text)
    }

    pub fn restore(&self, text: &str) -> Result<(), Error> {
        self.run(&self.restore_bin, &["-w", "5", "--noflush"], Some(text))
            .map(drop)
    }

    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
        let exec = |source| Error::Exec {
            program: program.to_string(),
            source,
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(exec)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).map_err(exec)?;
        }
        let out = child.wait_with_output().map_err(exec)?;
        if !out.status.success() {
            return Err(Error::Iptables {
                program: program.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Makes the chains right; returns whether anything was written.
    pub fn sync(&self, cluster: Cidr, pod_cidr: Option<Cidr>) -> Result<bool, Error> {
        let text = plan(cluster, pod_cidr, &self.save()?);
        if text.is_empty() {
            return Ok(false);
        }
        self.restore(&text)?;
        Ok(true)
    }

    /// Removes our chains and jumps.
    pub fn cleanup(&self) -> Result<(), Error> {
        let text = cleanup(&self.save()?);
        if !text.is_empty() {
            self.restore(&text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
