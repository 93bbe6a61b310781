//! The Pod Security Standards (`privileged`, `baseline`, `restricted`) as pure checks over a
//! pod's metadata and spec, reporting violations in Kubernetes' PodSecurity admission words;
//! the namespace labels that choose a level per mode (`labels.rs`). Every version label
//! (`latest`, `v1.x`) is evaluated with the latest checks.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

mod baseline;
mod labels;
mod pod;
mod restricted;
#[cfg(test)]
mod tests;

pub use labels::{
    namespace_policy, validate_labels, Defaults, Mode, NamespacePolicy, AUDIT, ENFORCE, WARN,
};

/// A level of the standard; ordered from the most to the least permissive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Level {
    #[default]
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub const NAMES: &'static str = "privileged, baseline, restricted";

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Pod Security level {0:?}: must be one of {names}", names = Level::NAMES)]
pub struct InvalidLevel(pub String);

impl FromStr for Level {
    type Err = InvalidLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            other => Err(InvalidLevel(other.to_string())),
        }
    }
}

/// The version of the standard a label names: `latest` or `v1.MINOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    #[default]
    Latest,
    V1(u32),
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::V1(minor) => write!(f, "v1.{minor}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Pod Security version {0:?}: must be \"latest\" or \"v1.x\"")]
pub struct InvalidVersion(pub String);

impl FromStr for Version {
    type Err = InvalidVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "latest" {
            return Ok(Version::Latest);
        }
        s.strip_prefix("v1.")
            .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|m| m.parse().ok())
            .map(Version::V1)
            .ok_or_else(|| InvalidVersion(s.to_string()))
    }
}

/// A level at a version, shown as Kubernetes shows it: `baseline:latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    pub level: Level,
    pub version: Version,
}

impl Policy {
    pub const fn latest(level: Level) -> Self {
        Self {
            level,
            version: Version::Latest,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// One failed check: the reason (`host namespaces`) and what in the pod fails it
/// (`hostNetwork=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{} ({})", self.reason, self.detail)
        }
    }
}

/// A check of the standard, named by Kubernetes' check ID.
struct Check {
    id: &'static str,
    level: Level,
    /// Checks of a lower level this one replaces at its level (`restrictedVolumes` replaces
    /// `hostPathVolumes` in `restricted`).
    overrides: &'static [&'static str],
    run: fn(&pod::PodView) -> Option<Violation>,
}

/// Every check in the order Kubernetes lists violations: baseline checks by ID, then
/// restricted checks by ID.
const CHECKS: &[Check] = &[
    Check {
        id: "appArmorProfile",
        level: Level::Baseline,
        overrides: &[],
        run: baseline::app_armor,
    },
    Check {
        id: "capabilities_baseline",
        level: Level::Baseline,
        overrides: &[],
        run: baseline::capabilities,
    },
    Check {
        id: "hostNamespaces",
        level: Level::Baseline,
        overrides: &[],
        run: baseline::host_namespaces,
    },
    Check {
        id: "hostPathVolumes",
        level: Level::Baseline,
        overrides: &[],
        run: baseline::host_path_volumes,
    },
    Check {
        id: "hostPorts",
        level: Level::Baseline,
        overrides: &[],
        run: baseline::host_ports,
    },
    Check {
        id: "privileged",
        level: Level::Baseline,
        overrides: &[],
        run: baseline::privileged,
    },
    Check {
        id: "procMount",
        level: Level::Baseline,
        overrides: &[],
        run: baseline::proc_mount,
    },
    Check {
        id: "seLinuxOptions",
        level: Level::Baseline,
        overrides: &[],
        run: baseline::se_linux_options,
    },
    Check {
        id: "seccompProfile_baseline",
        level: Level::Baseline,
        overrides: &[],
        run: baseline::seccomp,
    },
    Check {
        id: "sysctls",
        level: Level::Baseline,
        overrides: &[],
        run: baseline::sysctls,
    },
    Check {
        id: "windowsHostProcess",
        level: Level::Baseline,
        overrides: &[],
        run: baseline::host_process,
    },
    Check {
        id: "allowPrivilegeEscalation",
        level: Level::Restricted,
        overrides: &[],
        run: restricted::allow_privilege_escalation,
    },
    Check {
        id: "capabilities_restricted",
        level: Level::Restricted,
        overrides: &["capabilities_baseline"],
        run: restricted::capabilities,
    },
    Check {
        id: "restrictedVolumes",
        level: Level::Restricted,
        overrides: &["hostPathVolumes"],
        run: restricted::volume_types,
    },
    Check {
        id: "runAsNonRoot",
        level: Level::Restricted,
        overrides: &[],
        run: restricted::run_as_non_root,
    },
    Check {
        id: "runAsUser",
        level: Level::Restricted,
        overrides: &[],
        run: restricted::run_as_user,
    },
    Check {
        id: "seccompProfile_restricted",
        level: Level::Restricted,
        overrides: &["seccompProfile_baseline"],
        run: restricted::seccomp,
    },
];

/// What the pod violates at `level` (nothing at `privileged`).
pub fn check(level: Level, meta: &ObjectMeta, spec: &PodSpec) -> Vec<Violation> {
    let view = pod::PodView::new(meta, spec);
    let applies = |c: &Check| c.level <= level && c.level != Level::Privileged;
    let overridden: Vec<&str> = CHECKS
        .iter()
        .filter(|c| applies(c))
        .flat_map(|c| c.overrides.iter().copied())
        .collect();
    CHECKS
        .iter()
        .filter(|c| applies(c) && !overridden.contains(&c.id))
        .filter_map(|c| (c.run)(&view))
        .collect()
}

/// `violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), ...`; with
/// `would` for warnings: `would violate PodSecurity ...`.
pub fn message(policy: Policy, violations: &[Violation], would: bool) -> String {
    let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
    format!(
        "{} PodSecurity \"{policy}\": {}",
        if would { "would violate" } else { "violates" },
        list.join(", ")
    )
}
