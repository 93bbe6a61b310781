//! The node's own usage, as kubelet reports the node: the root of the cgroup hierarchy the
//! agent sees. On an nspawn machine (or any host with a cgroup namespace) that root is the
//! machine's own subtree; a local cluster's nodes (network namespaces on one host) share the
//! host's root, so each reports the host. Parsing is pure; reading is one small function.

use std::path::{Path, PathBuf};

use super::StatsError;
use crate::runtime::metrics::{working_set, Usage};

/// Where the cgroup files are read: `/sys/fs/cgroup` on a node.
#[derive(Debug, Clone)]
pub struct NodeCgroup {
    pub root: PathBuf,
    pub proc: PathBuf,
}

impl Default for NodeCgroup {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/sys/fs/cgroup"),
            proc: PathBuf::from("/proc"),
        }
    }
}

/// A `key value` line file (`memory.stat`, `cpu.stat`): the value of `key`.
pub fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next()? == key).then_some(())?;
        parts.next()?.parse().ok()
    })
}

/// `/proc/meminfo`'s `key:  N kB`, in bytes.
pub fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// The memory a cgroup-v2 root has no `memory.current` for, from `/proc/meminfo` as cadvisor
/// does: used (total less free) less inactive file pages.
pub fn meminfo_working_set(meminfo: &str) -> Option<u64> {
    let total = meminfo_bytes(meminfo, "MemTotal")?;
    let free = meminfo_bytes(meminfo, "MemFree")?;
    let inactive_file = meminfo_bytes(meminfo, "Inactive(file)").unwrap_or(0);
    Some(working_set(total.saturating_sub(free), inactive_file))
}

fn read(path: &Path) -> Result<String, StatsError> {
    std::fs::read_to_string(path).map_err(|source| StatsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_u64(path: &Path, text: &str) -> Result<u64, StatsError> {
    text.trim().parse().map_err(|_| StatsError::Parse {
        path: path.to_path_buf(),
    })
}

fn field(path: &Path, text: &str, key: &str) -> Result<u64, StatsError> {
    stat_value(text, key).ok_or_else(|| StatsError::Parse {
        path: path.to_path_buf(),
    })
}

impl NodeCgroup {
    /// The root's cumulative CPU time and working set, from cgroup v1's `cpuacct` and `memory`
    /// controllers, else cgroup v2's root files.
    pub fn usage(&self) -> Result<Usage, StatsError> {
        let v1_cpu = self.root.join("cpuacct/cpuacct.usage");
        if v1_cpu.exists() {
            let cpu_ns = parse_u64(&v1_cpu, &read(&v1_cpu)?)?;
            let usage_path = self.root.join("memory/memory.usage_in_bytes");
            let usage = parse_u64(&usage_path, &read(&usage_path)?)?;
            let stat_path = self.root.join("memory/memory.stat");
            let inactive = field(&stat_path, &read(&stat_path)?, "total_inactive_file")?;
            return Ok(Usage {
                cpu_ns,
                working_set: working_set(usage, inactive),
            });
        }
        let cpu_path = self.root.join("cpu.stat");
        let cpu_ns = field(&cpu_path, &read(&cpu_path)?, "usage_usec")?.saturating_mul(1000);
        // The real root has no memory.current; a namespaced root (a machine's subtree) has.
        let current = self.root.join("memory.current");
        let working = if current.exists() {
            let usage = parse_u64(&current, &read(&current)?)?;
            let stat_path = self.root.join("memory.stat");
            working_set(
                usage,
                field(&stat_path, &read(&stat_path)?, "inactive_file")?,
            )
        } else {
            let path = self.proc.join("meminfo");
            meminfo_working_set(&read(&path)?).ok_or(StatsError::Parse { path })?
        };
        Ok(Usage {
            cpu_ns,
            working_set: working,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_files_give_the_named_value() {
        let stat = "cache 10\ntotal_inactive_file 4096\ninactive_file 7\n";
        for (key, want) in [
            ("total_inactive_file", Some(4096)),
            ("inactive_file", Some(7)),
            ("cache", Some(10)),
            ("total_cache", None),
            ("inactive", None),
        ] {
            assert_eq!(stat_value(stat, key), want, "{key}");
        }
    }

    #[test]
    fn meminfo_gives_bytes_and_a_working_set() {
        let meminfo = "MemTotal:       1000 kB\nMemFree:         200 kB\n\
                       Inactive(anon):   50 kB\nInactive(file):  300 kB\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(1_024_000));
        assert_eq!(meminfo_bytes(meminfo, "Inactive"), None);
        // used 800 kB, less 300 kB inactive file
        assert_eq!(meminfo_working_set(meminfo), Some(500 * 1024));
        assert_eq!(meminfo_working_set("MemTotal: 1 kB\n"), None);
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn a_v1_hierarchy_is_read_from_cpuacct_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "cpuacct/cpuacct.usage", "123456789\n");
        write(dir.path(), "memory/memory.usage_in_bytes", "10000\n");
        write(
            dir.path(),
            "memory/memory.stat",
            "total_inactive_file 2500\n",
        );
        let node = NodeCgroup {
            root: dir.path().into(),
            proc: dir.path().join("proc"),
        };
        assert_eq!(
            node.usage().unwrap(),
            Usage {
                cpu_ns: 123_456_789,
                working_set: 7500
            }
        );
    }

    #[test]
    fn a_v2_root_without_memory_current_reads_meminfo() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "cpu.stat", "usage_usec 42\nuser_usec 40\n");
        write(
            dir.path(),
            "proc/meminfo",
            "MemTotal: 100 kB\nMemFree: 40 kB\nInactive(file): 10 kB\n",
        );
        let node = NodeCgroup {
            root: dir.path().into(),
            proc: dir.path().join("proc"),
        };
        assert_eq!(
            node.usage().unwrap(),
            Usage {
                cpu_ns: 42_000,
                working_set: 50 * 1024
            }
        );
        write(dir.path(), "memory.current", "9000\n");
        write(dir.path(), "memory.stat", "inactive_file 1000\n");
        assert_eq!(node.usage().unwrap().working_set, 8000);
    }
}
