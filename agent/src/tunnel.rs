//! The agent's end of `AgentTunnel.Open`: one outbound stream to the control plane (nodes
//! keep no inbound port, as with k3s), carrying node-local requests such as logs. Each
//! request's data flows under its own credit, so a slow reader stalls only its own stream.
//! Interactive streams (exec, attach, port-forward) go to their handler by kind with a
//! `streams::Duplex`, under credit both ways. A stats request is answered at once from the
//! latest usage summary (`stats.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use corral_proto as pb;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::exec::ExecContext;
use crate::logs;
use crate::stats::Stats;
use crate::streams::{self, Duplex, Inbound, StreamSink};

/// Credit a request starts with when the control plane names none.
const DEFAULT_WINDOW: u32 = 16;
/// The most credit one request may hold: a control plane cannot make the agent buffer more.
const MAX_CREDIT: usize = 1024;

/// One request being answered: the task sending its data and the credit it may spend.
struct Request {
    task: JoinHandle<()>,
    credit: Arc<Semaphore>,
}

type Requests = Arc<Mutex<HashMap<u64, Request>>>;

/// One interactive stream: its handler's task and where its input goes.
struct OpenStream {
    task: JoinHandle<()>,
    inbound: Inbound,
    sink: StreamSink,
}

type Streams = Arc<Mutex<HashMap<u64, OpenStream>>>;

/// Runs the handler of a stream's kind; makes sure the stream gets its end whatever the
/// handler did.
async fn dispatch(ctx: ExecContext, first: pb::StreamFrame, io: Duplex) {
    use pb::stream_frame::Msg;
    let sink = io.output.clone();
    match first.msg {
        Some(Msg::Exec(req)) => crate::exec::exec(ctx, req, io).await,
        Some(Msg::Attach(req)) => crate::exec::attach(ctx, req, io).await,
        Some(Msg::PortForward(req)) => crate::portforward::serve(ctx.index, req, io).await,
        _ => {
            let _ = sink.fail("unsupported stream request").await;
        }
    }
    if !sink.ended() {
        let _ = sink
            .fail("the agent's handler ended without a result")
            .await;
    }
}

/// Keeps the tunnel to the control plane open, reconnecting after failures.
pub async fn run(
    api: corral_api::Client,
    server: String,
    node: String,
    ctx: ExecContext,
    usage: Stats,
) {
    let server = if server.contains("://") {
        server
    } else {
        format!("http://{server}")
    };
    let mut delay = Duration::from_millis(500);
    loop {
        let opened = std::time::Instant::now();
        match once(&api, &server, &node, &ctx, &usage).await {
            Ok(()) => info!(%server, "agent tunnel closed by the control plane; reconnecting"),
            // An API server without the tunnel service: logs are unavailable, retry slowly.
            Err(e) if e.code() == tonic::Code::Unimplemented => {
                if delay < Duration::from_secs(30) {
                    warn!(%server, "control plane does not serve AgentTunnel; logs unavailable");
                }
                delay = Duration::from_secs(30);
            }
            Err(e) => warn!(%server, error = %e, "agent tunnel failed; reconnecting"),
        }
        if opened.elapsed() > Duration::from_secs(30) {
            delay = Duration::from_millis(500);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

async fn once(
    api: &corral_api::Client,
    server: &str,
    node: &str,
    ctx: &ExecContext,
    usage: &Stats,
) -> Result<(), tonic::Status> {
    let (data_dir, index) = (&ctx.data_dir, &ctx.index);
    // The API client's connection: its TLS identity is the node's, and the tunnel is one
    // more HTTP/2 stream on it.
    let mut client = pb::agent_tunnel_client::AgentTunnelClient::new(api.transport())
        .max_decoding_message_size(1 << 20)
        .max_encoding_message_size(1 << 20);
    let (up_tx, up_rx) = mpsc::channel::<pb::AgentUp>(256);
    up_tx
        .send(pb::AgentUp {
            msg: Some(pb::agent_up::Msg::Hello(pb::AgentHello {
                node_name: node.to_string(),
            })),
        })
        .await
        .map_err(|_| tonic::Status::internal("tunnel sender closed"))?;
    let mut down = client
        .open(tokio_stream::wrappers::ReceiverStream::new(up_rx))
        .await?
        .into_inner();
    info!(%server, "agent tunnel open");
    let requests: Requests = Default::default();
    let streams: Streams = Default::default();
    let result = loop {
        let msg = match down.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        match msg.msg {
            Some(pb::agent_down::Msg::Open(open)) => {
                let id = open.request_id;
                let window = if open.window == 0 {
                    DEFAULT_WINDOW
                } else {
                    open.window
                };
                let credit = Arc::new(Semaphore::new((window as usize).min(MAX_CREDIT)));
                let (tx, rx) = mpsc::channel(4);
                let serve = logs::serve(
                    data_dir.to_path_buf(),
                    index.clone(),
                    open.request.unwrap_or_default(),
                    tx,
                );
                let serve_task = tokio::spawn(serve);
                let send = forward(id, rx, up_tx.clone(), credit.clone());
                let requests2 = requests.clone();
                let task = tokio::spawn(async move {
                    send.await;
                    serve_task.abort();
                    requests2.lock().remove(&id);
                });
                requests.lock().insert(id, Request { task, credit });
            }
            Some(pb::agent_down::Msg::Credit(c)) => {
                if let Some(r) = requests.lock().get(&c.request_id) {
                    grant(&r.credit, c.messages);
                }
            }
            Some(pb::agent_down::Msg::Cancel(c)) => {
                if let Some(r) = requests.lock().remove(&c.request_id) {
                    r.task.abort();
                }
                if let Some(s) = streams.lock().remove(&c.request_id) {
                    s.task.abort();
                }
            }
            Some(pb::agent_down::Msg::StreamOpen(open)) => {
                let id = open.request_id;
                let (io, inbound) = streams::open(id, up_tx.clone(), open.window);
                let sink = io.output.clone();
                let serve = dispatch(ctx.clone(), open.first.unwrap_or_default(), io);
                let streams2 = streams.clone();
                // Held until the entry is in the map, so a handler that ends at once still
                // removes it.
                let gate = Arc::new(tokio::sync::Notify::new());
                let gate2 = gate.clone();
                let task = tokio::spawn(async move {
                    gate2.notified().await;
                    serve.await;
                    streams2.lock().remove(&id);
                });
                streams.lock().insert(
                    id,
                    OpenStream {
                        task,
                        inbound,
                        sink,
                    },
                );
                gate.notify_one();
            }
            Some(pb::agent_down::Msg::StreamDown(d)) => {
                let id = d.request_id;
                let overrun = match (streams.lock().get(&id), d.frame) {
                    (Some(s), Some(frame)) => s.inbound.deliver(id, frame).err(),
                    _ => None,
                };
                if let Some(e) = overrun {
                    warn!(request_id = id, error = %e, "stream closed");
                    if let Some(s) = streams.lock().remove(&id) {
                        s.task.abort();
                        tokio::spawn(async move {
                            let _ = s.sink.fail(e).await;
                        });
                    }
                }
            }
            Some(pb::agent_down::Msg::Stats(req)) => {
                let answer = pb::AgentUp {
                    msg: Some(pb::agent_up::Msg::Stats(usage.answer(req.request_id))),
                };
                // Not awaited in the loop: a full up channel must not stall the tunnel's reader.
                let up = up_tx.clone();
                tokio::spawn(async move {
                    let _ = up.send(answer).await;
                });
            }
            None => {}
        }
    };
    for (_, r) in requests.lock().drain() {
        r.task.abort();
    }
    for (_, s) in streams.lock().drain() {
        s.task.abort();
    }
    result
}

/// Adds credit, never beyond [`MAX_CREDIT`] in hand.
fn grant(credit: &Semaphore, messages: u32) {
    let room = MAX_CREDIT.saturating_sub(credit.available_permits());
    credit.add_permits((messages as usize).min(room));
}

/// Sends one request's data up the tunnel, one credit per data message, then its end (with
/// the error, if it failed). Returns when done or when the tunnel is gone.
async fn forward(
    id: u64,
    mut rx: mpsc::Receiver<Result<Vec<u8>, String>>,
    up: mpsc::Sender<pb::AgentUp>,
    credit: Arc<Semaphore>,
) {
    let log = |data, eof, error| pb::AgentUp {
        msg: Some(pb::agent_up::Msg::Log(pb::LogData {
            request_id: id,
            data,
            eof,
            error,
        })),
    };
    let mut error = String::new();
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Ok(data) => {
                match credit.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return,
                }
                if up.send(log(data, false, String::new())).await.is_err() {
                    return;
                }
            }
            Err(e) => error = e,
        }
    }
    let _ = up.send(log(Vec::new(), true, error)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_of(m: pb::AgentUp) -> (Vec<u8>, bool) {
        match m.msg {
            Some(pb::agent_up::Msg::Log(d)) => (d.data, d.eof),
            other => panic!("not log data: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_request_sends_only_as_many_messages_as_it_has_credit_for() {
        let (tx, rx) = mpsc::channel(64);
        let (up_tx, mut up_rx) = mpsc::channel(64);
        let credit = Arc::new(Semaphore::new(2));
        let task = tokio::spawn(forward(7, rx, up_tx, credit.clone()));
        for i in 0..5u8 {
            tx.send(Ok(vec![i])).await.unwrap();
        }
        drop(tx);
        assert_eq!(data_of(up_rx.recv().await.unwrap()), (vec![0], false));
        assert_eq!(data_of(up_rx.recv().await.unwrap()), (vec![1], false));
        // Out of credit: nothing more until some is granted.
        tokio::task::yield_now().await;
        assert!(up_rx.try_recv().is_err(), "sent past its credit");
        grant(&credit, 3);
        for i in 2..5u8 {
            assert_eq!(data_of(up_rx.recv().await.unwrap()), (vec![i], false));
        }
        // The end needs no credit.
        assert_eq!(data_of(up_rx.recv().await.unwrap()), (vec![], true));
        task.await.unwrap();
    }

    #[test]
    fn credit_in_hand_is_capped() {
        let s = Semaphore::new(MAX_CREDIT - 1);
        grant(&s, u32::MAX);
        assert_eq!(s.available_permits(), MAX_CREDIT);
        grant(&s, 5);
        assert_eq!(s.available_permits(), MAX_CREDIT);
    }
}
