//! REST for metrics.k8s.io/v1beta1, as metrics-server serves it behind kube-apiserver's
//! aggregator: discovery (the group in `/apis`, `/apis/metrics.k8s.io[/v1beta1]`) and
//! `get`/`list` of `nodes` and (namespaced or across namespaces) `pods`, by name or label
//! selector, each turned into a call of the gRPC `Metrics` RPC.

use std::collections::BTreeMap;

use corral_api::status::StatusReason;
use corral_proto as pb;
use corral_proto::api_server::Api;
use http::{Response, StatusCode};
use serde_json::Value;

use super::path::RequestInfo;
use super::response::{self, Body};
use super::verbs::{warning_headers, with_warnings};
use crate::auth::UserInfo;
use crate::server::ApiService;
use crate::top::{self, Resource};

/// `/apis` with the metrics group added after the groups of the kind table.
pub fn with_group(mut list: Value) -> Value {
    if let Some(groups) = list["groups"].as_array_mut() {
        groups.push(top::group_entry());
    }
    list
}

/// `/apis/metrics.k8s.io`.
pub fn group(name: &str) -> Option<Value> {
    (name == top::GROUP).then(top::group_doc)
}

/// `/apis/metrics.k8s.io/v1beta1`.
pub fn resources(group: &str, version: &str) -> Option<Value> {
    (group == top::GROUP && version == top::VERSION).then(top::resource_list)
}

/// Whether a resource request is for this group.
pub fn handles(info: &RequestInfo) -> bool {
    info.group == top::GROUP
}

/// The RPC request a REST request stands for, or why it is not one this group serves.
pub fn request(
    info: &RequestInfo,
    query: &BTreeMap<String, String>,
) -> Result<pb::MetricsRequest, (StatusReason, String)> {
    let not_found = || {
        (
            StatusReason::NotFound,
            "the server could not find the requested resource".to_string(),
        )
    };
    let resource = Resource::parse(&info.resource).ok_or_else(not_found)?;
    if info.version != top::VERSION
        || !info.subresource.is_empty()
        || (resource == Resource::Nodes && !info.namespace.is_empty())
    {
        return Err(not_found());
    }
    if !matches!(info.verb, "get" | "list") {
        return Err((
            StatusReason::MethodNotAllowed,
            format!(
                "{} is not supported on {}.{}",
                info.verb,
                info.resource,
                top::GROUP
            ),
        ));
    }
    Ok(pb::MetricsRequest {
        resource: resource.plural().into(),
        namespace: info.namespace.clone(),
        name: info.name.clone(),
        label_selector: query.get("labelSelector").cloned().unwrap_or_default(),
    })
}

/// Answers one request of the group: a NodeMetrics/PodMetrics, or their list.
pub async fn serve(
    api: &ApiService,
    user: UserInfo,
    info: RequestInfo,
    query: &BTreeMap<String, String>,
) -> Response<Body> {
    let msg = match request(&info, query) {
        Ok(m) => m,
        Err((reason, message)) => return response::fail(reason, message),
    };
    let resource = Resource::parse(&msg.resource).expect("checked by request");
    let named = !msg.name.is_empty();
    let mut req = tonic::Request::new(msg);
    req.extensions_mut().insert(user);
    let answer = match api.metrics(req).await {
        Ok(a) => a,
        Err(status) => return response::grpc_error(&status),
    };
    let warnings = warning_headers(answer.metadata());
    let items: Vec<Value> = answer
        .into_inner()
        .items
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    let body = if named {
        match items.into_iter().next() {
            Some(one) => one,
            None => return response::fail(StatusReason::NotFound, "metrics not found"),
        }
    } else {
        top::list(resource, items)
    };
    with_warnings(response::json(StatusCode::OK, &body), warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case = (
        RequestInfo,
        BTreeMap<String, String>,
        Result<pb::MetricsRequest, StatusReason>,
    );

    fn info(verb: &'static str, ns: &str, resource: &str, name: &str) -> RequestInfo {
        RequestInfo {
            verb,
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            namespace: ns.into(),
            resource: resource.into(),
            name: name.into(),
            subresource: String::new(),
        }
    }

    #[test]
    fn paths_of_the_group_become_metrics_requests() {
        let q = |sel: &str| BTreeMap::from([("labelSelector".to_string(), sel.to_string())]);
        let none = BTreeMap::new();
        let ok = |r: &str, ns: &str, name: &str, sel: &str| pb::MetricsRequest {
            resource: r.into(),
            namespace: ns.into(),
            name: name.into(),
            label_selector: sel.into(),
        };
        let cases: Vec<Case> = vec![
            (
                info("list", "", "nodes", ""),
                none.clone(),
                Ok(ok("nodes", "", "", "")),
            ),
            (
                info("get", "", "nodes", "n1"),
                none.clone(),
                Ok(ok("nodes", "", "n1", "")),
            ),
            (
                info("list", "", "nodes", ""),
                q("role=db"),
                Ok(ok("nodes", "", "", "role=db")),
            ),
            (
                info("list", "default", "pods", ""),
                q("app=web"),
                Ok(ok("pods", "default", "", "app=web")),
            ),
            (
                info("list", "", "pods", ""),
                none.clone(),
                Ok(ok("pods", "", "", "")),
            ),
            (
                info("get", "kube-system", "pods", "dns"),
                none.clone(),
                Ok(ok("pods", "kube-system", "dns", "")),
            ),
            (
                info("list", "", "services", ""),
                none.clone(),
                Err(StatusReason::NotFound),
            ),
            (
                info("list", "default", "nodes", ""),
                none.clone(),
                Err(StatusReason::NotFound),
            ),
            (
                info("watch", "", "pods", ""),
                none.clone(),
                Err(StatusReason::MethodNotAllowed),
            ),
            (
                info("delete", "", "nodes", "n1"),
                none.clone(),
                Err(StatusReason::MethodNotAllowed),
            ),
        ];
        for (i, query, want) in cases {
            let got = request(&i, &query).map_err(|(r, _)| r);
            assert_eq!(got, want, "{i:?}");
        }
        let mut wrong_version = info("list", "", "pods", "");
        wrong_version.version = "v1".into();
        assert!(request(&wrong_version, &none).is_err());
    }

    #[test]
    fn apis_lists_the_metrics_group_once() {
        let list = with_group(super::super::discovery::group_list());
        let names: Vec<&str> = list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.iter().filter(|n| **n == "metrics.k8s.io").count(), 1);
        assert!(group("metrics.k8s.io").is_some());
        assert!(resources("metrics.k8s.io", "v1beta1").is_some());
        assert!(resources("metrics.k8s.io", "v1").is_none());
    }
}
