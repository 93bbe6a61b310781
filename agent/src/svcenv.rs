//! Service environment variables given to a container when it starts, as the kubelet does:
//! `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORT NAME>]` and the docker-link style
//! `<NAME>_PORT*` for every Service of the pod's namespace (and the `kubernetes` Service of
//! `default`) that has a cluster IP.

use std::collections::BTreeMap;

use corral_api::client::ListParams;
use k8s_openapi::api::core::v1::{Pod, Service};

fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

fn cluster_ip(s: &Service) -> Option<&str> {
    s.spec
        .as_ref()?
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
}

/// Which services a pod in `namespace` sees: the kubelet's `getServiceEnvVarMap`. The
/// `kubernetes` service of `default` is always included; the namespace's own only with
/// `enableServiceLinks` (default true). Sorted by name; headless services are left out.
pub fn visible<'a>(
    services: &'a [Service],
    namespace: &str,
    enable_service_links: bool,
) -> Vec<&'a Service> {
    let mut map: BTreeMap<&str, &Service> = BTreeMap::new();
    for s in services {
        if cluster_ip(s).is_none() {
            continue;
        }
        let name = s.metadata.name.as_deref().unwrap_or("");
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        if ns == "default" && name == "kubernetes" {
            map.entry(name).or_insert(s);
        } else if ns == namespace && enable_service_links {
            map.insert(name, s);
        }
    }
    map.into_values().collect()
}

/// The variables for `services`, in the kubelet's order (`envvars.FromServices`).
pub fn from_services(services: &[&Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in services {
        let Some(ip) = cluster_ip(s) else { continue };
        let ports = s
            .spec
            .as_ref()
            .and_then(|sp| sp.ports.clone())
            .unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = env_name(s.metadata.name.as_deref().unwrap_or(""));
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(n)),
                    p.port.to_string(),
                ));
            }
        }
        let host = |port: i32| {
            if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        };
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let lower = proto.to_lowercase();
            let url = format!("{lower}://{}", host(p.port));
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((pp.clone(), url));
            out.push((format!("{pp}_PROTO"), lower.clone()));
            out.push((format!("{pp}_PORT"), p.port.to_string()));
            out.push((format!("{pp}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// The variables for a container of `pod` starting now, as `NAME=value` entries placed after
/// the image's environment (the pod's own `env` is applied on top, so it wins).
/// Gives up after 5 s so that a hung API server does not hold a container start.
pub async fn for_pod(
    client: &corral_api::Client,
    pod: &Pod,
) -> Result<Vec<String>, ServiceEnvError> {
    tokio::time::timeout(LIST_TIMEOUT, fetch(client, pod))
        .await
        .map_err(|_| ServiceEnvError::TimedOut)?
}

const LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a container's service variables could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ServiceEnvError {
    #[error("listing services: timed out after {}s", LIST_TIMEOUT.as_secs())]
    TimedOut,
    #[error("listing services of namespace {namespace:?}: {source}")]
    List {
        namespace: String,
        #[source]
        source: corral_api::client::Error,
    },
}

async fn fetch(client: &corral_api::Client, pod: &Pod) -> Result<Vec<String>, ServiceEnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let params = ListParams::default();
    let mut services: Vec<Service> = Vec::new();
    if links {
        let (items, _) = client
            .list::<Service>(&namespace, &params)
            .await
            .map_err(|source| ServiceEnvError::List {
                namespace: namespace.clone(),
                source,
            })?;
        services.extend(items);
    }
    if namespace != "default" || !links {
        if let Ok(Some(s)) = client.get_opt::<Service>("default", "kubernetes").await {
            services.push(s);
        }
    }
    let vis = visible(&services, &namespace, links);
    Ok(from_services(&vis)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect())
}

#[cfg(test)]
mod tests;
