//! REST responses: JSON bodies, and every failure as a `metav1.Status` JSON object with the
//! HTTP code, reason, details and causes the registry's error carried (the same data the gRPC
//! API sends in its status details), so kubectl prints what it prints against Kubernetes.

use bytes::Bytes;
use corral_api::status::{ApiStatus, StatusReason};
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

pub type Body = tonic::body::Body;

pub const JSON: &str = "application/json";

/// A JSON response.
pub fn json(code: StatusCode, v: &Value) -> Response<Body> {
    bytes(
        code,
        JSON,
        serde_json::to_vec(v).expect("JSON values serialize").into(),
    )
}

/// A response of raw bytes with a content type.
pub fn bytes(code: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::new(http_body_util::Full::new(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static(JSON)),
    );
    r
}

/// `metav1.Status` as Kubernetes serializes a failure.
pub fn status_json(s: &ApiStatus) -> Value {
    let d = &s.details;
    let mut out = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": s.message,
        "reason": s.reason.as_str(),
        "code": s.code,
    });
    if !(d.name.is_empty() && d.kind.is_empty() && d.group.is_empty() && d.causes.is_empty()) {
        let mut details = serde_json::Map::new();
        for (k, v) in [
            ("name", &d.name),
            ("group", &d.group),
            ("kind", &d.kind),
            ("uid", &d.uid),
        ] {
            if !v.is_empty() {
                details.insert(k.into(), json!(v));
            }
        }
        if !d.causes.is_empty() {
            let causes: Vec<Value> = d
                .causes
                .iter()
                .map(|c| json!({"reason": c.kind.as_str(), "message": c.message, "field": c.field}))
                .collect();
            details.insert("causes".into(), json!(causes));
        }
        out["details"] = Value::Object(details);
    }
    out
}

/// The Status of a failed call of the gRPC service: the one its details carry, else one made
/// from the gRPC code (errors that did not come from the registry).
pub fn from_grpc(status: &tonic::Status) -> ApiStatus {
    if let Some(s) = ApiStatus::from_details(status.details()) {
        return s;
    }
    use tonic::Code;
    let reason = match status.code() {
        Code::Unauthenticated => StatusReason::Unauthorized,
        Code::PermissionDenied => StatusReason::Forbidden,
        Code::NotFound => StatusReason::NotFound,
        Code::AlreadyExists => StatusReason::AlreadyExists,
        Code::Aborted => StatusReason::Conflict,
        Code::InvalidArgument | Code::FailedPrecondition => StatusReason::BadRequest,
        Code::OutOfRange => StatusReason::Expired,
        Code::Unavailable => StatusReason::ServiceUnavailable,
        Code::DeadlineExceeded => StatusReason::Timeout,
        Code::ResourceExhausted => StatusReason::TooManyRequests,
        Code::Unimplemented => StatusReason::MethodNotAllowed,
        _ => StatusReason::InternalError,
    };
    ApiStatus::new(reason, status.message())
}

/// A failure as a response.
pub fn error(s: &ApiStatus) -> Response<Body> {
    let code = StatusCode::from_u16(s.code as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(code, &status_json(s))
}

/// A failure of the gRPC service as a response.
pub fn grpc_error(status: &tonic::Status) -> Response<Body> {
    error(&from_grpc(status))
}

/// A failure made here (a bad query, an unknown path).
pub fn fail(reason: StatusReason, message: impl Into<String>) -> Response<Body> {
    error(&ApiStatus::new(reason, message))
}

/// A failure on its way to becoming a response (boxed: a Status is large beside most results).
pub type Failure = Box<ApiStatus>;

/// A failure made here, as data.
pub fn failure(reason: StatusReason, message: impl Into<String>) -> Failure {
    Box::new(ApiStatus::new(reason, message))
}

/// A failure of the gRPC service, as data.
pub fn grpc_failure(status: &tonic::Status) -> Failure {
    Box::new(from_grpc(status))
}

/// `metav1.Status` of a success (deletecollection of nothing, and the like).
pub fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::status::{CauseType, StatusCause, StatusDetails};

    #[test]
    fn registry_errors_become_kubernetes_status_objects() {
        let not_found = ApiStatus::new(StatusReason::NotFound, "pods \"x\" not found")
            .with_details(StatusDetails {
                kind: "pods".into(),
                name: "x".into(),
                ..Default::default()
            });
        let grpc = tonic::Status::with_details(
            tonic::Code::NotFound,
            "pods \"x\" not found",
            not_found.to_details().into(),
        );
        assert_eq!(
            status_json(&from_grpc(&grpc)),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "pods \"x\" not found", "reason": "NotFound", "code": 404,
                "details": {"name": "x", "kind": "pods"}})
        );
        let invalid = ApiStatus::new(StatusReason::Invalid, "Pod \"x\" is invalid").with_details(
            StatusDetails {
                kind: "Pod".into(),
                name: "x".into(),
                causes: vec![StatusCause {
                    kind: CauseType::FieldValueRequired,
                    field: "spec.containers".into(),
                    message: "Required value".into(),
                }],
                ..Default::default()
            },
        );
        let v = status_json(&invalid);
        assert_eq!(v["code"], 422);
        assert_eq!(
            v["details"]["causes"],
            json!([{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}])
        );
    }

    #[test]
    fn transport_errors_without_details_map_by_grpc_code() {
        for (code, reason, http) in [
            (tonic::Code::Unauthenticated, "Unauthorized", 401),
            (tonic::Code::PermissionDenied, "Forbidden", 403),
            (tonic::Code::OutOfRange, "Expired", 410),
            (tonic::Code::Aborted, "Conflict", 409),
            (tonic::Code::Internal, "InternalError", 500),
        ] {
            let v = status_json(&from_grpc(&tonic::Status::new(code, "m")));
            assert_eq!(
                (v["reason"].as_str(), v["code"].as_i64()),
                (Some(reason), Some(http))
            );
        }
    }
}
