//! Interactive streams on an agent's tunnel (exec, attach, port-forward): `Tunnels::stream`
//! opens one, relays the client's frames down under the agent's credit and hands the agent's
//! frames to the reader under the control plane's, so one slow stream never holds another.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use corral_proto as pb;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use pb::stream_frame::Msg;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::AbortHandle;
use tracing::warn;

use super::{down_msg, Down, Tunnels, WINDOW};
use crate::registry::ApiError;

/// The most bytes one data frame (stdin, stdout, stderr) carries, in both directions.
pub const MAX_DATA: usize = 32 * 1024;
/// The most credit one side may hold for a stream: a peer cannot make the other buffer more.
const MAX_CREDIT: usize = 1024;

pub type Frame = Result<pb::StreamFrame, ApiError>;

/// What the tunnel's reader needs to hand an agent's frame to its stream.
pub(super) struct Entry {
    tx: mpsc::Sender<Frame>,
    /// Frames the agent still accepts from this side (its `credit` frames add to it).
    credit: Arc<Semaphore>,
}

pub(super) type Streams = Arc<Mutex<HashMap<u64, Entry>>>;

/// Whether a frame spends the receiver's credit from the agent's side.
fn is_output(frame: &pb::StreamFrame) -> bool {
    matches!(frame.msg, Some(Msg::Stdout(_)) | Some(Msg::Stderr(_)))
}

fn grant(credit: &Semaphore, n: u32) {
    let room = MAX_CREDIT.saturating_sub(credit.available_permits());
    credit.add_permits((n as usize).min(room));
}

fn cancel(down: &Down, id: u64) {
    let cancel = pb::LogCancel { request_id: id };
    let _ = down.send(down_msg(pb::agent_down::Msg::Cancel(cancel)));
}

fn stream_down(id: u64, frame: pb::StreamFrame) -> Result<pb::AgentDown, tonic::Status> {
    down_msg(pb::agent_down::Msg::StreamDown(pb::StreamDown {
        request_id: id,
        frame: Some(frame),
    }))
}

/// Hands one frame from an agent to its stream without ever waiting: a credit frame adds to
/// what the relay may send down; output past the window closes that stream (with an error to
/// its reader), never the tunnel; `end` closes it.
pub(super) fn deliver(node: &str, streams: &Streams, down: &Down, up: pb::StreamUp) {
    let id = up.request_id;
    let Some(frame) = up.frame else { return };
    let (tx, credit) = match streams.lock().get(&id) {
        Some(e) => (e.tx.clone(), e.credit.clone()),
        None => return,
    };
    match &frame.msg {
        Some(Msg::Credit(n)) => grant(&credit, *n),
        Some(Msg::End(_)) => {
            streams.lock().remove(&id);
            credit.close();
            let _ = tx.try_send(Ok(frame));
        }
        _ if is_output(&frame) => {
            // One slot is kept for the closing frame.
            if tx.capacity() <= 1 {
                warn!(
                    node,
                    request_id = id,
                    "agent sent past a stream's flow-control window; stream closed"
                );
                streams.lock().remove(&id);
                credit.close();
                cancel(down, id);
                let _ = tx.try_send(Err(ApiError::Unavailable(format!(
                    "the agent of node {node:?} sent past its flow-control window"
                ))));
            } else if let Err(TrySendError::Closed(_)) = tx.try_send(Ok(frame)) {
                streams.lock().remove(&id);
                credit.close();
            }
        }
        // Nothing else travels up.
        _ => {}
    }
}

/// Ends every stream of a tunnel that broke, with an error to each reader.
pub(super) fn broken(node: &str, streams: &Streams) {
    for (_, e) in streams.lock().drain() {
        e.credit.close();
        let _ = e.tx.try_send(Err(ApiError::Unavailable(format!(
            "the agent of node {node:?} disconnected"
        ))));
    }
}

/// One stream as its reader sees it: grants the agent credit as output frames are taken,
/// and cancels the stream on the agent when dropped before its end.
struct FrameStream {
    id: u64,
    rx: mpsc::Receiver<Frame>,
    down: Down,
    streams: Streams,
    relay: AbortHandle,
    consumed: u32,
    finished: bool,
}

impl Stream for FrameStream {
    type Item = Frame;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let r = self.rx.poll_recv(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) if is_output(f) => {
                self.consumed += 1;
                if self.consumed >= WINDOW / 2 {
                    let n = std::mem::take(&mut self.consumed);
                    let credit = pb::StreamFrame {
                        msg: Some(Msg::Credit(n)),
                    };
                    let _ = self.down.send(stream_down(self.id, credit));
                }
            }
            Poll::Ready(Some(Ok(_))) | Poll::Ready(Some(Err(_))) => self.finished = true,
            Poll::Ready(None) => self.finished = true,
            Poll::Pending => {}
        }
        r
    }
}

impl Drop for FrameStream {
    fn drop(&mut self) {
        self.relay.abort();
        if !self.finished {
            if let Some(e) = self.streams.lock().remove(&self.id) {
                e.credit.close();
            }
            cancel(&self.down, self.id);
        }
    }
}

/// Sends the client's frames down, each spending one credit the agent granted (`credit`
/// frames from the client are dropped: the client's own leg has HTTP/2's flow control).
/// Ends when the client stops sending, the stream ends or the tunnel goes.
async fn relay(
    id: u64,
    mut from_client: mpsc::Receiver<pb::StreamFrame>,
    credit: Arc<Semaphore>,
    down: Down,
) {
    while let Some(frame) = from_client.recv().await {
        if matches!(frame.msg, Some(Msg::Credit(_)) | None) {
            continue;
        }
        match credit.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return,
        }
        if down.send(stream_down(id, frame)).is_err() {
            return;
        }
    }
}

impl Tunnels {
    /// Opens an interactive stream on `node` whose request is `first` (exec, attach or
    /// port_forward). Frames sent into the returned sender go to the agent (a closed sender
    /// is not a cancel: the client may stop sending and still read); the stream yields the
    /// agent's frames, its last an `end` (or an error when the tunnel broke), and dropping it
    /// early cancels the stream on the agent.
    pub async fn stream(
        &self,
        node: &str,
        first: pb::StreamFrame,
    ) -> Result<(mpsc::Sender<pb::StreamFrame>, BoxStream<'static, Frame>), ApiError> {
        let (down, streams) = {
            let nodes = self.inner.nodes.lock();
            let conn = nodes.get(node).ok_or_else(|| {
                ApiError::Unavailable(format!("node {node:?} has no agent connected"))
            })?;
            (conn.down.clone(), conn.streams.clone())
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        // The window's frames plus one slot for the closing frame.
        let (tx, rx) = mpsc::channel(WINDOW as usize + 1);
        let credit = Arc::new(Semaphore::new(WINDOW as usize));
        streams.lock().insert(
            id,
            Entry {
                tx,
                credit: credit.clone(),
            },
        );
        let open = pb::StreamOpen {
            request_id: id,
            first: Some(first),
            window: WINDOW,
        };
        if down
            .send(down_msg(pb::agent_down::Msg::StreamOpen(open)))
            .is_err()
        {
            streams.lock().remove(&id);
            return Err(ApiError::Unavailable(format!(
                "the agent of node {node:?} disconnected"
            )));
        }
        let (to_agent, from_client) = mpsc::channel(WINDOW as usize);
        let relay = tokio::spawn(relay(id, from_client, credit, down.clone())).abort_handle();
        let stream = FrameStream {
            id,
            rx,
            down,
            streams,
            relay,
            consumed: 0,
            finished: false,
        };
        Ok((to_agent, stream.boxed()))
    }
}

#[cfg(test)]
mod tests;
