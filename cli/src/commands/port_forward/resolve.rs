//! What `port-forward` forwards, decided without I/O as kubectl decides it: `[LOCAL:]REMOTE`
//! specs, a Service's port mapped to its pods' targetPort (named ports looked up in the
//! pod's containers), a pod's named ports, and which of a selector's pods to use.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// One forward: a local port (0: any free one) to a port of the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub local: u16,
    pub remote: u16,
}

/// Errors in kubectl's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("invalid port format '{0}'")]
    Format(String),
    #[error("error parsing local port '{0}': invalid port")]
    Local(String),
    #[error("error parsing remote port '{0}': invalid port")]
    Remote(String),
    #[error("remote port must be > 0")]
    RemoteZero,
    #[error("Service '{service}' does not have a named port '{port}'")]
    ServicePortName { service: String, port: String },
    #[error("Service {service} does not have a service port {port}")]
    ServicePort { service: String, port: u16 },
    #[error("Pod '{pod}' does not have a named port '{port}'")]
    PodPortName { pod: String, port: String },
}

/// `LOCAL:REMOTE`, `:REMOTE` or `REMOTE` split as kubectl's `splitPort`: (local, remote),
/// where a bare `REMOTE` is also the local port.
fn split(spec: &str) -> Result<(&str, &str), PortError> {
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [one] => Ok((one, one)),
        [local, remote] => Ok((local, remote)),
        _ => Err(PortError::Format(spec.to_string())),
    }
}

fn number(s: &str) -> Option<u16> {
    s.parse::<u16>().ok()
}

/// A remote port that is a number (as Go's `Atoi` reads one) must be a valid port; `None`
/// when it is a name.
fn numeric(remote: &str) -> Result<Option<u16>, PortError> {
    match remote.parse::<i64>() {
        Ok(_) => number(remote)
            .map(Some)
            .ok_or_else(|| PortError::Remote(remote.to_string())),
        Err(_) if remote.is_empty() => Err(PortError::Remote(remote.to_string())),
        Err(_) => Ok(None),
    }
}

/// Finishes a spec whose remote port is a number: the local port parsed (empty: 0).
fn forward(local: &str, remote: u16) -> Result<Forward, PortError> {
    if remote == 0 {
        return Err(PortError::RemoteZero);
    }
    let local = match local {
        "" => 0,
        l => number(l).ok_or_else(|| PortError::Local(l.to_string()))?,
    };
    Ok(Forward { local, remote })
}

/// A container port of the pod by name (kubectl's `LookupContainerPortNumberByName`).
fn pod_port(pod: &Pod, name: &str) -> Result<u16, PortError> {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .ok_or_else(|| PortError::PodPortName {
            pod: pod.metadata.name.clone().unwrap_or_default(),
            port: name.to_string(),
        })
}

/// Specs for a pod: a named remote port is the container port of that name, and a bare
/// name's local port is that number too.
pub fn pod_forwards(specs: &[String], pod: &Pod) -> Result<Vec<Forward>, PortError> {
    specs
        .iter()
        .map(|spec| {
            let (local, remote) = split(spec)?;
            let port = match numeric(remote)? {
                Some(p) => p,
                None => pod_port(pod, remote)?,
            };
            let local = if local == remote {
                port.to_string()
            } else {
                local.to_string()
            };
            forward(&local, port)
        })
        .collect()
}

/// Specs for a Service, as kubectl's `translateServicePortToTargetPort`: the remote port
/// (a number or a Service port's name) is a Service port, forwarded to its targetPort on
/// the pod (a number, a container port's name, or the port itself when unset; a headless
/// Service's port as it is). A bare spec keeps the Service port as the local one.
pub fn service_forwards(
    specs: &[String],
    svc: &Service,
    pod: &Pod,
) -> Result<Vec<Forward>, PortError> {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let spec_of = svc.spec.clone().unwrap_or_default();
    let ports = spec_of.ports.unwrap_or_default();
    let headless = spec_of.cluster_ip.as_deref() == Some("None");
    specs
        .iter()
        .map(|spec| {
            let (local, remote) = split(spec)?;
            let (service_port, local) = match numeric(remote)? {
                Some(p) => (p, local.to_string()),
                None => {
                    let p = ports
                        .iter()
                        .find(|p| p.name.as_deref() == Some(remote))
                        .and_then(|p| u16::try_from(p.port).ok())
                        .ok_or_else(|| PortError::ServicePortName {
                            service: name.clone(),
                            port: remote.to_string(),
                        })?;
                    let local = if local == remote {
                        p.to_string()
                    } else {
                        local.to_string()
                    };
                    (p, local)
                }
            };
            let sp = ports
                .iter()
                .find(|p| p.port == i32::from(service_port))
                .ok_or_else(|| PortError::ServicePort {
                    service: name.clone(),
                    port: service_port,
                })?;
            let target = match (&sp.target_port, headless) {
                (_, true) | (None, _) | (Some(IntOrString::Int(0)), _) => service_port,
                (Some(IntOrString::Int(p)), _) => {
                    u16::try_from(*p).map_err(|_| PortError::Remote(p.to_string()))?
                }
                (Some(IntOrString::String(n)), _) => match number(n) {
                    Some(p) => p,
                    None => pod_port(pod, n)?,
                },
            };
            forward(&local, target)
        })
        .collect()
}

fn ready(p: &Pod) -> bool {
    p.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Of a selector's pods, the most active as kubectl's `GetFirstPod` sorts them: scheduled
/// before not, Running before Unknown before Pending, ready before not (then, ours: not being
/// deleted); then by name.
pub fn pick_pod(pods: &[Pod]) -> Option<&Pod> {
    let rank = |p: &Pod| {
        let assigned = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Running") => 2,
            Some("Unknown") => 1,
            _ => 0,
        };
        let deleting = p.metadata.deletion_timestamp.is_some();
        (assigned, phase, ready(p), !deleting)
    };
    pods.iter().min_by(|a, b| {
        rank(b)
            .cmp(&rank(a))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    })
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
