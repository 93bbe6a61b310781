//! The verbs on a resource (no subresource): get, list (selectors, limit/continue), create,
//! update, delete (DeleteOptions from the body or the query) and deletecollection, each a call
//! of the gRPC service; watch and patch have their own modules.

use corral_api::kinds::ResourceInfo;
use corral_api::status::StatusReason;
use corral_proto as pb;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::response::{self, Body, Failure};
use super::{table, validation, Call};
use corral_proto::api_server::Api;

pub(super) async fn serve(call: Call<'_>) -> Response<Body> {
    let result = match call.info.verb {
        "get" => get(&call).await,
        "list" => list(&call).await,
        "watch" => return super::watch::serve(call).await,
        "create" => create(&call).await,
        "update" => update(&call, pb::Subresource::Main).await,
        "patch" => super::patch::serve(&call).await,
        "delete" => delete(&call).await,
        "deletecollection" => delete_collection(&call).await,
        _ => Err(response::failure(
            StatusReason::MethodNotAllowed,
            "method not allowed",
        )),
    };
    result.unwrap_or_else(|f| response::error(&f))
}

pub(super) type Answer = Result<Response<Body>, Failure>;

pub(super) fn parse(bytes: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(bytes).map_err(|e| {
        response::failure(
            StatusReason::InternalError,
            format!("the server sent an object that is not JSON: {e}"),
        )
    })
}

/// The object back, as a Table when asked.
pub(super) fn object(call: &Call<'_>, code: StatusCode, obj: &Value) -> Response<Body> {
    if table::wants_table(&call.headers) {
        let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion")});
        let t = table::table(
            call.kind,
            std::slice::from_ref(obj),
            meta,
            true,
            jiff::Timestamp::now(),
        );
        return response::json(code, &t);
    }
    response::json(code, obj)
}

pub(super) fn object_ref(call: &Call<'_>) -> pb::ObjectRef {
    pb::ObjectRef {
        resource: call.kind.plural.to_string(),
        namespace: call.info.namespace.clone(),
        name: call.info.name.clone(),
    }
}

pub(super) async fn fetch(call: &Call<'_>) -> Result<Value, Failure> {
    let got = call
        .api
        .get(call.req(pb::GetRequest {
            r#ref: Some(object_ref(call)),
        }))
        .await
        .map_err(|s| response::grpc_failure(&s))?;
    parse(&got.into_inner().json)
}

async fn get(call: &Call<'_>) -> Answer {
    let obj = fetch(call).await?;
    Ok(object(call, StatusCode::OK, &obj))
}

pub(super) async fn list_items(call: &Call<'_>) -> Result<(Vec<Value>, i64), Failure> {
    let listed = call
        .api
        .list(call.req(pb::ListRequest {
            resource: call.kind.plural.to_string(),
            namespace: call.info.namespace.clone(),
            label_selector: call.q("labelSelector").unwrap_or("").to_string(),
            field_selector: call.q("fieldSelector").unwrap_or("").to_string(),
            ..Default::default()
        }))
        .await
        .map_err(|s| response::grpc_failure(&s))?
        .into_inner();
    let items = listed
        .items
        .iter()
        .map(|b| parse(b))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, listed.resource_version))
}

pub fn list_kind(info: &ResourceInfo) -> String {
    format!("{}List", info.kind)
}

async fn list(call: &Call<'_>) -> Answer {
    let limit = match call.q("limit") {
        None | Some("") => 0,
        Some(l) => l.parse().map_err(|_| {
            response::failure(
                StatusReason::BadRequest,
                format!("limit must be an integer, got {l:?}"),
            )
        })?,
    };
    let exact = match call.q("resourceVersionMatch") {
        None | Some("") => None,
        Some("Exact") => Some(true),
        Some("NotOlderThan") => Some(false),
        Some(other) => {
            return Err(response::failure(
                StatusReason::BadRequest,
                format!("resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""),
            ))
        }
    };
    let listed = call
        .api
        .list(call.req(pb::ListRequest {
            resource: call.kind.plural.to_string(),
            namespace: call.info.namespace.clone(),
            label_selector: call.q("labelSelector").unwrap_or("").to_string(),
            field_selector: call.q("fieldSelector").unwrap_or("").to_string(),
            limit,
            r#continue: call.q("continue").unwrap_or("").to_string(),
            resource_version: call.q("resourceVersion").unwrap_or("").to_string(),
            resource_version_exact: exact,
        }))
        .await
        .map_err(|s| response::grpc_failure(&s))?
        .into_inner();
    let items = listed
        .items
        .iter()
        .map(|b| parse(b))
        .collect::<Result<Vec<_>, _>>()?;
    let mut meta = json!({"resourceVersion": listed.resource_version.to_string()});
    if !listed.r#continue.is_empty() {
        meta["continue"] = json!(listed.r#continue);
    }
    if table::wants_table(&call.headers) {
        let t = table::table(call.kind, &items, meta, true, jiff::Timestamp::now());
        return Ok(response::json(StatusCode::OK, &t));
    }
    Ok(response::json(
        StatusCode::OK,
        &json!({
            "kind": list_kind(call.kind),
            "apiVersion": call.kind.api_version(),
            "metadata": meta,
            "items": items,
        }),
    ))
}

async fn create(call: &Call<'_>) -> Answer {
    let checked = match serde_json::from_slice::<Value>(&call.body) {
        Ok(obj) => validation::for_call(call, obj, &call.body)?,
        // Not JSON: the registry says so, as the gRPC API does.
        Err(_) => validation::Checked {
            json: call.body.to_vec(),
            warnings: Vec::new(),
        },
    };
    let created = call
        .api
        .create(call.req(pb::CreateRequest {
            resource: call.kind.plural.to_string(),
            namespace: call.info.namespace.clone(),
            json: checked.json,
            dry_run: call.dry_run(),
        }))
        .await
        .map_err(|s| response::grpc_failure(&s))?;
    let mut warnings = checked.warnings;
    warnings.extend(warning_headers(created.metadata()));
    let obj = parse(&created.into_inner().json)?;
    Ok(with_warnings(
        object(call, StatusCode::CREATED, &obj),
        warnings,
    ))
}

/// The admission warnings of a gRPC answer, to pass on as HTTP `Warning` headers.
pub(super) fn warning_headers(md: &tonic::metadata::MetadataMap) -> Vec<http::HeaderValue> {
    md.get_all("warning")
        .iter()
        .filter_map(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok())
        .collect()
}

pub(super) fn with_warnings(
    mut r: Response<Body>,
    warnings: Vec<http::HeaderValue>,
) -> Response<Body> {
    for w in warnings {
        r.headers_mut().append(http::header::WARNING, w);
    }
    r
}

/// The request's object with the URL's name where it has none; a different name is refused.
pub(super) fn body_for(call: &Call<'_>, bytes: &[u8]) -> Result<Value, Failure> {
    let mut obj: Value = serde_json::from_slice(bytes).map_err(|e| {
        response::failure(
            StatusReason::BadRequest,
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    let name = corral_api::object::name(&obj).to_string();
    if name.is_empty() {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("name".into(), json!(call.info.name));
        }
    } else if name != call.info.name {
        return Err(response::failure(
            StatusReason::BadRequest,
            format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                call.info.name
            ),
        ));
    }
    Ok(obj)
}

pub(super) async fn update_bytes(
    call: &Call<'_>,
    json: Vec<u8>,
    subresource: pb::Subresource,
) -> Answer {
    let updated = call
        .api
        .update(call.req(pb::UpdateRequest {
            resource: call.kind.plural.to_string(),
            namespace: call.info.namespace.clone(),
            json,
            subresource: subresource as i32,
            dry_run: call.dry_run(),
        }))
        .await
        .map_err(|s| response::grpc_failure(&s))?;
    let warnings = warning_headers(updated.metadata());
    let obj = parse(&updated.into_inner().json)?;
    Ok(with_warnings(object(call, StatusCode::OK, &obj), warnings))
}

pub(super) async fn update(call: &Call<'_>, subresource: pb::Subresource) -> Answer {
    let obj = body_for(call, &call.body)?;
    let checked = validation::for_call(call, obj, &call.body)?;
    let answer = update_bytes(call, checked.json, subresource).await?;
    Ok(with_warnings(answer, checked.warnings))
}

/// DeleteOptions that cannot be decoded, in the apiserver's words (a 400 for the client).
#[derive(Debug, thiserror::Error)]
pub enum DeleteOptionsError {
    #[error("DeleteOptions is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("propagationPolicy: Unsupported value: \"{0}\": supported values: \"Foreground\", \"Background\", \"Orphan\"")]
    Policy(String),
    #[error("gracePeriodSeconds: invalid value {0:?}")]
    Grace(String),
    #[error("preconditions.resourceVersion: invalid value {0:?}")]
    ResourceVersion(String),
}

/// DeleteOptions from the body (JSON) and the query (the query's values win, as the
/// apiserver decodes the query over the body).
pub fn delete_request(
    body: &[u8],
    query: &std::collections::BTreeMap<String, String>,
    r: pb::ObjectRef,
) -> Result<pb::DeleteRequest, DeleteOptionsError> {
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)?
    };
    let policy = query
        .get("propagationPolicy")
        .map(String::as_str)
        .or_else(|| opts["propagationPolicy"].as_str());
    let propagation = match policy {
        None | Some("") => pb::PropagationPolicy::Default,
        Some("Background") => pb::PropagationPolicy::Background,
        Some("Foreground") => pb::PropagationPolicy::Foreground,
        Some("Orphan") => pb::PropagationPolicy::Orphan,
        Some(other) => return Err(DeleteOptionsError::Policy(other.to_string())),
    };
    let grace = match query.get("gracePeriodSeconds") {
        Some(g) => Some(
            g.parse()
                .map_err(|_| DeleteOptionsError::Grace(g.clone()))?,
        ),
        None => opts["gracePeriodSeconds"].as_i64(),
    };
    let dry_run = query.get("dryRun").is_some_and(|d| d == "All")
        || opts["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    let pre = &opts["preconditions"];
    let resource_version = match pre["resourceVersion"].as_str() {
        Some(rv) => rv
            .parse()
            .map_err(|_| DeleteOptionsError::ResourceVersion(rv.to_string()))?,
        None => 0,
    };
    Ok(pb::DeleteRequest {
        r#ref: Some(r),
        propagation_policy: propagation as i32,
        grace_period_seconds: grace,
        uid: pre["uid"].as_str().unwrap_or("").to_string(),
        resource_version,
        dry_run,
    })
}

pub(super) async fn delete_one(call: &Call<'_>, r: pb::ObjectRef) -> Result<Value, Failure> {
    let req = delete_request(&call.body, &call.query, r)
        .map_err(|e| response::failure(StatusReason::BadRequest, e.to_string()))?;
    let deleted = call
        .api
        .delete(call.req(req))
        .await
        .map_err(|s| response::grpc_failure(&s))?;
    parse(&deleted.into_inner().object)
}

async fn delete(call: &Call<'_>) -> Answer {
    let obj = delete_one(call, object_ref(call)).await?;
    Ok(response::json(StatusCode::OK, &obj))
}

async fn delete_collection(call: &Call<'_>) -> Answer {
    let (items, rev) = list_items(call).await?;
    let mut deleted = Vec::new();
    for item in items {
        let r = pb::ObjectRef {
            resource: call.kind.plural.to_string(),
            namespace: corral_api::object::namespace(&item).to_string(),
            name: corral_api::object::name(&item).to_string(),
        };
        match delete_one(call, r).await {
            Ok(obj) => deleted.push(obj),
            // Gone meanwhile: deleting it is done.
            Err(f) if f.code == 404 => {}
            Err(f) => return Err(f),
        }
    }
    Ok(response::json(
        StatusCode::OK,
        &json!({
            "kind": list_kind(call.kind),
            "apiVersion": call.kind.api_version(),
            "metadata": {"resourceVersion": rev.to_string()},
            "items": deleted,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_come_from_body_and_query() {
        let r = || pb::ObjectRef::default();
        let q = |s: &str| super::super::path::query(Some(s));
        let body = br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground",
            "gracePeriodSeconds":30,"preconditions":{"uid":"u1","resourceVersion":"9"},"dryRun":["All"]}"#;
        let d = delete_request(body, &q(""), r()).unwrap();
        assert_eq!(
            d.propagation_policy,
            pb::PropagationPolicy::Foreground as i32
        );
        assert_eq!(d.grace_period_seconds, Some(30));
        assert_eq!(
            (d.uid.as_str(), d.resource_version, d.dry_run),
            ("u1", 9, true)
        );
        let d = delete_request(
            b"",
            &q("propagationPolicy=Orphan&gracePeriodSeconds=0"),
            r(),
        )
        .unwrap();
        assert_eq!(d.propagation_policy, pb::PropagationPolicy::Orphan as i32);
        assert_eq!((d.grace_period_seconds, d.dry_run), (Some(0), false));
        let d = delete_request(
            br#"{"propagationPolicy":"Background"}"#,
            &q("dryRun=All"),
            r(),
        )
        .unwrap();
        assert_eq!(
            d.propagation_policy,
            pb::PropagationPolicy::Background as i32
        );
        assert!(d.dry_run);
        assert!(delete_request(b"", &q("propagationPolicy=Sideways"), r())
            .unwrap_err()
            .to_string()
            .contains("Unsupported value"));
        assert!(delete_request(b"{", &q(""), r()).is_err());
    }
}
