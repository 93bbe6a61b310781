//! `?watch=true`: newline-delimited `{"type","object"}` events from the gRPC service's watch
//! (its selector filtering, its bookmarks), as Tables when asked. No resourceVersion (or "0")
//! starts with a synthetic ADDED per current object, as the apiserver does; a history too
//! old ends in an ERROR event carrying a 410 Expired Status.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use corral_api::kinds::ResourceInfo;
use corral_api::status::StatusReason;
use corral_proto as pb;
use corral_proto::api_server::Api;
use futures::{stream, Stream, StreamExt};
use http::{Response, StatusCode};
use http_body::Frame;
use serde_json::{json, Value};

use super::response::{self, Body};
use super::{table, verbs, Call};

/// How events are written: plain objects, or Table rows (column definitions once).
#[derive(Clone, Copy)]
pub struct Encoder {
    pub info: &'static ResourceInfo,
    pub as_table: bool,
}

impl Encoder {
    /// One event line.
    pub fn line(&self, typ: &str, obj: &Value, first: bool) -> Bytes {
        let object = if self.as_table && typ != "BOOKMARK" && typ != "ERROR" {
            let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion")});
            table::table(
                self.info,
                std::slice::from_ref(obj),
                meta,
                first,
                jiff::Timestamp::now(),
            )
        } else {
            obj.clone()
        };
        let mut out = serde_json::to_vec(&json!({"type": typ, "object": object}))
            .expect("JSON values serialize");
        out.push(b'\n');
        out.into()
    }

    /// The object of a BOOKMARK event: only the kind and the revision.
    pub fn bookmark(&self, rev: i64) -> Value {
        json!({"kind": self.info.kind, "apiVersion": self.info.api_version(),
            "metadata": {"resourceVersion": rev.to_string()}})
    }
}

fn event_type(t: i32) -> &'static str {
    match pb::watch_event::Type::try_from(t) {
        Ok(pb::watch_event::Type::Added) => "ADDED",
        Ok(pb::watch_event::Type::Modified) => "MODIFIED",
        Ok(pb::watch_event::Type::Deleted) => "DELETED",
        Ok(pb::watch_event::Type::Bookmark) => "BOOKMARK",
        Err(_) => "ERROR",
    }
}

type Lines = std::pin::Pin<Box<dyn Stream<Item = Bytes> + Send>>;

pub(super) async fn serve(call: Call<'_>) -> Response<Body> {
    let enc = Encoder {
        info: call.kind,
        as_table: table::wants_table(&call.headers),
    };
    let rv = call.q("resourceVersion").unwrap_or("0");
    let Ok(mut from) = rv.parse::<i64>() else {
        return response::fail(
            StatusReason::BadRequest,
            format!("resourceVersion: Invalid value: {rv:?}: must be an integer"),
        );
    };
    let mut initial: Vec<Bytes> = Vec::new();
    if from == 0 {
        let (items, rev) = match verbs::list_items(&call).await {
            Ok(l) => l,
            Err(f) => return response::error(&f),
        };
        initial = items
            .iter()
            .enumerate()
            .map(|(i, o)| enc.line("ADDED", o, i == 0))
            .collect();
        from = rev;
    }
    let first_sent = !initial.is_empty();
    let watched = call
        .api
        .watch(call.req(pb::WatchRequest {
            resource: call.kind.plural.to_string(),
            namespace: call.info.namespace.clone(),
            label_selector: call.q("labelSelector").unwrap_or("").to_string(),
            field_selector: call.q("fieldSelector").unwrap_or("").to_string(),
            resource_version: from,
            allow_bookmarks: call.q("allowWatchBookmarks") == Some("true"),
        }))
        .await;
    let events: Lines = match watched {
        Ok(events) => {
            let mut first = !first_sent;
            Box::pin(events.into_inner().scan(false, move |ended, ev| {
                if *ended {
                    return futures::future::ready(None);
                }
                let line = match ev {
                    Ok(ev) => {
                        let typ = event_type(ev.r#type);
                        let obj = if typ == "BOOKMARK" {
                            enc.bookmark(ev.resource_version)
                        } else {
                            serde_json::from_slice(&ev.object).unwrap_or(Value::Null)
                        };
                        let line = enc.line(typ, &obj, first);
                        first = false;
                        line
                    }
                    Err(s) => {
                        *ended = true;
                        enc.line(
                            "ERROR",
                            &response::status_json(&response::from_grpc(&s)),
                            false,
                        )
                    }
                };
                futures::future::ready(Some(line))
            }))
        }
        // A revision too old is told inside the stream, as the apiserver does.
        Err(s) if s.code() == tonic::Code::OutOfRange => {
            let status = response::status_json(&response::from_grpc(&s));
            Box::pin(stream::iter([enc.line("ERROR", &status, false)]))
        }
        Err(s) => return response::grpc_error(&s),
    };
    let mut lines: Lines = Box::pin(stream::iter(initial).chain(events));
    if let Some(secs) = call.q("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()) {
        let end = tokio::time::sleep(Duration::from_secs(secs));
        lines = Box::pin(lines.take_until(end));
    }
    let body = http_body_util::StreamBody::new(lines.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut r = Response::new(Body::new(body));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(response::JSON),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::kinds;

    #[test]
    fn events_are_json_lines_and_table_rows_when_asked() {
        let pod = json!({"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "p", "namespace": "d", "resourceVersion": "5"}});
        let plain = Encoder {
            info: &kinds::PODS,
            as_table: false,
        };
        let line = plain.line("ADDED", &pod, true);
        assert!(line.ends_with(b"\n"));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v, json!({"type": "ADDED", "object": pod}));
        let tables = Encoder {
            info: &kinds::PODS,
            as_table: true,
        };
        let first: Value = serde_json::from_slice(&tables.line("MODIFIED", &pod, true)).unwrap();
        assert_eq!(first["object"]["kind"], "Table");
        assert!(first["object"]["columnDefinitions"].is_array());
        assert_eq!(first["object"]["rows"][0]["cells"][0], "p");
        let later: Value = serde_json::from_slice(&tables.line("DELETED", &pod, false)).unwrap();
        assert!(later["object"].get("columnDefinitions").is_none());
        let bm: Value =
            serde_json::from_slice(&tables.line("BOOKMARK", &tables.bookmark(9), false)).unwrap();
        assert_eq!(
            bm["object"],
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}})
        );
    }
}
