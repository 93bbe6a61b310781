//! Agent tunnels: each node agent keeps one outbound bidirectional stream open
//! (`AgentTunnel.Open`); node-local requests such as logs travel down it, so nodes need no
//! inbound port, as with k3s's agent tunnel. Interactive streams (exec, attach,
//! port-forward) share it, each under its own credit both ways (`tunnel/stream.rs`); usage
//! summaries for metrics.k8s.io are one request and one answer (`tunnel/stats.rs`).

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
use tokio::sync::mpsc::error::TrySendError;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::auth::{UserInfo, MASTERS};
use crate::registry::ApiError;

mod stats;
pub(crate) mod stream;
pub use stream::{Frame, MAX_DATA};

type Chunk = Result<Vec<u8>, ApiError>;
type Down = mpsc::UnboundedSender<Result<pb::AgentDown, Status>>;
type Pending = Arc<Mutex<HashMap<u64, mpsc::Sender<Chunk>>>>;

/// Data messages an agent may send for one stream before the reader has taken them: the
/// most a stream buffers here (16 × the agent's 32 KiB reads). Credit is granted back in
/// halves of it as the reader consumes.
pub const WINDOW: u32 = 16;

/// The largest message on the tunnel: a log chunk is 32 KiB; the rest is envelope.
const MAX_TUNNEL_MESSAGE: usize = 1 << 20;

/// One connected agent.
struct Conn {
    /// Distinguishes a reconnect of the same node from the session it replaces.
    session: u64,
    /// Unbounded so that opening, cancelling and crediting a stream never wait: what it
    /// holds is bounded by the readers' own requests and consumption.
    down: Down,
    pending: Pending,
    streams: stream::Streams,
    stats: stats::Pending,
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

/// One log stream as its reader sees it: grants the agent credit as chunks are taken and
/// sends `LogCancel` when the reader goes away early.
struct LogStream {
    id: u64,
    rx: mpsc::Receiver<Chunk>,
    down: Down,
    pending: Pending,
    consumed: u32,
    finished: bool,
}

fn down_msg(msg: pb::agent_down::Msg) -> Result<pb::AgentDown, Status> {
    Ok(pb::AgentDown { msg: Some(msg) })
}

impl Stream for LogStream {
    type Item = Chunk;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        let r = self.rx.poll_recv(cx);
        match &r {
            Poll::Ready(Some(Ok(_))) => {
                self.consumed += 1;
                if self.consumed >= WINDOW / 2 {
                    let credit = pb::LogCredit {
                        request_id: self.id,
                        messages: std::mem::take(&mut self.consumed),
                    };
                    let _ = self
                        .down
                        .send(down_msg(pb::agent_down::Msg::Credit(credit)));
                }
            }
            // Finished normally: nothing to cancel.
            Poll::Ready(None) => self.finished = true,
            _ => {}
        }
        r
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        if !self.finished {
            self.pending.lock().remove(&self.id);
            let cancel = pb::LogCancel {
                request_id: self.id,
            };
            let _ = self
                .down
                .send(down_msg(pb::agent_down::Msg::Cancel(cancel)));
        }
    }
}

/// Hands one message from an agent to its stream's reader without ever waiting: a stream
/// whose reader is slow has no credit left, so its agent is not sending; an agent that sends
/// past its window loses that stream (with an error to its reader), never the tunnel.
fn deliver(node: &str, pending: &Pending, down: &Down, data: pb::LogData) {
    let id = data.request_id;
    let Some(tx) = pending.lock().get(&id).cloned() else {
        return;
    };
    let mut end = data.eof;
    let mut error = (!data.error.is_empty()).then(|| ApiError::Precondition(data.error));
    if !data.data.is_empty() {
        // One slot is kept for the closing error.
        if tx.capacity() <= 1 {
            warn!(
                node,
                request_id = id,
                "agent sent past its flow-control window; stream closed"
            );
            let _ = down.send(down_msg(pb::agent_down::Msg::Cancel(pb::LogCancel {
                request_id: id,
            })));
            end = true;
            error = Some(ApiError::Unavailable(format!(
                "the agent of node {node:?} sent past its flow-control window"
            )));
        } else if let Err(TrySendError::Closed(_)) = tx.try_send(Ok(data.data)) {
            end = true;
        }
    }
    if end {
        pending.lock().remove(&id);
        if let Some(e) = error {
            let _ = tx.try_send(Err(e));
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
        // The window's messages plus one slot for the closing error.
        let (tx, rx) = mpsc::channel(WINDOW as usize + 1);
        pending.lock().insert(id, tx);
        let open = pb::LogOpen {
            request_id: id,
            request: Some(request),
            window: WINDOW,
        };
        if down
            .send(down_msg(pb::agent_down::Msg::Open(open)))
            .is_err()
        {
            pending.lock().remove(&id);
            return Err(ApiError::Unavailable(format!(
                "the agent of node {node:?} disconnected"
            )));
        }
        Ok(LogStream {
            id,
            rx,
            down,
            pending,
            consumed: 0,
            finished: false,
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
        .max_decoding_message_size(MAX_TUNNEL_MESSAGE)
        .max_encoding_message_size(MAX_TUNNEL_MESSAGE)
    }
}

/// The node a tunnel serves: the one its identity names, never a name the message claims.
/// Only the admin (tests, a rig started with `--insecure-plaintext`) may name any node.
pub fn tunnel_node(user: Option<&UserInfo>, hello: String) -> Result<String, Status> {
    let Some(user) = user else {
        return Err(Status::unauthenticated(
            "agent tunnel: no identity; connect with the node's credentials",
        ));
    };
    match user.node_name() {
        Some(own) if own == hello => Ok(hello),
        Some(own) => Err(Status::permission_denied(format!(
            "agent tunnel: node {own:?} may not open the tunnel of node {hello:?}"
        ))),
        None if user.in_group(MASTERS) => Ok(hello),
        None => Err(Status::permission_denied(format!(
            "agent tunnel: user {:?} is not a node (certificate CN=system:node:<name>, O=system:nodes)",
            user.name
        ))),
    }
}

pub struct TunnelService {
    tunnels: Tunnels,
}

#[tonic::async_trait]
impl pb::agent_tunnel_server::AgentTunnel for TunnelService {
    type OpenStream = UnboundedReceiverStream<Result<pb::AgentDown, Status>>;

    async fn open(
        &self,
        request: Request<Streaming<pb::AgentUp>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let user = request.extensions().get::<UserInfo>().cloned();
        let mut up = request.into_inner();
        let hello = match up.message().await? {
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
        let node = tunnel_node(user.as_ref(), hello)?;
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        // Weak: a newer session of the node replaces this one by dropping its sender.
        let down_weak = down_tx.downgrade();
        let pending: Pending = Default::default();
        let streams: stream::Streams = Default::default();
        let stats_pending: stats::Pending = Default::default();
        let inner = self.tunnels.inner.clone();
        let session = inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        inner.nodes.lock().insert(
            node.clone(),
            Conn {
                session,
                down: down_tx,
                pending: pending.clone(),
                streams: streams.clone(),
                stats: stats_pending.clone(),
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
                let Some(down) = down_weak.upgrade() else {
                    break;
                };
                match msg.msg {
                    Some(pb::agent_up::Msg::Log(data)) => deliver(&node, &pending, &down, data),
                    Some(pb::agent_up::Msg::Stream(up)) => {
                        stream::deliver(&node, &streams, &down, up)
                    }
                    Some(pb::agent_up::Msg::Stats(s)) => stats::deliver(&stats_pending, s),
                    _ => {}
                }
            }
            stream::broken(&node, &streams);
            // Waiting stats requests fail now instead of at their deadline.
            stats_pending.lock().clear();
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
        Ok(Response::new(UnboundedReceiverStream::new(down_rx)))
    }
}
