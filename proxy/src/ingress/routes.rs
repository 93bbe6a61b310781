//! The Ingress route table: host and path rules of every `networking.k8s.io/v1` Ingress merged
//! (the oldest Ingress wins a duplicate), each backend resolved to the service's ready
//! endpoints. Matching follows the Ingress spec: exact host, then a single-label wildcard, then
//! rules without host; within them the longest path wins, Exact before Prefix; Prefix matches
//! whole path elements. Building and matching are pure.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use crate::model::ready_endpoints;

/// Where matched requests go.
#[derive(Debug)]
pub struct Backend {
    /// `ns/service:port`, for logs and errors.
    pub name: String,
    pub endpoints: Vec<SocketAddrV4>,
    next: AtomicUsize,
}

impl Backend {
    pub fn new(name: String, endpoints: Vec<SocketAddrV4>) -> Backend {
        // Every table (and every node's proxy) starts the rotation at a random endpoint, so
        // that rebuilt tables and several nodes' Ingresses do not all pile onto the first.
        let start = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as usize;
        Backend {
            name,
            endpoints,
            next: AtomicUsize::new(start),
        }
    }

    /// Where this request's round-robin turn starts: an index into `endpoints` (taken modulo
    /// its length); a retry moves on to the following ones. `None` when there is no endpoint.
    pub fn turn(&self) -> Option<usize> {
        if self.endpoints.is_empty() {
            return None;
        }
        Some(self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len())
    }

    /// The next endpoint, round robin; `None` when the service has no ready endpoint.
    pub fn pick(&self) -> Option<SocketAddrV4> {
        self.turn().map(|i| self.endpoints[i])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Exact,
    Prefix,
}

#[derive(Debug)]
struct PathRule {
    path: String,
    kind: Kind,
    backend: Arc<Backend>,
}

impl PathRule {
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            Kind::Exact => path == self.path,
            Kind::Prefix => {
                self.path == "/"
                    || path == self.path
                    || path
                        .strip_prefix(self.path.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    exact: BTreeMap<String, Vec<PathRule>>,
    /// `*.example.com` stored as `example.com`.
    wildcard: BTreeMap<String, Vec<PathRule>>,
    any_host: Vec<PathRule>,
    default: Option<Arc<Backend>>,
    /// Rules that were skipped, with the reason.
    pub warnings: Vec<String>,
}

/// Host header without port, lower case (borrowed unless it had upper-case letters).
pub fn host_of(header: &str) -> Cow<'_, str> {
    let h = header.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        h.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(h, |(host, _)| host)
    };
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

impl RouteTable {
    /// The host of the rule set a request for `host` goes to: the host itself when a rule
    /// names it, `*.rest` for a wildcard rule, "" otherwise. Bounded by the rules, so it can
    /// label metrics.
    pub fn rule_host(&self, host: &str) -> String {
        let host = host_of(host);
        if self.exact.contains_key(host.as_ref()) {
            return host.into_owned();
        }
        match host.split_once('.') {
            Some((first, rest)) if !first.is_empty() && self.wildcard.contains_key(rest) => {
                format!("*.{rest}")
            }
            _ => String::new(),
        }
    }

    /// The backend for a request, `None` for a 404.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Backend>> {
        let host = host_of(host);
        let rules = self.exact.get(host.as_ref()).or_else(|| {
            host.split_once('.')
                .filter(|(first, _)| !first.is_empty())
                .and_then(|(_, rest)| self.wildcard.get(rest))
        });
        let rules = rules.map_or(&self.any_host[..], |r| &r[..]);
        rules
            .iter()
            .find(|r| r.matches(path))
            .map(|r| &r.backend)
            .or(self.default.as_ref())
    }

    pub fn build(
        ingresses: &[Arc<Ingress>],
        services: &BTreeMap<(String, String), Arc<Service>>,
        endpoints: &BTreeMap<(String, String), Arc<Endpoints>>,
    ) -> RouteTable {
        let mut table = RouteTable::default();
        let mut ordered: Vec<&Arc<Ingress>> = ingresses.iter().collect();
        ordered.sort_by_key(|i| {
            (
                i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                i.metadata.namespace.clone(),
                i.metadata.name.clone(),
            )
        });
        let mut backends: BTreeMap<String, Arc<Backend>> = BTreeMap::new();
        for ing in ordered {
            let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
            let ing_name = format!(
                "ingress \"{ns}/{}\"",
                ing.metadata.name.as_deref().unwrap_or("")
            );
            let Some(spec) = ing.spec.as_ref() else {
                continue;
            };
            let mut resolve = |b: &IngressBackend, field: &str, warnings: &mut Vec<String>| {
                let Some(svc) = b.service.as_ref() else {
                    warnings.push(format!(
                        "{ing_name}: {field}.service: only service backends are supported"
                    ));
                    return None;
                };
                let port = svc.port.as_ref();
                let port_key = match (
                    port.and_then(|p| p.number),
                    port.and_then(|p| p.name.as_deref()),
                ) {
                    (Some(n), _) => n.to_string(),
                    (None, Some(n)) => n.to_string(),
                    (None, None) => {
                        warnings.push(format!(
                            "{ing_name}: {field}.service.port: a number or a name is required"
                        ));
                        return None;
                    }
                };
                let name = format!("{ns}/{}:{port_key}", svc.name);
                let backend = backends.entry(name.clone()).or_insert_with(|| {
                    let key = (ns.to_string(), svc.name.clone());
                    let sp = services.get(&key).and_then(|s| {
                        s.spec
                            .as_ref()?
                            .ports
                            .as_ref()?
                            .iter()
                            .find(|p| {
                                p.port.to_string() == port_key
                                    || p.name.as_deref() == Some(port_key.as_str())
                            })
                            .cloned()
                    });
                    let eps = sp
                        .map(|sp| ready_endpoints(&sp, endpoints.get(&key).map(|e| e.as_ref())))
                        .unwrap_or_default();
                    Arc::new(Backend::new(name, eps))
                });
                Some(backend.clone())
            };
            let mut warnings = std::mem::take(&mut table.warnings);
            if let Some(b) = spec.default_backend.as_ref() {
                if let Some(b) = resolve(b, "spec.defaultBackend", &mut warnings) {
                    table.default.get_or_insert(b);
                }
            }
            for (ri, rule) in spec.rules.iter().flatten().enumerate() {
                let host = rule.host.as_deref().unwrap_or("").to_ascii_lowercase();
                let list = if host.is_empty() {
                    &mut table.any_host
                } else if let Some(domain) = host.strip_prefix("*.") {
                    table.wildcard.entry(domain.to_string()).or_default()
                } else {
                    table.exact.entry(host).or_default()
                };
                let Some(http) = rule.http.as_ref() else {
                    continue;
                };
                for (pi, p) in http.paths.iter().enumerate() {
                    let field = format!("spec.rules[{ri}].http.paths[{pi}]");
                    let raw = p.path.as_deref().unwrap_or("/");
                    if !raw.starts_with('/') {
                        warnings.push(format!(
                            "{ing_name}: {field}.path: must be an absolute path"
                        ));
                        continue;
                    }
                    let kind = match p.path_type.as_str() {
                        "Exact" => Kind::Exact,
                        // ImplementationSpecific behaves as Prefix here.
                        "Prefix" | "ImplementationSpecific" | "" => Kind::Prefix,
                        other => {
                            warnings.push(format!(
                                "{ing_name}: {field}.pathType: unsupported value {other:?}"
                            ));
                            continue;
                        }
                    };
                    let path = if kind == Kind::Prefix && raw.len() > 1 {
                        raw.trim_end_matches('/').to_string()
                    } else {
                        raw.to_string()
                    };
                    let path = if path.is_empty() {
                        "/".to_string()
                    } else {
                        path
                    };
                    if list.iter().any(|r| r.path == path && r.kind == kind) {
                        continue; // an older Ingress owns this path
                    }
                    let Some(backend) =
                        resolve(&p.backend, &format!("{field}.backend"), &mut warnings)
                    else {
                        continue;
                    };
                    list.push(PathRule {
                        path,
                        kind,
                        backend,
                    });
                }
            }
            table.warnings = warnings;
        }
        let order = |rules: &mut Vec<PathRule>| {
            rules.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.kind.cmp(&b.kind)));
        };
        table.exact.values_mut().for_each(order);
        table.wildcard.values_mut().for_each(order);
        order(&mut table.any_host);
        table
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
