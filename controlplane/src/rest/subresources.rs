//! Subresources: `status` (get, update, patch), `scale` (autoscaling/v1 Scale: get, update,
//! patch), `pods/log` (through the agent tunnel), `pods/binding`, `pods/eviction` and
//! `namespaces/finalize`, each a call of the gRPC service.

use std::convert::Infallible;

use corral_api::status::StatusReason;
use corral_proto as pb;
use corral_proto::api_server::Api;
use futures::StreamExt;
use http::{Response, StatusCode};
use http_body::Frame;
use serde_json::{json, Value};

use super::response::{self, Body, Failure};
use super::verbs::{self, Answer};
use super::{patch, Call};

pub(super) async fn serve(call: Call<'_>) -> Response<Body> {
    let kind = call.kind;
    let result = match (call.info.subresource.as_str(), call.info.verb) {
        ("status", "get") if kind.has_status => verbs::fetch(&call)
            .await
            .map(|o| verbs::object(&call, StatusCode::OK, &o)),
        ("status", "update") if kind.has_status => {
            verbs::update(&call, pb::Subresource::Status).await
        }
        ("status", "patch") if kind.has_status => {
            patch::patch_object(&call, pb::Subresource::Status).await
        }
        ("finalize", "update") if kind.plural == "namespaces" => {
            verbs::update(&call, pb::Subresource::Finalize).await
        }
        ("scale", "get") if kind.has_scale => get_scale(&call).await,
        ("scale", "update") if kind.has_scale => put_scale(&call).await,
        ("scale", "patch") if kind.has_scale => patch_scale(&call).await,
        ("log", "get") if kind.plural == "pods" => return logs(&call).await,
        ("binding", "create") if kind.plural == "pods" => bind(&call).await,
        ("eviction", "create") if kind.plural == "pods" => evict(&call).await,
        _ => Err(response::failure(
            StatusReason::NotFound,
            "the server could not find the requested resource",
        )),
    };
    result.unwrap_or_else(|f| response::error(&f))
}

/// The autoscaling/v1 Scale of a workload object.
pub fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut m = serde_json::Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": m,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

async fn get_scale(call: &Call<'_>) -> Answer {
    let obj = verbs::fetch(call).await?;
    Ok(response::json(StatusCode::OK, &scale_of(&obj)))
}

fn replicas_of(scale: &Value) -> Result<i32, Failure> {
    // Absent is 0: Scale's replicas is `omitempty`, so a Scale to 0 arrives without it.
    scale
        .pointer("/spec/replicas")
        .map_or(Some(0), Value::as_i64)
        .and_then(|r| i32::try_from(r).ok())
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            response::failure(
                StatusReason::Invalid,
                "spec.replicas: Invalid value: must be greater than or equal to 0",
            )
        })
}

async fn scale_to(call: &Call<'_>, replicas: i32) -> Answer {
    call.api
        .scale(call.req(pb::ScaleRequest {
            r#ref: Some(verbs::object_ref(call)),
            replicas,
        }))
        .await
        .map_err(|s| response::grpc_failure(&s))?;
    get_scale(call).await
}

async fn put_scale(call: &Call<'_>) -> Answer {
    let scale: Value = serde_json::from_slice(&call.body).map_err(|e| {
        response::failure(
            StatusReason::BadRequest,
            format!("Scale is not valid JSON: {e}"),
        )
    })?;
    if let Some(rv) = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        let current = verbs::fetch(call).await?;
        if current
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            != Some(rv)
        {
            return Err(response::failure(
                StatusReason::Conflict,
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                    qualified_plural(call.kind),
                    call.info.name
                ),
            ));
        }
    }
    scale_to(call, replicas_of(&scale)?).await
}

fn qualified_plural(k: &corral_api::kinds::ResourceInfo) -> String {
    if k.group.is_empty() {
        k.plural.to_string()
    } else {
        format!("{}.{}", k.plural, k.group)
    }
}

async fn patch_scale(call: &Call<'_>) -> Answer {
    let obj = verbs::fetch(call).await?;
    let patched = patch::apply(call, &scale_of(&obj))?;
    scale_to(call, replicas_of(&patched)?).await
}

fn flag(call: &Call<'_>, key: &str) -> bool {
    call.q(key).is_some_and(|v| v == "true" || v == "1")
}

async fn logs(call: &Call<'_>) -> Response<Body> {
    let tail = call
        .q("tailLines")
        .and_then(|t| t.parse().ok())
        .unwrap_or(-1);
    let req = pb::LogsRequest {
        namespace: call.info.namespace.clone(),
        pod: call.info.name.clone(),
        container: call.q("container").unwrap_or("").to_string(),
        follow: flag(call, "follow"),
        previous: flag(call, "previous"),
        tail_lines: tail,
        timestamps: flag(call, "timestamps"),
        since_seconds: call
            .q("sinceSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0),
        since_time: call.q("sinceTime").unwrap_or("").to_string(),
        limit_bytes: call
            .q("limitBytes")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0),
    };
    match call.api.logs(call.req(req)).await {
        Err(s) => response::grpc_error(&s),
        Ok(stream) => {
            let chunks = stream
                .into_inner()
                .take_while(|c| futures::future::ready(c.is_ok()))
                .filter_map(|c| futures::future::ready(c.ok()))
                .map(|c| Ok::<_, Infallible>(Frame::data(bytes::Bytes::from(c.data))));
            let mut r = Response::new(Body::new(http_body_util::StreamBody::new(chunks)));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            );
            r
        }
    }
}

async fn bind(call: &Call<'_>) -> Answer {
    let binding: Value = serde_json::from_slice(&call.body).map_err(|e| {
        response::failure(
            StatusReason::BadRequest,
            format!("Binding is not valid JSON: {e}"),
        )
    })?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    call.api
        .bind(
            call.req(pb::BindRequest {
                namespace: call.info.namespace.clone(),
                name: call.info.name.clone(),
                node_name: node.to_string(),
                uid: binding
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            }),
        )
        .await
        .map_err(|s| response::grpc_failure(&s))?;
    Ok(response::json(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// An eviction is a delete of the pod with the eviction's options (no disruption budgets are
/// served, so none refuses it).
async fn evict(call: &Call<'_>) -> Answer {
    let eviction: Value = serde_json::from_slice(&call.body).map_err(|e| {
        response::failure(
            StatusReason::BadRequest,
            format!("Eviction is not valid JSON: {e}"),
        )
    })?;
    let opts = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
    let body = serde_json::to_vec(&opts).expect("JSON values serialize");
    let req = verbs::delete_request(&body, &call.query, verbs::object_ref(call))
        .map_err(|e| response::failure(StatusReason::BadRequest, e.to_string()))?;
    call.api
        .delete(call.req(req))
        .await
        .map_err(|s| response::grpc_failure(&s))?;
    Ok(response::json(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_reads_replicas_and_selector_from_the_workload() {
        let rs = json!({"kind": "ReplicaSet", "metadata": {"name": "web", "namespace": "d", "resourceVersion": "4", "labels": {"x": "y"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "f"}}},
            "status": {"replicas": 2}});
        assert_eq!(
            scale_of(&rs),
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": "web", "namespace": "d", "resourceVersion": "4"},
                "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web,tier=f"}})
        );
        assert!(replicas_of(&json!({"spec": {"replicas": -1}})).is_err());
        assert_eq!(replicas_of(&json!({"spec": {"replicas": 5}})).ok(), Some(5));
        assert_eq!(replicas_of(&json!({"spec": {}})).ok(), Some(0));
    }
}
