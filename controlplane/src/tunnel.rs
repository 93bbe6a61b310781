//! Agent tunnels: each node agent keeps one outbound bidirectional stream open
//! (`AgentTunnel.Open`); node-local requests such as logs travel down it, so nodes need no
//! inbound port, as with k3s's agent tunnel.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use corral_proto as pb;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::registry::ApiError;

type Chunk = Result<Vec<u8>, ApiError>;

/// One connected agent.
struct Conn {
    /// Distinguishes a reconnect of the same node from the session it replaces.
    session: u64,
    down: mpsc::Sender<Result<pb::AgentDown, Status>>,
    pending: Arc<Mutex<HashMap<u64, mpsc::Sender<Chunk>>>>,
}

#[derive(Default)]
struct Inner {
    nodes: Mutex<HashMap<String, Conn>>,
    next_id: AtomicU64,
}

/// Registry of connected agents, shared by the API server's handlers.
#[derive(Clone, Default)]
pub struct Tunnels {
    inner: Arc<Inner>,
}

/// Sends `LogCancel` when the reader of a log stream goes away.
struct LogStream {
    rx: ReceiverStream<Chunk>,
    cancel: Option<(mpsc::Sender<Result<pb::AgentDown, Status>>, u64)>,
    pending: Arc<Mutex<HashMap<u64, mpsc::Sender<Chunk>>>>,
}

impl Stream for LogStream {
    type Item = Chunk;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        let r = Pin::new(&mut self.rx).poll_next(cx);
        if let Poll::Ready(None) = r {
            // Finished normally: nothing to cancel.
            self.cancel = None;
        }
        r
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        if let Some((down, id)) = self.cancel.take() {
            self.pending.lock().remove(&id);
            let _ = down.try_send(Ok(pb::AgentDown {
                msg: Some(pb::agent_down::Msg::Cancel(pb::LogCancel {
                    request_id: id,
                })),
            }));
        }
    }
}

impl Tunnels {
    /// Streams the logs of a container on `node` through that node's tunnel.
    pub async fn logs(
        &self,
        node: &str,
        request: pb::LogsRequest,
    ) -> Result<BoxStream<'static, Chunk>, ApiError> {
        let (down, pending) = {
            let nodes = self.inner.nodes.lock();
            let conn = nodes.get(node).ok_or_else(|| {
                ApiError::Unavailable(format!("node {node:?} has no agent connected"))
            })?;
            (conn.down.clone(), conn.pending.clone())
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(64);
        pending.lock().insert(id, tx);
        let open = pb::AgentDown {
            msg: Some(pb::agent_down::Msg::Open(pb::LogOpen {
                request_id: id,
                request: Some(request),
            })),
        };
        if down.send(Ok(open)).await.is_err() {
            pending.lock().remove(&id);
            return Err(ApiError::Unavailable(format!(
                "the agent of node {node:?} disconnected"
            )));
        }
        Ok(LogStream {
            rx: ReceiverStream::new(rx),
            cancel: Some((down, id)),
            pending,
        }
        .boxed())
    }

    /// Names of the nodes whose agent is connected.
    pub fn connected(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.nodes.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// The gRPC service agents connect to; mount it next to the `Api` service.
    pub fn service(&self) -> pb::agent_tunnel_server::AgentTunnelServer<TunnelService> {
        pb::agent_tunnel_server::AgentTunnelServer::new(TunnelService {
            tunnels: self.clone(),
        })
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
    }
}

pub struct TunnelService {
    tunnels: Tunnels,
}

#[tonic::async_trait]
impl pb::agent_tunnel_server::AgentTunnel for TunnelService {
    type OpenStream = ReceiverStream<Result<pb::AgentDown, Status>>;

    async fn open(
        &self,
        request: Request<Streaming<pb::AgentUp>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let mut up = request.into_inner();
        let node = match up.message().await? {
            Some(pb::AgentUp {
                msg: Some(pb::agent_up::Msg::Hello(h)),
            }) if !h.node_name.is_empty() => h.node_name,
            _ => {
                return Err(ApiError::BadRequest(
                    "the first tunnel message must be a hello naming the node".into(),
                )
                .into())
            }
        };
        let (down_tx, down_rx) = mpsc::channel(64);
        let pending: Arc<Mutex<HashMap<u64, mpsc::Sender<Chunk>>>> = Default::default();
        let inner = self.tunnels.inner.clone();
        let session = inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        inner.nodes.lock().insert(
            node.clone(),
            Conn {
                session,
                down: down_tx,
                pending: pending.clone(),
            },
        );
        info!(node = %node, "agent tunnel connected");
        tokio::spawn(async move {
            loop {
                let msg = match up.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => {
                        warn!(node = %node, error = %e, "agent tunnel broke");
                        break;
                    }
                };
                let Some(pb::agent_up::Msg::Log(data)) = msg.msg else {
                    continue;
                };
                let tx = pending.lock().get(&data.request_id).cloned();
                let Some(tx) = tx else { continue };
                if !data.data.is_empty() && tx.send(Ok(data.data)).await.is_err() {
                    pending.lock().remove(&data.request_id);
                    continue;
                }
                if data.eof {
                    pending.lock().remove(&data.request_id);
                    if !data.error.is_empty() {
                        let _ = tx.send(Err(ApiError::Precondition(data.error))).await;
                    }
                }
            }
            // Readers of this session's logs see the stream end with an error.
            for (_, tx) in pending.lock().drain() {
                let _ = tx.try_send(Err(ApiError::Unavailable(format!(
                    "the agent of node {node:?} disconnected"
                ))));
            }
            let mut nodes = inner.nodes.lock();
            if nodes.get(&node).is_some_and(|c| c.session == session) {
                nodes.remove(&node);
            }
            info!(node = %node, "agent tunnel closed");
        });
        Ok(Response::new(ReceiverStream::new(down_rx)))
    }
}
