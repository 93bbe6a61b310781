//! Interactive streams through the real gRPC service and tunnel, with a fake agent: a reader
//! that stops reading one stream's output, and an agent that never takes another stream's
//! input, hold back neither the output nor the input of a third stream of the same node.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::boot;
use corral_api::client::StreamKind;
use corral_api::Client;
use corral_proto as pb;
use pb::stream_frame::Msg;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

const CHUNK: usize = 32 * 1024;

async fn bound_pod(client: &Client, name: &str) {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox:1"}]}});
    client
        .create_value(
            corral_api::kinds::by_plural("pods").unwrap(),
            "default",
            &pod,
            false,
        )
        .await
        .unwrap();
}

fn up(id: u64, msg: Msg) -> pb::AgentUp {
    pb::AgentUp {
        msg: Some(pb::agent_up::Msg::Stream(pb::StreamUp {
            request_id: id,
            frame: Some(pb::StreamFrame { msg: Some(msg) }),
        })),
    }
}

/// A fake agent for node `n1`, spending and granting credit as a real one: pod `echo` echoes
/// its stdin to stdout and ends at stdin's end; `chatty` writes 400 chunks of output; `deaf`
/// never takes its input.
async fn fake_agent(api: &Client) {
    let mut client = pb::agent_tunnel_client::AgentTunnelClient::new(api.transport());
    let (tx, up_rx) = mpsc::channel(16);
    tx.send(pb::AgentUp {
        msg: Some(pb::agent_up::Msg::Hello(pb::AgentHello {
            node_name: "n1".into(),
        })),
    })
    .await
    .unwrap();
    let mut down = client
        .open(ReceiverStream::new(up_rx))
        .await
        .unwrap()
        .into_inner();
    tokio::spawn(async move {
        let mut streams: HashMap<u64, (Arc<Semaphore>, mpsc::UnboundedSender<Msg>)> =
            HashMap::new();
        while let Ok(Some(m)) = down.message().await {
            match m.msg {
                Some(pb::agent_down::Msg::StreamOpen(open)) => {
                    let id = open.request_id;
                    let credit = Arc::new(Semaphore::new(open.window as usize));
                    let (in_tx, mut input) = mpsc::unbounded_channel();
                    streams.insert(id, (credit.clone(), in_tx));
                    let pod = match open.first.and_then(|f| f.msg) {
                        Some(Msg::Exec(r)) => r.pod,
                        other => panic!("{other:?}"),
                    };
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        match pod.as_str() {
                            "echo" => {
                                while let Some(msg) = input.recv().await {
                                    match msg {
                                        Msg::Stdin(d) => {
                                            credit.acquire().await.unwrap().forget();
                                            tx.send(up(id, Msg::Stdout(d))).await.unwrap();
                                            tx.send(up(id, Msg::Credit(1))).await.unwrap();
                                        }
                                        Msg::StdinEof(_) => break,
                                        _ => {}
                                    }
                                }
                                let end = pb::StreamEnd {
                                    exit_code: Some(0),
                                    error: String::new(),
                                };
                                let _ = tx.send(up(id, Msg::End(end))).await;
                            }
                            "chatty" => {
                                for i in 0..400 {
                                    credit.acquire().await.unwrap().forget();
                                    let d = vec![(i % 251) as u8; CHUNK];
                                    if tx.send(up(id, Msg::Stdout(d))).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            // deaf: holds its input, grants nothing.
                            _ => std::future::pending().await,
                        }
                    });
                }
                Some(pb::agent_down::Msg::StreamDown(d)) => {
                    let Some((credit, input)) = streams.get(&d.request_id) else {
                        continue;
                    };
                    match d.frame.and_then(|f| f.msg) {
                        Some(Msg::Credit(n)) => credit.add_permits(n as usize),
                        Some(msg) => {
                            let _ = input.send(msg);
                        }
                        None => {}
                    }
                }
                _ => {}
            }
        }
    });
}

fn exec(pod: &str) -> pb::StreamFrame {
    pb::StreamFrame {
        msg: Some(Msg::Exec(pb::ExecRequest {
            namespace: "default".into(),
            pod: pod.into(),
            command: vec!["cat".into()],
            stdin: true,
            ..Default::default()
        })),
    }
}

async fn open(
    client: &Client,
    pod: &str,
) -> (
    mpsc::Sender<pb::StreamFrame>,
    tonic::Streaming<pb::StreamFrame>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.open_stream(StreamKind::Exec, exec(pod)).await {
            Ok(s) => return s,
            // The fake agent's tunnel may not be registered yet.
            Err(e) if e.code() == Some(tonic::Code::Unavailable) => {
                assert!(tokio::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn a_stalled_reader_and_a_deaf_agent_hold_back_no_other_stream_in_either_direction() {
    let (_dir, _running, client) = boot().await;
    for pod in ["echo", "chatty", "deaf"] {
        bound_pod(&client, pod).await;
    }
    fake_agent(&client).await;

    // Output nobody reads past the first frame.
    let (_chatty_in, mut chatty) = open(&client, "chatty").await;
    chatty.message().await.unwrap().unwrap();
    // Input nobody takes: its sender fills up and stays full.
    let (deaf_in, _deaf) = open(&client, "deaf").await;
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let stuffing = tokio::spawn(async move {
        loop {
            let frame = pb::StreamFrame {
                msg: Some(Msg::Stdin(vec![0; CHUNK])),
            };
            if deaf_in.send(frame).await.is_err() {
                return;
            }
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    // Until the deaf stream's input is stuck: everything the flow-control windows let it
    // put in flight is in flight (with hyper's default windows, that was all of the
    // connection's, and the next stream never got a byte through).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (mut last, mut still) = (usize::MAX, 0);
    while still < 5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sent.load(Ordering::Relaxed);
        (still, last) = if now == last {
            (still + 1, now)
        } else {
            (0, now)
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deaf stream never filled"
        );
    }
    assert!(
        last * CHUNK > 512 * 1024,
        "the deaf stream took only {last} frames"
    );

    let echoed = tokio::time::timeout(Duration::from_secs(30), async {
        let (tx, mut rx) = open(&client, "echo").await;
        let writer = tokio::spawn(async move {
            for i in 0..200u32 {
                let frame = pb::StreamFrame {
                    msg: Some(Msg::Stdin(vec![(i % 251) as u8; CHUNK])),
                };
                tx.send(frame).await.unwrap();
            }
            tx.send(pb::StreamFrame {
                msg: Some(Msg::StdinEof(true)),
            })
            .await
            .unwrap();
        });
        let mut got = 0;
        let end = loop {
            match rx.message().await.unwrap().unwrap().msg {
                Some(Msg::Stdout(d)) => got += d.len(),
                Some(Msg::End(end)) => break end,
                other => panic!("{other:?}"),
            }
        };
        writer.await.unwrap();
        (got, end.exit_code)
    });
    assert_eq!(
        echoed
            .await
            .expect("the echo stream stalled behind another stream"),
        (200 * CHUNK, Some(0))
    );
    assert!(!stuffing.is_finished());
    stuffing.abort();
}
