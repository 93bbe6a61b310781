//! Request bodies: read within the size limit, and an object's body as JSON whatever media
//! type it came in (`application/json`, `application/yaml`); protobuf and anything else is
//! 415 with the media types accepted, as the apiserver answers.

use bytes::Bytes;
use corral_api::status::StatusReason;
use http_body_util::BodyExt;

use super::response::{self, Body, Failure};

/// Reads the whole body, refusing one larger than a request may be.
pub async fn read(body: Body) -> Result<Bytes, Failure> {
    let max = corral_api::rules::limits::MAX_REQUEST_BODY;
    match http_body_util::Limited::new(body, max + 1).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(response::failure(
            StatusReason::RequestEntityTooLarge,
            format!("the request body could not be read: {e}"),
        )),
    }
}

/// An object's body (create, update) as JSON, by its content type.
pub fn object_json(content_type: Option<&str>, body: Bytes) -> Result<Bytes, Failure> {
    let media = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
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
        other => Err(response::failure(
            StatusReason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {other:?})"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_bodies_are_json_whatever_they_came_as() {
        let json = Bytes::from_static(br#"{"a":1}"#);
        assert_eq!(object_json(None, json.clone()).unwrap(), json);
        assert_eq!(
            object_json(Some("application/json; charset=utf-8"), json.clone()).unwrap(),
            json
        );
        let yaml = Bytes::from_static(b"a: 1\n");
        assert_eq!(object_json(Some("application/yaml"), yaml).unwrap(), json);
        let proto = object_json(
            Some("application/vnd.kubernetes.protobuf"),
            Bytes::from_static(b"k8s\0"),
        )
        .unwrap_err();
        assert_eq!(
            (proto.code, proto.reason.as_str()),
            (415, "UnsupportedMediaType")
        );
        assert_eq!(
            object_json(Some("application/yaml"), Bytes::from_static(b"a: ["))
                .unwrap_err()
                .code,
            400
        );
    }
}
