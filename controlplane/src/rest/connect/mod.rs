//! The connect subresources kubectl streams through: `pods/exec` and `pods/attach` as a
//! WebSocket upgrade speaking the `v5`/`v4.channel.k8s.io` protocols, `pods/portforward` as
//! SPDY/3.1 (tunnelled in a WebSocket, or a plain upgrade), each bridged onto the stream the
//! gRPC RPCs open (`server::streams::join`, so authorization stays `create` on the
//! subresource); HTTP/1.1 connections are served here with upgrades (`http1`).

use std::sync::Arc;

use corral_api::status::StatusReason;
use corral_proto as pb;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pb::stream_frame::Msg;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, Instrument};

use super::path::{self, RequestInfo};
use super::response::{self, Body};
use crate::auth::UserInfo;
use crate::server::streams::{self, Kind};
use crate::server::ApiService;

/// The WebSocket subprotocol kubectl tunnels port-forward's SPDY session in.
const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// The stream protocol of a plain SPDY port-forward upgrade.
const PORTFORWARD: &str = "portforward.k8s.io";

pub mod channels;
pub mod http1;
pub mod spdy;
mod websocket;

use websocket::Wants;

/// Whether a request is one of the connect subresources served here.
pub fn handles(info: &RequestInfo) -> bool {
    kind_of(info).is_some()
}

fn kind_of(info: &RequestInfo) -> Option<Kind> {
    if !(info.group.is_empty() && info.resource == "pods" && !info.name.is_empty()) {
        return None;
    }
    if !matches!(info.verb, "get" | "create") {
        return None;
    }
    match info.subresource.as_str() {
        "exec" => Some(Kind::Exec),
        "attach" => Some(Kind::Attach),
        "portforward" => Some(Kind::PortForward),
        _ => None,
    }
}

fn flag(v: &str) -> bool {
    matches!(v, "true" | "1" | "True")
}

/// The stream's first frame and the output channels asked for, from the request's query
/// (`command` repeats, one argument each; `container`, `stdin`, `stdout`, `stderr`, `tty`).
pub fn request_of(
    kind_exec: bool,
    namespace: &str,
    pod: &str,
    pairs: impl IntoIterator<Item = (String, String)>,
) -> (pb::StreamFrame, Wants) {
    let (mut command, mut container) = (Vec::new(), String::new());
    let (mut stdin, mut tty) = (false, false);
    let mut wants = Wants {
        stdout: false,
        stderr: false,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "command" => command.push(v),
            "container" => container = v,
            "stdin" => stdin = flag(&v),
            "stdout" => wants.stdout = flag(&v),
            "stderr" => wants.stderr = flag(&v),
            "tty" => tty = flag(&v),
            _ => {}
        }
    }
    let (namespace, pod) = (namespace.to_string(), pod.to_string());
    let msg = if kind_exec {
        Msg::Exec(pb::ExecRequest {
            namespace,
            pod,
            container,
            command,
            stdin,
            tty,
            size: None,
        })
    } else {
        Msg::Attach(pb::AttachRequest {
            namespace,
            pod,
            container,
            stdin,
            tty,
            size: None,
        })
    };
    (pb::StreamFrame { msg: Some(msg) }, wants)
}

/// Whether the headers ask for a WebSocket (version 13) and carry its key.
fn websocket_key(headers: &HeaderMap) -> Option<&HeaderValue> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !(has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")) {
        return None;
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return None;
    }
    headers.get(header::SEC_WEBSOCKET_KEY)
}

/// Serves one exec or attach request: refused with a Status before the upgrade (bad request,
/// forbidden, no such pod), else `101 Switching Protocols` and the bridge in its own task.
pub async fn serve(
    api: &Arc<ApiService>,
    user: UserInfo,
    info: RequestInfo,
    mut parts: http::request::Parts,
) -> Response<Body> {
    let Some(kind) = kind_of(&info) else {
        return response::fail(StatusReason::NotFound, "not a connect subresource");
    };
    if kind == Kind::PortForward {
        return port_forward(api, user, info, parts).await;
    }
    if websocket_key(&parts.headers).is_none() && lists(&parts.headers, "upgrade", "SPDY/3.1") {
        return spdy_exec(api, user, info, kind, parts).await;
    }
    let Some(key) = websocket_key(&parts.headers) else {
        return response::fail(
            StatusReason::BadRequest,
            "Upgrade request required: exec and attach are served over WebSocket (v5.channel.k8s.io, v4.channel.k8s.io)",
        );
    };
    let offered = parts
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Some(protocol) = channels::negotiate(offered) else {
        return response::fail(
            StatusReason::BadRequest,
            "unable to upgrade: none of the offered subprotocols is served (v5.channel.k8s.io, v4.channel.k8s.io)",
        );
    };
    let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
        return response::fail(
            StatusReason::BadRequest,
            "unable to upgrade: the connection does not allow it (use HTTP/1.1)",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let (first, wants) = request_of(
        kind == Kind::Exec,
        &info.namespace,
        &info.name,
        path::query_pairs(parts.uri.query()),
    );
    let (to_agent, from_agent) = match streams::join(api, &user, kind, first).await {
        Ok(s) => s,
        Err(status) => return response::grpc_error(&status),
    };
    let span = tracing::debug_span!("connect", pod = %info.name, namespace = %info.namespace,
        subresource = %info.subresource, protocol = protocol.name());
    tokio::spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            websocket::bridge(ws, protocol, wants, to_agent, from_agent).await;
            debug!("stream closed");
        }
        .instrument(span),
    );
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a header value"),
    );
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol.name()),
    );
    r
}

/// Whether `headers` list `token` in header `name` (comma-separated, any case).
fn lists(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The remote-command protocol spoken over SPDY (kubectl before v1.31 offers it first).
const SPDY_EXEC: &str = "v4.channel.k8s.io";

/// exec/attach as a plain SPDY/3.1 upgrade (`X-Stream-Protocol-Version: v4.channel.k8s.io`),
/// authorized before the upgrade, then [`spdy::exec`].
async fn spdy_exec(
    api: &Arc<ApiService>,
    user: UserInfo,
    info: RequestInfo,
    kind: Kind,
    mut parts: http::request::Parts,
) -> Response<Body> {
    if !(lists(&parts.headers, "connection", "upgrade")
        && lists(&parts.headers, "x-stream-protocol-version", SPDY_EXEC))
    {
        return response::fail(
            StatusReason::BadRequest,
            "unable to upgrade: SPDY exec and attach speak v4.channel.k8s.io only",
        );
    }
    let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
        return response::fail(
            StatusReason::BadRequest,
            "unable to upgrade: the connection does not allow it (use HTTP/1.1)",
        );
    };
    if let Err(status) = streams::authorize(api, &user, kind, &info.namespace, &info.name).await {
        return response::grpc_error(&status);
    }
    let pairs: Vec<(String, String)> = path::query_pairs(parts.uri.query()).collect();
    let (first, wants) = request_of(kind == Kind::Exec, &info.namespace, &info.name, pairs);
    let (stdin, tty) = match &first.msg {
        Some(Msg::Exec(r)) => (r.stdin, r.tty),
        Some(Msg::Attach(r)) => (r.stdin, r.tty),
        _ => (false, false),
    };
    let target = spdy::exec::Target {
        api: api.clone(),
        user,
        kind,
        first,
        expect: spdy::exec::Expect {
            stdin,
            stdout: wants.stdout,
            stderr: wants.stderr,
            tty,
        },
    };
    let span = tracing::debug_span!("connect", pod = %info.name, namespace = %info.namespace,
        subresource = %info.subresource, protocol = "SPDY/3.1");
    tokio::spawn(
        async move {
            match on_upgrade.await {
                Ok(u) => spdy::exec::serve(TokioIo::new(u), target).await,
                Err(e) => debug!(error = %e, "upgrade failed"),
            }
        }
        .instrument(span),
    );
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(
        "x-stream-protocol-version",
        HeaderValue::from_static(SPDY_EXEC),
    );
    r
}

/// `pods/portforward`: SPDY/3.1 in a WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl v1.31+)
/// or a plain `Upgrade: SPDY/3.1` (older kubectl, and newer ones falling back); one session
/// per connection, authorized before the upgrade and again for each forwarded connection.
async fn port_forward(
    api: &Arc<ApiService>,
    user: UserInfo,
    info: RequestInfo,
    mut parts: http::request::Parts,
) -> Response<Body> {
    let headers = &parts.headers;
    let websocket = websocket_key(headers)
        .filter(|_| lists(headers, "sec-websocket-protocol", SPDY_TUNNEL))
        .map(|k| derive_accept_key(k.as_bytes()));
    let spdy = lists(headers, "upgrade", "SPDY/3.1")
        && lists(headers, "connection", "upgrade")
        && lists(headers, "x-stream-protocol-version", PORTFORWARD);
    if websocket.is_none() && !spdy {
        return response::fail(
            StatusReason::BadRequest,
            "Upgrade request required: port-forward is served over SPDY/3.1 (portforward.k8s.io), also tunnelled in a WebSocket (SPDY/3.1+portforward.k8s.io)",
        );
    }
    let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
        return response::fail(
            StatusReason::BadRequest,
            "unable to upgrade: the connection does not allow it (use HTTP/1.1)",
        );
    };
    if let Err(status) =
        streams::authorize(api, &user, Kind::PortForward, &info.namespace, &info.name).await
    {
        return response::grpc_error(&status);
    }
    let target = spdy::portforward::Target {
        api: api.clone(),
        user,
        namespace: info.namespace.clone(),
        pod: info.name.clone(),
    };
    let span = tracing::debug_span!("portforward", pod = %info.name, namespace = %info.namespace,
        tunnelled = websocket.is_some());
    let tunnelled = websocket.is_some();
    tokio::spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => TokioIo::new(u),
                Err(e) => {
                    debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            if tunnelled {
                let ws = WebSocketStream::from_raw_socket(upgraded, Role::Server, None).await;
                let (session, pipe) = tokio::io::duplex(64 * 1024);
                tokio::join!(
                    websocket::tunnel(ws, pipe),
                    spdy::portforward::serve(session, target)
                );
            } else {
                spdy::portforward::serve(upgraded, target).await;
            }
            debug!("port-forward session closed");
        }
        .instrument(span),
    );
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    match websocket {
        Some(accept) => {
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).expect("base64 is a header value"),
            );
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(SPDY_TUNNEL),
            );
        }
        None => {
            h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            h.insert(
                "x-stream-protocol-version",
                HeaderValue::from_static(PORTFORWARD),
            );
        }
    }
    r
}

#[cfg(test)]
mod tests;
