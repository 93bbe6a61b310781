//! The stream side of a forward: checks the request, dials, then pumps frames and bytes.

use std::time::Duration;

use corral_proto as pb;
use pb::stream_frame::Msg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::debug;

use super::{dial, DialError, Netns};
use crate::pod::manager::PodIndex;
use crate::streams::{Duplex, StreamSink};

/// Data frames are at most 32 KiB (the tunnel's contract).
const FRAME: usize = 32 * 1024;
/// A loopback connect answers at once; this only bounds a wedged namespace.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

fn end(error: String) -> pb::StreamFrame {
    pb::StreamFrame {
        msg: Some(Msg::End(pb::StreamEnd {
            exit_code: None,
            error,
        })),
    }
}

/// Why a forward could not start, in kubelet's words (the client prints them as they are).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("pod {pod:?} in namespace {namespace:?} is not on this node")]
    NotHere { namespace: String, pod: String },
    #[error("invalid port {port}: must be between 1 and 65535")]
    Port { port: u32 },
    #[error("error forwarding port {port} to pod {uid}, uid : failed to execute portforward in network namespace {netns:?}: {source}")]
    Dial {
        port: u16,
        uid: String,
        netns: String,
        #[source]
        source: DialError,
    },
}

/// Opens the forward: the pod must be on this node and its port must accept.
pub async fn connect(
    index: &PodIndex,
    req: &pb::PortForwardRequest,
) -> Result<TcpStream, ForwardError> {
    let (uid, netns) =
        index
            .netns(&req.namespace, &req.pod)
            .ok_or_else(|| ForwardError::NotHere {
                namespace: req.namespace.clone(),
                pod: req.pod.clone(),
            })?;
    let port = u16::try_from(req.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(ForwardError::Port { port: req.port })?;
    dial(&netns, port, DIAL_TIMEOUT)
        .await
        .map_err(|source| ForwardError::Dial {
            port,
            uid,
            netns: match &netns {
                Netns::Host => "host".into(),
                Netns::Path(p) => p.display().to_string(),
            },
            source,
        })
}

/// Serves one forwarded connection until either side is done; the last frame out is a
/// `StreamEnd` (with the error, if any).
pub async fn serve(index: PodIndex, req: pb::PortForwardRequest, io: Duplex) {
    let Duplex { input, output } = io;
    match connect(&index, &req).await {
        Ok(conn) => pump(conn, input, &output, req.port).await,
        Err(e) => {
            debug!(pod = %req.pod, namespace = %req.namespace, port = req.port, error = %e, "port-forward refused");
            let _ = output.send(end(e.to_string())).await;
        }
    }
}

/// Copies bytes both ways: the pod's EOF ends the stream, the client's `stdin_eof`
/// half-closes the connection (the pod may still answer), the client going away drops it.
async fn pump(
    conn: TcpStream,
    mut input: mpsc::Receiver<pb::StreamFrame>,
    output: &StreamSink,
    port: u32,
) {
    let (mut rd, mut wr) = conn.into_split();
    let to_client = async {
        let mut buf = vec![0u8; FRAME];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return String::new(),
                Ok(n) => {
                    let frame = pb::StreamFrame {
                        msg: Some(Msg::Stdout(buf[..n].to_vec())),
                    };
                    if output.send(frame).await.is_err() {
                        return String::new();
                    }
                }
                Err(e) => return format!("error reading from port {port}: {e}"),
            }
        }
    };
    let to_pod = async {
        let mut open = true;
        while let Some(frame) = input.recv().await {
            match frame.msg {
                Some(Msg::Stdin(data)) if open => {
                    if let Err(e) = wr.write_all(&data).await {
                        return Some(format!("error writing to port {port}: {e}"));
                    }
                }
                Some(Msg::StdinEof(true)) if open => {
                    open = false;
                    // The pod reads EOF and may still answer: the stream stays open.
                    let _ = wr.shutdown().await;
                }
                _ => {}
            }
        }
        // The client is gone: nobody reads an answer.
        None
    };
    tokio::select! {
        error = to_client => {
            let _ = output.send(end(error)).await;
        }
        gone = to_pod => {
            // The client gone (None): the end is for the record only.
            let _ = output.send(end(gone.unwrap_or_default())).await;
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
