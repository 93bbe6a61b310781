//! kubectl port-forward's SPDY session (`portforward.k8s.io`): each forwarded connection is a
//! pair of client streams with the same `requestID` and `port` headers, `streamType: error`
//! then `streamType: data`. The data stream becomes one `PortForward` stream to the pod (the
//! gRPC RPC's, through `server::streams::join`); the error stream carries the failure, if
//! any, and then its end, which kubectl waits for.

use std::collections::HashMap;
use std::sync::Arc;

use corral_proto as pb;
use futures::StreamExt;
use pb::stream_frame::Msg;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::debug;

use super::{data_frames, encode, header, parse, Frame, HeaderCodec, FIN};
use crate::auth::UserInfo;
use crate::server::streams::{self, Kind};
use crate::server::ApiService;
use crate::tunnel::stream::MAX_DATA;

/// Data frames of one client stream waiting for its forwarder.
const STREAM_BACKLOG: usize = 64;

/// What a client's `SYN_STREAM` headers ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub request_id: String,
    pub port: u16,
    pub data: bool,
}

/// Why a stream's headers are refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OpenError {
    #[error("invalid stream type {0:?}: port-forward streams are \"data\" or \"error\"")]
    StreamType(String),
    #[error("invalid port {0:?}: must be between 1 and 65535")]
    Port(String),
}

/// Reads a port-forward stream's headers (names lower case).
pub fn opened(headers: &[(String, String)]) -> Result<Opened, OpenError> {
    let kind = header(headers, "streamtype").unwrap_or_default();
    let data = match kind {
        "data" => true,
        "error" => false,
        other => return Err(OpenError::StreamType(other.to_string())),
    };
    let port = header(headers, "port").unwrap_or_default();
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| OpenError::Port(port.to_string()))?;
    // kubectl before v1.6 sent no requestID: one connection per port then.
    let request_id = header(headers, "requestid")
        .map(String::from)
        .unwrap_or_else(|| format!("port-{port}"));
    Ok(Opened {
        request_id,
        port,
        data,
    })
}

/// Who forwards to which pod.
pub struct Target {
    pub api: Arc<ApiService>,
    pub user: UserInfo,
    pub namespace: String,
    pub pod: String,
}

/// Serves one session until the client goes away (or says GOAWAY); forwarded connections
/// still open then are dropped, which cancels their pod streams.
pub async fn serve<IO>(io: IO, target: Target)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let target = Arc::new(target);
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(STREAM_BACKLOG);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut codec = HeaderCodec::default();
    let mut inputs: HashMap<u32, mpsc::Sender<Option<Vec<u8>>>> = HashMap::new();
    // requestID -> the error stream's id, once the client opened it.
    let mut error_streams: HashMap<String, u32> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    'session: loop {
        let mut chunk = [0u8; 32 * 1024];
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        loop {
            let (frame, used) = match parse(&buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    debug!(error = %e, "port-forward session ended");
                    break 'session;
                }
            };
            buf.drain(..used);
            match frame {
                Frame::SynStream { id, block, .. } => {
                    let headers = match codec.decode(&block) {
                        Ok(h) => h,
                        Err(e) => {
                            debug!(error = %e, "port-forward session ended");
                            break 'session;
                        }
                    };
                    let reply = Frame::SynReply {
                        id,
                        flags: 0,
                        block: codec.encode(&[]),
                    };
                    if out_tx.send(encode(&reply)).await.is_err() {
                        break 'session;
                    }
                    let open = match opened(&headers) {
                        Ok(o) => o,
                        Err(e) => {
                            debug!(error = %e, stream = id, "port-forward stream refused");
                            let rst = Frame::RstStream { id, status: 1 };
                            let _ = out_tx.send(encode(&rst)).await;
                            continue;
                        }
                    };
                    if !open.data {
                        error_streams.insert(open.request_id, id);
                        continue;
                    }
                    let (tx, rx) = mpsc::channel(STREAM_BACKLOG);
                    inputs.insert(id, tx);
                    let error_id = error_streams.remove(&open.request_id);
                    forwards.spawn(forward(
                        target.clone(),
                        open.port,
                        id,
                        error_id,
                        rx,
                        out_tx.clone(),
                    ));
                }
                Frame::Data { id, flags, data } => {
                    if let Some(input) = inputs.get(&id) {
                        if !data.is_empty() {
                            let _ = input.send(Some(data)).await;
                        }
                        if flags & FIN != 0 {
                            let _ = input.send(None).await;
                            inputs.remove(&id);
                        }
                    }
                }
                Frame::RstStream { id, .. } => {
                    inputs.remove(&id);
                }
                Frame::Ping(n) => {
                    let _ = out_tx.send(encode(&Frame::Ping(n))).await;
                }
                Frame::GoAway { .. } => break 'session,
                _ => {}
            }
        }
    }
    drop(forwards);
    drop(out_tx);
    let _ = writer.await;
}

/// One forwarded connection: the client's data stream `id` to the pod's `port`.
async fn forward(
    target: Arc<Target>,
    port: u16,
    id: u32,
    error_id: Option<u32>,
    mut input: mpsc::Receiver<Option<Vec<u8>>>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let first = pb::StreamFrame {
        msg: Some(Msg::PortForward(pb::PortForwardRequest {
            namespace: target.namespace.clone(),
            pod: target.pod.clone(),
            port: port.into(),
        })),
    };
    let failure = match streams::join(&target.api, &target.user, Kind::PortForward, first).await {
        Err(status) => Some(status.message().to_string()),
        Ok((to_pod, mut from_pod)) => {
            let pump = async move {
                while let Some(data) = input.recv().await {
                    let msg = match data {
                        Some(d) => d
                            .chunks(MAX_DATA)
                            .map(|c| Msg::Stdin(c.to_vec()))
                            .collect::<Vec<_>>(),
                        None => vec![Msg::StdinEof(true)],
                    };
                    for m in msg {
                        if to_pod.send(pb::StreamFrame { msg: Some(m) }).await.is_err() {
                            return;
                        }
                    }
                }
                // The session dropped the stream (RST_STREAM): wait here to be cancelled.
                std::future::pending::<()>().await;
            };
            let back = async {
                loop {
                    match from_pod.next().await {
                        Some(Ok(f)) => match f.msg {
                            Some(Msg::Stdout(d)) => {
                                for frame in data_frames(id, &d) {
                                    if out.send(encode(&frame)).await.is_err() {
                                        return None;
                                    }
                                }
                            }
                            Some(Msg::End(end)) if !end.error.is_empty() => return Some(end.error),
                            Some(Msg::End(_)) => return None,
                            _ => {}
                        },
                        Some(Err(status)) => return Some(status.message().to_string()),
                        None => return None,
                    }
                }
            };
            tokio::select! {
                failure = back => failure,
                _ = pump => None,
            }
        }
    };
    let fin = |id: u32, data: Vec<u8>| Frame::Data {
        id,
        flags: FIN,
        data,
    };
    if let Some(err_id) = error_id {
        let message = failure
            .map(|m| format!("error forwarding port {port} to pod {}: {m}", target.pod))
            .unwrap_or_default();
        let _ = out.send(encode(&fin(err_id, message.into_bytes()))).await;
    }
    let _ = out.send(encode(&fin(id, Vec::new()))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_streams_headers_name_its_request_port_and_type() {
        let cases = [
            (
                h(&[("streamtype", "data"), ("port", "80"), ("requestid", "3")]),
                Ok(Opened {
                    request_id: "3".into(),
                    port: 80,
                    data: true,
                }),
            ),
            (
                h(&[("streamtype", "error"), ("port", "8080")]),
                Ok(Opened {
                    request_id: "port-8080".into(),
                    port: 8080,
                    data: false,
                }),
            ),
            (
                h(&[("streamtype", "resize"), ("port", "80")]),
                Err(OpenError::StreamType("resize".into())),
            ),
            (
                h(&[("streamtype", "data"), ("port", "0")]),
                Err(OpenError::Port("0".into())),
            ),
            (
                h(&[("streamtype", "data"), ("port", "70000")]),
                Err(OpenError::Port("70000".into())),
            ),
            (
                h(&[("streamtype", "data")]),
                Err(OpenError::Port("".into())),
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(opened(&headers), want, "{headers:?}");
        }
    }
}
