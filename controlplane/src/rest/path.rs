//! A REST request's target, parsed from its method, path and query as kube-apiserver's
//! RequestInfo does: discovery and other non-resource paths, or a resource request with its
//! verb, group, version, namespace, resource, name and subresource. Pure, with table tests.

use std::collections::BTreeMap;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/version`
    Version,
    /// `/api`: the legacy group's versions.
    LegacyVersions,
    /// `/apis`: every named group.
    Groups,
    /// `/apis/<group>`: one group.
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`: the group-version's resources.
    Resources { group: String, version: String },
    /// `/openapi/v2` (protobuf).
    OpenApiV2,
    /// `/openapi/v3`: the index.
    OpenApiIndex,
    /// `/openapi/v3/<gv>`: one group-version's document (`api/v1`, `apis/apps/v1`).
    OpenApi(String),
    /// `/healthz`, `/livez`, `/readyz` (and their sub-checks).
    Health,
    /// `/metrics`: Prometheus metrics.
    Metrics,
    /// A resource request.
    Resource(RequestInfo),
    /// Nothing Corral serves.
    NotFound,
}

/// A resource request in Kubernetes' authorization terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'static str,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub name: String,
    pub subresource: String,
}

/// Subresources of a namespace itself: `/api/v1/namespaces/x/status` is namespace x's status,
/// not resource "status" in namespace x.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parses a request's method, path and query (decoded, see [`query`]).
pub fn parse(method: &http::Method, path: &str, query: &BTreeMap<String, String>) -> Target {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let parts: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    let (group, version, rest) = match parts.as_slice() {
        ["version"] => return Target::Version,
        ["healthz" | "livez" | "readyz", ..] => return Target::Health,
        ["metrics"] => return Target::Metrics,
        ["openapi", "v2"] => return Target::OpenApiV2,
        ["openapi", "v3"] => return Target::OpenApiIndex,
        ["openapi", "v3", gv @ ..] => return Target::OpenApi(gv.join("/")),
        ["api"] => return Target::LegacyVersions,
        ["apis"] => return Target::Groups,
        ["apis", group] => return Target::Group(group.to_string()),
        ["api", version] => {
            return Target::Resources {
                group: String::new(),
                version: version.to_string(),
            }
        }
        ["apis", group, version] => {
            return Target::Resources {
                group: group.to_string(),
                version: version.to_string(),
            }
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Target::NotFound,
    };
    let mut info = RequestInfo {
        group: group.to_string(),
        version: version.to_string(),
        ..Default::default()
    };
    let mut rest: &[&str] = rest;
    if let ["namespaces", ns, tail @ ..] = rest {
        match tail {
            [] => {}
            [sub] if NAMESPACE_SUBRESOURCES.contains(sub) => {}
            _ => {
                info.namespace = ns.to_string();
                rest = tail;
            }
        }
    }
    match rest {
        [resource] => info.resource = resource.to_string(),
        [resource, name] => {
            info.resource = resource.to_string();
            info.name = name.to_string();
        }
        [resource, name, sub] => {
            info.resource = resource.to_string();
            info.name = name.to_string();
            info.subresource = sub.to_string();
        }
        _ => return Target::NotFound,
    }
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let named = !info.name.is_empty();
    info.verb = match *method {
        http::Method::GET | http::Method::HEAD if watch => "watch",
        http::Method::GET | http::Method::HEAD if named => "get",
        http::Method::GET | http::Method::HEAD => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if named => "delete",
        http::Method::DELETE => "deletecollection",
        _ => return Target::NotFound,
    };
    Target::Resource(info)
}

/// The subresources served, as static names (for authorization attributes); "" for any other.
pub fn static_subresource(sub: &str) -> &'static str {
    const SERVED: &[&str] = &["status", "scale", "log", "binding", "eviction", "finalize"];
    SERVED.iter().find(|s| **s == sub).copied().unwrap_or("")
}

/// Decodes a query string (`application/x-www-form-urlencoded`: `+` is a space, `%XX` a
/// byte); the last of repeated keys wins.
pub fn query(raw: Option<&str>) -> BTreeMap<String, String> {
    query_pairs(raw).collect()
}

/// Every decoded `key=value` pair of a query in order, repeated keys included (exec's
/// `command=`).
pub fn query_pairs(raw: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    raw.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn info(
        verb: &'static str,
        group: &str,
        namespace: &str,
        resource: &str,
        name: &str,
        sub: &str,
    ) -> Target {
        Target::Resource(RequestInfo {
            verb,
            group: group.into(),
            version: "v1".into(),
            namespace: namespace.into(),
            resource: resource.into(),
            name: name.into(),
            subresource: sub.into(),
        })
    }

    #[test]
    fn paths_parse_as_kube_apiserver_reads_them() {
        let cases: Vec<(Method, &str, &str, Target)> = vec![
            (Method::GET, "/version", "", Target::Version),
            (Method::GET, "/metrics", "", Target::Metrics),
            (Method::GET, "/api", "", Target::LegacyVersions),
            (Method::GET, "/apis", "", Target::Groups),
            (Method::GET, "/apis/apps", "", Target::Group("apps".into())),
            (
                Method::GET,
                "/api/v1",
                "",
                Target::Resources {
                    group: "".into(),
                    version: "v1".into(),
                },
            ),
            (
                Method::GET,
                "/apis/apps/v1/",
                "",
                Target::Resources {
                    group: "apps".into(),
                    version: "v1".into(),
                },
            ),
            (Method::GET, "/openapi/v3", "", Target::OpenApiIndex),
            (
                Method::GET,
                "/openapi/v3/apis/apps/v1",
                "hash=1",
                Target::OpenApi("apis/apps/v1".into()),
            ),
            (Method::GET, "/openapi/v2", "", Target::OpenApiV2),
            (Method::GET, "/swagger.json", "", Target::NotFound),
            (Method::GET, "/readyz/ping", "", Target::Health),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                "limit=500",
                info("list", "", "default", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/pods",
                "watch=true",
                info("watch", "", "", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/web",
                "",
                info("get", "", "default", "pods", "web", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/web/log",
                "follow=true",
                info("get", "", "default", "pods", "web", "log"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/default/pods/web/eviction",
                "",
                info("create", "", "default", "pods", "web", "eviction"),
            ),
            (
                Method::PUT,
                "/apis/apps/v1/namespaces/x/replicasets/rs/scale",
                "",
                info("update", "apps", "x", "replicasets", "rs", "scale"),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/x/deployments/d",
                "",
                info("patch", "apps", "x", "deployments", "d", ""),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/x/pods",
                "",
                info("deletecollection", "", "x", "pods", "", ""),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/x",
                "",
                info("delete", "", "", "namespaces", "x", ""),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/x/finalize",
                "",
                info("update", "", "", "namespaces", "x", "finalize"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                "",
                info("list", "", "", "namespaces", "", ""),
            ),
            (
                Method::POST,
                "/api/v1/nodes",
                "",
                info("create", "", "", "nodes", "", ""),
            ),
            (Method::GET, "/api/v1/a/b/c/d", "", Target::NotFound),
            (Method::OPTIONS, "/api/v1/pods", "", Target::NotFound),
        ];
        for (method, path, q, want) in cases {
            assert_eq!(
                parse(&method, path, &query(Some(q))),
                want,
                "{method} {path}?{q}"
            );
        }
    }

    #[test]
    fn only_served_subresources_name_authorization_attributes() {
        for (sub, want) in [
            ("status", "status"),
            ("eviction", "eviction"),
            ("", ""),
            ("exec", ""),
            ("proxy", ""),
        ] {
            assert_eq!(static_subresource(sub), want, "{sub}");
        }
    }

    #[test]
    fn queries_decode_form_encoding() {
        let q = query(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%29&fieldSelector=metadata.name%3Dx&watch=1&x",
        ));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["fieldSelector"], "metadata.name=x");
        assert_eq!(q["watch"], "1");
        assert_eq!(q["x"], "");
        assert_eq!(query(Some("a=%zz%4"))["a"], "%zz%4");
        assert!(query(None).is_empty());
    }
}
