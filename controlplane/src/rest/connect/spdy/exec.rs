//! exec and attach over SPDY/3.1 (`v4.channel.k8s.io`), as kubectl before v1.31 runs them:
//! the client opens one stream per channel (`streamType` error, stdin, stdout, stderr,
//! resize); once the ones the query asked for are open, the pod's stream is joined (the
//! gRPC RPC's, through `server::streams::join`) and relayed; the end is the v4 Status on the
//! error stream, then every stream the server writes is finished.

use std::collections::HashMap;
use std::sync::Arc;

use corral_proto as pb;
use futures::StreamExt;
use pb::stream_frame::Msg;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::{data_frames, encode, header, parse, Frame, HeaderCodec, FIN};
use crate::auth::UserInfo;
use crate::rest::connect::channels;
use crate::server::streams::{self, FrameStream, Kind};
use crate::server::ApiService;
use crate::tunnel::stream::MAX_DATA;

/// The channels a request asked for, by stream type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Expect {
    /// The stream types the client opens for this request (error always; resize with a tty).
    pub fn types(self) -> Vec<&'static str> {
        let mut t = vec!["error"];
        for (on, name) in [
            (self.stdin, "stdin"),
            (self.stdout, "stdout"),
            // A terminal has no separate stderr.
            (self.stderr && !self.tty, "stderr"),
            (self.tty, "resize"),
        ] {
            if on {
                t.push(name);
            }
        }
        t
    }
}

/// Terminal sizes in a resize stream's bytes (JSON objects one after another): the sizes
/// complete so far and how many bytes they used.
pub fn resizes(buf: &[u8]) -> (Vec<pb::TerminalSize>, usize) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        #[serde(default)]
        width: u16,
        #[serde(default)]
        height: u16,
    }
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Size>();
    let mut out = Vec::new();
    let mut used = 0;
    while let Some(Ok(s)) = it.next() {
        used = it.byte_offset();
        out.push(pb::TerminalSize {
            width: s.width.into(),
            height: s.height.into(),
        });
    }
    (out, used)
}

/// Who runs what.
pub struct Target {
    pub api: Arc<ApiService>,
    pub user: UserInfo,
    pub(crate) kind: Kind,
    pub first: pb::StreamFrame,
    pub expect: Expect,
}

/// Serves one exec/attach session until the command ends or the client goes away.
pub async fn serve<IO>(io: IO, target: Target)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut codec = HeaderCodec::default();
    let wanted = target.expect.types();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut to_pod: Option<mpsc::Sender<pb::StreamFrame>> = None;
    let mut output = None;
    let mut resize_buf = Vec::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    'session: loop {
        let mut chunk = [0u8; 32 * 1024];
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while let Some((frame, used)) = match parse(&buf) {
            Ok(f) => f,
            Err(e) => {
                debug!(error = %e, "exec session ended");
                break 'session;
            }
        } {
            buf.drain(..used);
            match frame {
                Frame::SynStream { id, block, .. } => {
                    let Ok(headers) = codec.decode(&block) else {
                        break 'session;
                    };
                    let reply = Frame::SynReply {
                        id,
                        flags: 0,
                        block: codec.encode(&[]),
                    };
                    if out_tx.send(encode(&reply)).await.is_err() {
                        break 'session;
                    }
                    let kind = header(&headers, "streamtype").unwrap_or_default();
                    ids.insert(kind.to_string(), id);
                    if output.is_none() && wanted.iter().all(|t| ids.contains_key(*t)) {
                        let ids = ids.clone();
                        let joined = streams::join(
                            &target.api,
                            &target.user,
                            target.kind,
                            target.first.clone(),
                        )
                        .await;
                        let from_pod = match joined {
                            Ok((tx, rx)) => {
                                to_pod = Some(tx);
                                Ok(rx)
                            }
                            Err(status) => Err(status),
                        };
                        output = Some(tokio::spawn(write_output(from_pod, ids, out_tx.clone())));
                    }
                }
                Frame::Data { id, flags, data } => {
                    if Some(&id) == ids.get("stdin") {
                        for c in data.chunks(MAX_DATA) {
                            relay(&to_pod, Msg::Stdin(c.to_vec())).await;
                        }
                        if flags & FIN != 0 {
                            relay(&to_pod, Msg::StdinEof(true)).await;
                        }
                    } else if Some(&id) == ids.get("resize") {
                        resize_buf.extend_from_slice(&data);
                        let (sizes, used) = resizes(&resize_buf);
                        resize_buf.drain(..used);
                        for s in sizes {
                            relay(&to_pod, Msg::Resize(s)).await;
                        }
                    }
                }
                Frame::Ping(n) => {
                    let _ = out_tx.send(encode(&Frame::Ping(n))).await;
                }
                Frame::GoAway { .. } => break 'session,
                _ => {}
            }
        }
        if output.as_ref().is_some_and(|o| o.is_finished()) {
            break;
        }
    }
    if let Some(o) = output {
        o.abort();
    }
    drop(out_tx);
    let _ = writer.await;
}

/// A client frame to the pod, once its stream is joined (the pod side being gone is the
/// output task's to report).
async fn relay(to_pod: &Option<mpsc::Sender<pb::StreamFrame>>, msg: Msg) {
    if let Some(t) = to_pod {
        let _ = t.send(pb::StreamFrame { msg: Some(msg) }).await;
    }
}

/// The pod's output onto the client's streams, then the Status on the error stream and the
/// end of every stream the server writes.
async fn write_output(
    from_pod: Result<FrameStream, tonic::Status>,
    ids: HashMap<String, u32>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let status = match from_pod {
        Err(s) => channels::failure(s.message(), "InternalError", 500),
        Ok(mut from_pod) => loop {
            let (kind, data) = match from_pod.next().await {
                Some(Ok(f)) => match f.msg {
                    Some(Msg::Stdout(d)) => ("stdout", d),
                    Some(Msg::Stderr(d)) => ("stderr", d),
                    Some(Msg::End(end)) => break channels::end_status(&end),
                    _ => continue,
                },
                Some(Err(s)) => break channels::failure(s.message(), "InternalError", 500),
                None => {
                    break channels::failure(
                        "the stream to the pod ended without its exit status",
                        "InternalError",
                        500,
                    )
                }
            };
            let Some(&id) = ids.get(kind) else { continue };
            for frame in data_frames(id, &data) {
                if out.send(encode(&frame)).await.is_err() {
                    return;
                }
            }
        },
    };
    let status = serde_json::to_vec(&status).expect("JSON values serialize");
    for kind in ["stdout", "stderr", "error"] {
        if let Some(&id) = ids.get(kind) {
            let data = if kind == "error" {
                status.clone()
            } else {
                Vec::new()
            };
            let _ = out
                .send(encode(&Frame::Data {
                    id,
                    flags: FIN,
                    data,
                }))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streams_to_wait_for_follow_the_query() {
        let e = |stdin, stdout, stderr, tty| Expect {
            stdin,
            stdout,
            stderr,
            tty,
        };
        let cases = [
            (
                e(false, true, true, false),
                vec!["error", "stdout", "stderr"],
            ),
            (
                e(true, true, true, true),
                vec!["error", "stdin", "stdout", "resize"],
            ),
            (e(true, false, false, false), vec!["error", "stdin"]),
        ];
        for (expect, want) in cases {
            assert_eq!(expect.types(), want, "{expect:?}");
        }
    }

    #[test]
    fn resize_streams_carry_json_objects_one_after_another() {
        let size = |width, height| pb::TerminalSize { width, height };
        let cases: &[(&[u8], Vec<pb::TerminalSize>, usize)] = &[
            (b"{\"Width\":80,\"Height\":24}", vec![size(80, 24)], 24),
            (
                b"{\"Width\":80,\"Height\":24}{\"Width\":100,\"Height\":30}{\"Wid",
                vec![size(80, 24), size(100, 30)],
                49,
            ),
            (b"{\"Width\":8", vec![], 0),
        ];
        for (buf, want, used) in cases {
            assert_eq!(resizes(buf), (want.clone(), *used), "{buf:?}");
        }
    }
}
