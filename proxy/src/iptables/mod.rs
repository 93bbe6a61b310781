//! ClusterIP and NodePort data path in the kernel: the planner turns service ports into one
//! restore text, a thin executor hands it to `iptables-restore --noflush` (atomic per table).

pub mod plan;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::model::ServicePortInfo;
use crate::Error;

/// The kernel interface, narrow so tests can fake it.
pub trait Iptables: Send + Sync {
    /// `iptables-save` of the tables the proxy writes.
    fn save(&self) -> Result<String, Error>;
    /// `iptables-restore --noflush` of `rules`.
    fn restore(&self, rules: &str) -> Result<(), Error>;
}

/// The real thing: the `iptables-save` / `iptables-restore` binaries of this network namespace.
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

impl Iptables for System {
    fn save(&self) -> Result<String, Error> {
        let mut text = String::new();
        for table in ["nat", "filter"] {
            let out = Command::new(&self.save_bin)
                .args(["-t", table])
                .output()
                .map_err(|source| Error::Exec {
                    program: self.save_bin.clone(),
                    source,
                })?;
            if !out.status.success() {
                return Err(Error::Iptables {
                    program: self.save_bin.clone(),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            text.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        Ok(text)
    }

    fn restore(&self, rules: &str) -> Result<(), Error> {
        let exec_err = |source| Error::Exec {
            program: self.restore_bin.clone(),
            source,
        };
        let mut child = Command::new(&self.restore_bin)
            .args(["-w", "5", "--noflush"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(exec_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(rules.as_bytes()).map_err(exec_err)?;
        }
        let out = child.wait_with_output().map_err(exec_err)?;
        if !out.status.success() {
            return Err(Error::Iptables {
                program: self.restore_bin.clone(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

/// Applies plans, skipping the kernel when the service ports did not change since the last
/// successful sync (unless forced, which also repairs rules someone else removed).
pub struct Syncer {
    ipt: Arc<dyn Iptables>,
    last: Option<Vec<ServicePortInfo>>,
}

impl Syncer {
    pub fn new(ipt: Arc<dyn Iptables>) -> Self {
        Self { ipt, last: None }
    }

    /// Returns whether the kernel was written.
    pub fn sync(&mut self, ports: &[ServicePortInfo], force: bool) -> Result<bool, Error> {
        if !force && self.last.as_deref() == Some(ports) {
            return Ok(false);
        }
        let existing = plan::Existing::parse(&self.ipt.save()?);
        let text = plan::plan(ports, &existing);
        self.ipt.restore(&text)?;
        self.last = Some(ports.to_vec());
        Ok(true)
    }

    /// Removes every rule and chain of ours.
    pub fn cleanup(&mut self) -> Result<(), Error> {
        let existing = plan::Existing::parse(&self.ipt.save()?);
        let text = plan::cleanup(&existing);
        if !text.is_empty() {
            self.ipt.restore(&text)?;
        }
        self.last = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Fake {
        restores: Mutex<Vec<String>>,
    }

    impl Iptables for Fake {
        fn save(&self) -> Result<String, Error> {
            Ok(String::new())
        }
        fn restore(&self, rules: &str) -> Result<(), Error> {
            self.restores.lock().push(rules.to_string());
            Ok(())
        }
    }

    #[test]
    fn syncer_writes_only_on_change_or_when_forced() {
        let fake = Arc::new(Fake::default());
        let mut s = Syncer::new(fake.clone());
        let p = crate::model::service_ports(
            &[crate::model::testutil::service(
                "web",
                "ClusterIP",
                "10.43.0.10",
                &[("", 80, 0)],
            )],
            &Default::default(),
        );
        let cases = [
            (&p[..], false, true),
            (&p[..], false, false),
            (&p[..], true, true),
            (&[][..], false, true),
        ];
        for (i, (ports, force, wrote)) in cases.into_iter().enumerate() {
            assert_eq!(s.sync(ports, force).unwrap(), wrote, "step {i}");
        }
        assert_eq!(fake.restores.lock().len(), 3);
        // Cleanup of an empty save has nothing to restore.
        s.cleanup().unwrap();
        assert_eq!(fake.restores.lock().len(), 3);
    }
}
