//! One upgraded exec/attach connection: the client's WebSocket messages go down the pod's
//! stream as stdin, resize and stdin-close frames, the pod's stdout and stderr come back on
//! their channels, and the stream's end is written as a Status on the error channel before a
//! normal close. And port-forward's tunnel: the WebSocket's binary messages as a byte stream
//! carrying a SPDY session.

use std::time::Duration;

use corral_proto as pb;
use futures::{Sink, SinkExt, Stream, StreamExt};
use pb::stream_frame::Msg;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::debug;

use super::channels::{self, Inbound, Protocol};
use crate::server::streams::FrameStream;
use crate::tunnel::stream::MAX_DATA;

/// How long the client has to answer our close before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The output channels the client asked for (`stdout=`, `stderr=`).
#[derive(Debug, Clone, Copy)]
pub struct Wants {
    pub stdout: bool,
    pub stderr: bool,
}

/// Runs one connection until the pod side ends (then the client gets the Status and a close)
/// or the client goes away (then the pod's stream is dropped, which cancels it).
pub async fn bridge<S>(
    ws: S,
    protocol: Protocol,
    wants: Wants,
    to_agent: mpsc::Sender<pb::StreamFrame>,
    from_agent: FrameStream,
) where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let (tx, rx) = ws.split();
    let mut input = std::pin::pin!(client_to_pod(rx, protocol, to_agent));
    let output = pod_to_client(tx, wants, from_agent);
    tokio::select! {
        _ = &mut input => return,
        _ = output => {}
    }
    // Keep reading until the client answers the close, so no unread input makes the kernel
    // reset the connection under the output just written.
    let _ = tokio::time::timeout(CLOSE_GRACE, input).await;
}

async fn client_to_pod<R>(mut rx: R, protocol: Protocol, to_agent: mpsc::Sender<pb::StreamFrame>)
where
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    while let Some(msg) = rx.next().await {
        let data = match msg {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Close(_)) | Err(_) => return,
            // Pings are answered by the codec; text is no part of the channel protocols.
            Ok(_) => continue,
        };
        let frames: Vec<Msg> = match channels::decode(protocol, &data) {
            Ok(Inbound::Stdin(data)) => data
                .chunks(MAX_DATA)
                .map(|c| Msg::Stdin(c.to_vec()))
                .collect(),
            Ok(Inbound::Resize { width, height }) => {
                vec![Msg::Resize(pb::TerminalSize { width, height })]
            }
            Ok(Inbound::StdinEof) => vec![Msg::StdinEof(true)],
            Ok(Inbound::Nothing) => continue,
            Err(e) => {
                debug!(error = %e, "client message ignored");
                continue;
            }
        };
        for msg in frames {
            // The pod side is gone: keep reading until the client closes.
            let _ = to_agent.send(pb::StreamFrame { msg: Some(msg) }).await;
        }
    }
}

async fn pod_to_client<W>(mut tx: W, wants: Wants, mut from_agent: FrameStream)
where
    W: Sink<Message, Error = WsError> + Unpin,
{
    let status = loop {
        let frame = match from_agent.next().await {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                break channels::failure(e.message(), "InternalError", 500);
            }
            None => {
                break channels::failure(
                    "the stream to the pod ended without its exit status",
                    "InternalError",
                    500,
                )
            }
        };
        let out = match frame.msg {
            Some(Msg::Stdout(data)) if wants.stdout => channels::frame(channels::STDOUT, &data),
            Some(Msg::Stderr(data)) if wants.stderr => channels::frame(channels::STDERR, &data),
            Some(Msg::End(end)) => break channels::end_status(&end),
            _ => continue,
        };
        if tx.send(Message::Binary(out.into())).await.is_err() {
            return;
        }
    };
    let status = serde_json::to_vec(&status).expect("JSON values serialize");
    let _ = tx
        .send(Message::Binary(
            channels::frame(channels::ERROR, &status).into(),
        ))
        .await;
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
}

/// Carries a byte stream in binary messages both ways until either side ends.
pub async fn tunnel<S>(ws: S, pipe: tokio::io::DuplexStream)
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut tx, mut rx) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(pipe);
    let up = async move {
        while let Some(Ok(msg)) = rx.next().await {
            match msg {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = tx
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
    };
    tokio::join!(up, down);
}
