//! Container probes (liveness, readiness, startup): the probe spec with Kubernetes' defaults,
//! the pure `ProbeState` that turns results into a decision with the thresholds, the three
//! actions (httpGet, tcpSocket, exec) and the prober task run per container.

mod action;
pub mod exec;
mod task;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub use action::{run_action, run_hook_action};
pub use task::{spawn, ProbeUpdate, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    pub fn field(self) -> &'static str {
        match self {
            Kind::Liveness => "livenessProbe",
            Kind::Readiness => "readinessProbe",
            Kind::Startup => "startupProbe",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Http {
        host: Option<String>,
        port: u16,
        path: String,
        scheme: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<String>,
        port: u16,
    },
    Exec {
        command: Vec<String>,
    },
}

/// A probe with Kubernetes' defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    pub kind: Kind,
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// Grace period of a kill after a failed liveness/startup probe, when the probe sets one.
    pub termination_grace: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("container {container:?}: {field}: {message}")]
pub struct ProbeError {
    pub container: String,
    pub field: String,
    pub message: String,
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.filter(|s| *s > 0).map(|s| s as u64).unwrap_or(default))
}

fn resolve_port(c: &Container, port: &IntOrString, field: &str) -> Result<u16, ProbeError> {
    let err = |message: String| ProbeError {
        container: c.name.clone(),
        field: field.to_string(),
        message,
    };
    match port {
        IntOrString::Int(p) => u16::try_from(*p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| err(format!("port {p} is out of range"))),
        IntOrString::String(s) => {
            if let Ok(p) = s.parse::<u16>() {
                return Ok(p);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| err(format!("no container port named {s:?}")))
        }
    }
}

/// An httpGet action (probe or lifecycle hook) with Kubernetes' defaults; `field` is the
/// path of the `httpGet` object, for errors.
pub(crate) fn http_action(
    c: &Container,
    h: &HTTPGetAction,
    field: &str,
) -> Result<Action, ProbeError> {
    let scheme = h.scheme.clone().unwrap_or_else(|| "HTTP".into());
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    Ok(Action::Http {
        host: h.host.clone().filter(|h| !h.is_empty()),
        port: resolve_port(c, &h.port, &format!("{field}.port"))?,
        path: if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        },
        scheme: scheme.to_uppercase(),
        headers: h
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    })
}

impl ProbeSpec {
    pub fn from_probe(c: &Container, kind: Kind, p: &Probe) -> Result<Self, ProbeError> {
        let field = kind.field();
        let err = |f: &str, message: &str| ProbeError {
            container: c.name.clone(),
            field: format!("{field}.{f}"),
            message: message.to_string(),
        };
        let action = if let Some(h) = &p.http_get {
            http_action(c, h, &format!("{field}.httpGet"))?
        } else if let Some(t) = &p.tcp_socket {
            Action::Tcp {
                host: t.host.clone().filter(|h| !h.is_empty()),
                port: resolve_port(c, &t.port, &format!("{field}.tcpSocket.port"))?,
            }
        } else if let Some(e) = &p.exec {
            let command = e.command.clone().unwrap_or_default();
            if command.is_empty() {
                return Err(err("exec.command", "must not be empty"));
            }
            Action::Exec { command }
        } else if p.grpc.is_some() {
            return Err(err("grpc", "grpc probes are not supported by this agent"));
        } else {
            return Err(err("", "must specify one of httpGet, tcpSocket or exec"));
        };
        let success_threshold = p.success_threshold.filter(|s| *s > 0).unwrap_or(1) as u32;
        if kind != Kind::Readiness && success_threshold != 1 {
            return Err(err(
                "successThreshold",
                "must be 1 for liveness and startup",
            ));
        }
        Ok(ProbeSpec {
            kind,
            action,
            initial_delay: Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64),
            period: secs(p.period_seconds, 10),
            timeout: secs(p.timeout_seconds, 1),
            success_threshold,
            failure_threshold: p.failure_threshold.filter(|s| *s > 0).unwrap_or(3) as u32,
            termination_grace: p.termination_grace_period_seconds,
        })
    }
}

/// The probes of one container, keyed by kind.
pub fn probes_of(c: &Container) -> Result<BTreeMap<&'static str, ProbeSpec>, ProbeError> {
    let mut out = BTreeMap::new();
    for (kind, p) in [
        (Kind::Startup, &c.startup_probe),
        (Kind::Liveness, &c.liveness_probe),
        (Kind::Readiness, &c.readiness_probe),
    ] {
        if let Some(p) = p {
            out.insert(kind.field(), ProbeSpec::from_probe(c, kind, p)?);
        }
    }
    Ok(out)
}

/// Consecutive results against the thresholds. `result` only flips after
/// `success_threshold` successes in a row or `failure_threshold` failures in a row.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeState {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    result: bool,
}

impl ProbeState {
    /// Readiness and startup start failed (not ready, not started); liveness starts healthy.
    pub fn new(spec: &ProbeSpec) -> Self {
        ProbeState {
            success_threshold: spec.success_threshold.max(1),
            failure_threshold: spec.failure_threshold.max(1),
            successes: 0,
            failures: 0,
            result: spec.kind == Kind::Liveness,
        }
    }

    pub fn result(&self) -> bool {
        self.result
    }

    /// `failure_threshold` failures in a row: a startup probe that gives up.
    pub fn failing(&self) -> bool {
        self.failures >= self.failure_threshold
    }

    /// Records one probe outcome; returns the new result when it changed.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
        }
        let before = self.result;
        if ok && self.successes >= self.success_threshold {
            self.result = true;
        } else if !ok && self.failures >= self.failure_threshold {
            self.result = false;
        }
        (before != self.result).then_some(self.result)
    }
}
