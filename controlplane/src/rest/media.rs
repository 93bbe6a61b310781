//! Media types, in one place: an object's body (create, update) as JSON whatever it came in
//! (`application/json`, `application/yaml`, Kubernetes' protobuf), and the `Accept` check:
//! responses are JSON, so a client that accepts only other types gets 406, as the apiserver
//! answers a type it cannot produce.

use bytes::Bytes;
use corral_api::kinds::ResourceInfo;
use corral_api::protobuf;
use corral_api::status::StatusReason;
use http::HeaderMap;
use tracing::debug;

use super::response::{self, Failure};

/// The media types an object's body may come in.
const BODY_TYPES: &str = "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// The media types of responses: JSON, and a watch's stream of JSON events.
const RESPONSE_TYPES: &str = "application/json, application/json;stream=watch";

/// A media type without its parameters, lower case.
fn essence(media: &str) -> String {
    media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The kind a request's body is: a subresource's own (`pods/eviction` takes a policy/v1
/// Eviction), else the resource's.
fn body_kind(kind: &ResourceInfo, subresource: &str) -> (String, &'static str) {
    match subresource {
        "eviction" => ("policy/v1".into(), "Eviction"),
        "binding" => ("v1".into(), "Binding"),
        "scale" => ("autoscaling/v1".into(), "Scale"),
        _ => (kind.api_version(), kind.kind),
    }
}

/// An object's body (create, update) of `kind` (or its `subresource`) as JSON, by its
/// content type.
pub fn object_json(
    content_type: Option<&str>,
    body: Bytes,
    kind: &ResourceInfo,
    subresource: &str,
) -> Result<Bytes, Failure> {
    let media = essence(content_type.unwrap_or("application/json"));
    match media.as_str() {
        "" | "application/json" | "*/*" => Ok(body),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let value: serde_json::Value = serde_yaml::from_slice(&body).map_err(|e| {
                response::failure(
                    StatusReason::BadRequest,
                    format!("the request body is not valid YAML: {e}"),
                )
            })?;
            Ok(serde_json::to_vec(&value)
                .expect("JSON values serialize")
                .into())
        }
        protobuf::MEDIA_TYPE => {
            let (api_version, body_kind) = body_kind(kind, subresource);
            match protobuf::to_json_as(&body, &api_version, body_kind) {
                Ok(value) => Ok(serde_json::to_vec(&value)
                    .expect("JSON values serialize")
                    .into()),
                Err(e) => {
                    debug!(kind = body_kind, error = %e, "protobuf body refused");
                    Err(response::failure(StatusReason::BadRequest, e.to_string()))
                }
            }
        }
        other => Err(response::failure(
            StatusReason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: {BODY_TYPES} (got {other:?})"
            ),
        )),
    }
}

/// Whether a response (JSON) is acceptable to the client: no `Accept`, or one that lists JSON
/// or a wildcard. kubectl's typed clients list protobuf first and JSON second, and decode by
/// the response's content type, so JSON serves them.
pub fn check_accept(headers: &HeaderMap) -> Result<(), Failure> {
    let mut listed = false;
    for value in headers.get_all(http::header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for media in value.split(',').map(essence).filter(|m| !m.is_empty()) {
            listed = true;
            if matches!(media.as_str(), "application/json" | "*/*" | "application/*") {
                return Ok(());
            }
        }
    }
    if !listed {
        return Ok(());
    }
    Err(response::failure(
        StatusReason::NotAcceptable,
        format!("only the following media types are accepted: {RESPONSE_TYPES}"),
    ))
}

#[cfg(test)]
mod tests {
    use corral_api::kinds;

    use super::*;

    #[test]
    fn object_bodies_are_json_whatever_they_came_as() {
        let json = Bytes::from_static(br#"{"a":1}"#);
        let cm = &kinds::CONFIGMAPS;
        assert_eq!(object_json(None, json.clone(), cm, "").unwrap(), json);
        assert_eq!(
            object_json(
                Some("application/json; charset=utf-8"),
                json.clone(),
                cm,
                ""
            )
            .unwrap(),
            json
        );
        let yaml = Bytes::from_static(b"a: 1\n");
        assert_eq!(
            object_json(Some("application/yaml"), yaml, cm, "").unwrap(),
            json
        );
        assert_eq!(
            object_json(
                Some("application/yaml"),
                Bytes::from_static(b"a: ["),
                cm,
                ""
            )
            .unwrap_err()
            .code,
            400
        );
        let other = object_json(Some("text/plain"), json, cm, "").unwrap_err();
        assert_eq!(
            (other.code, other.reason.as_str()),
            (415, "UnsupportedMediaType")
        );
        assert!(other.message.contains(BODY_TYPES), "{}", other.message);
    }

    #[test]
    fn protobuf_bodies_become_json_and_bad_ones_are_400_naming_the_problem() {
        // `kubectl create configmap x --from-literal=a=b`, as kubectl 1.33 sends it.
        let body = Bytes::from_static(
            b"k8s\0\n\x0f\n\x02v1\x12\tConfigMap\x12\x1b\n\x11\n\x01x\x12\0\x1a\0\"\0*\x002\08\0B\0\x12\x06\n\x01a\x12\x01b\x1a\0\"\0",
        );
        let ct = Some("application/vnd.kubernetes.protobuf");
        let got: serde_json::Value =
            serde_json::from_slice(&object_json(ct, body.clone(), &kinds::CONFIGMAPS, "").unwrap())
                .unwrap();
        assert_eq!(
            got,
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "x", "creationTimestamp": null}, "data": {"a": "b"}})
        );
        let wrong = object_json(ct, body, &kinds::SECRETS, "").unwrap_err();
        assert_eq!((wrong.code, wrong.reason.as_str()), (400, "BadRequest"));
        assert!(
            wrong.message.contains("ConfigMap (v1)") && wrong.message.contains("Secret (v1)"),
            "{}",
            wrong.message
        );
        let garbage = object_json(ct, Bytes::from_static(b"k8s"), &kinds::SECRETS, "").unwrap_err();
        assert_eq!(garbage.code, 400);
    }

    #[test]
    fn subresource_bodies_are_read_as_the_subresource_kind() {
        // kubectl drain's eviction: policy/v1 Eviction{metadata{name: web},
        // deleteOptions{gracePeriodSeconds: 0}}.
        let body = Bytes::from_static(
            b"k8s\0\n\x15\n\tpolicy/v1\x12\x08Eviction\x12\x0b\n\x05\n\x03web\x12\x02\x08\x00",
        );
        let ct = Some("application/vnd.kubernetes.protobuf");
        let got: serde_json::Value = serde_json::from_slice(
            &object_json(ct, body.clone(), &kinds::PODS, "eviction").unwrap(),
        )
        .unwrap();
        assert_eq!(
            got,
            serde_json::json!({"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": "web"}, "deleteOptions": {"gracePeriodSeconds": 0}})
        );
        let as_pod = object_json(ct, body, &kinds::PODS, "").unwrap_err();
        assert!(
            as_pod.message.contains("Eviction (policy/v1)") && as_pod.message.contains("Pod (v1)"),
            "{}",
            as_pod.message
        );
    }

    #[test]
    fn only_clients_that_accept_no_json_are_refused() {
        for (accept, ok) in [
            (None, true),
            (
                Some("application/vnd.kubernetes.protobuf,application/json"),
                true,
            ),
            (
                Some("application/json;as=Table;v=v1;g=meta.k8s.io, application/json"),
                true,
            ),
            (Some("*/*"), true),
            (Some(""), true),
            (Some("application/vnd.kubernetes.protobuf"), false),
            (
                Some("application/vnd.kubernetes.protobuf;stream=watch"),
                false,
            ),
        ] {
            let mut h = HeaderMap::new();
            if let Some(a) = accept {
                h.insert(http::header::ACCEPT, a.parse().unwrap());
            }
            match check_accept(&h) {
                Ok(()) => assert!(ok, "{accept:?} was accepted"),
                Err(f) => {
                    assert!(!ok, "{accept:?} was refused");
                    assert_eq!((f.code, f.reason.as_str()), (406, "NotAcceptable"));
                    assert!(f.message.contains("application/json"), "{}", f.message);
                }
            }
        }
    }
}
