//! The agent tunnel under load: a fake agent answers log requests through the control
//! plane, and one reader that stops reading (or an agent that ignores its credit) must not
//! hold back any other stream of the node.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::boot;
use corral_api::Client;
use corral_proto as pb;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

const CHUNKS: usize = 400;
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

/// A fake agent for node `n1`: answers each request with `CHUNKS` chunks of `CHUNK` bytes,
/// spending credit as a real agent does, except for pod `greedy`, whose data it sends
/// without waiting for credit.
async fn fake_agent(api: &Client) {
    let mut client = pb::agent_tunnel_client::AgentTunnelClient::new(api.transport());
    let (up, up_rx) = mpsc::channel(16);
    up.send(pb::AgentUp {
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
        let mut credits: HashMap<u64, Arc<Semaphore>> = HashMap::new();
        while let Ok(Some(m)) = down.message().await {
            match m.msg {
                Some(pb::agent_down::Msg::Open(open)) => {
                    let credit = Arc::new(Semaphore::new(open.window as usize));
                    credits.insert(open.request_id, credit.clone());
                    let greedy = open.request.unwrap().pod == "greedy";
                    let up = up.clone();
                    tokio::spawn(async move {
                        for i in 0..CHUNKS {
                            if !greedy {
                                credit.acquire().await.unwrap().forget();
                            }
                            let data = pb::LogData {
                                request_id: open.request_id,
                                data: vec![(i % 251) as u8; CHUNK],
                                eof: false,
                                error: String::new(),
                            };
                            let msg = pb::agent_up::Msg::Log(data);
                            if up.send(pb::AgentUp { msg: Some(msg) }).await.is_err() {
                                return;
                            }
                        }
                        let end = pb::LogData {
                            request_id: open.request_id,
                            eof: true,
                            ..Default::default()
                        };
                        let msg = pb::agent_up::Msg::Log(end);
                        let _ = up.send(pb::AgentUp { msg: Some(msg) }).await;
                    });
                }
                Some(pb::agent_down::Msg::Credit(c)) => {
                    if let Some(s) = credits.get(&c.request_id) {
                        s.add_permits(c.messages as usize);
                    }
                }
                _ => {}
            }
        }
    });
}

async fn open_logs(client: &Client, pod: &str) -> tonic::Streaming<pb::LogChunk> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let req = pb::LogsRequest {
            namespace: "default".into(),
            pod: pod.into(),
            tail_lines: -1,
            ..Default::default()
        };
        match client.raw().logs(req).await {
            Ok(r) => return r.into_inner(),
            // The fake agent's tunnel may not be registered yet.
            Err(e) if e.code() == tonic::Code::Unavailable => {
                assert!(tokio::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn a_reader_that_stops_reading_holds_back_no_other_log_stream_of_its_node() {
    let (_dir, _running, client) = boot().await;
    for pod in ["stalled", "reader", "greedy"] {
        bound_pod(&client, pod).await;
    }
    fake_agent(&client).await;

    // Never read past its first chunk: its window fills and its agent stops sending.
    let mut stalled = open_logs(&client, "stalled").await;
    stalled.next().await.unwrap().unwrap();
    // An agent that ignores its window loses that stream, with an error, not the tunnel.
    // Its reader reads only after the other stream is done, so by then it has sent it all.
    let mut greedy = open_logs(&client, "greedy").await;

    let reader = tokio::time::timeout(Duration::from_secs(30), async {
        let mut s = open_logs(&client, "reader").await;
        let mut got = 0;
        while let Some(chunk) = s.next().await {
            got += chunk.unwrap().data.len();
        }
        got
    });
    assert_eq!(
        reader
            .await
            .expect("the reader's stream stalled behind another stream"),
        CHUNKS * CHUNK
    );
    let greedy_result = tokio::time::timeout(Duration::from_secs(30), async {
        let mut got = 0;
        while let Some(chunk) = greedy.next().await {
            match chunk {
                Ok(c) => got += c.data.len(),
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    });
    match greedy_result
        .await
        .expect("the greedy stream neither ended nor failed")
    {
        Ok(got) => panic!("a stream past its window was delivered whole ({got} bytes)"),
        Err(e) => assert!(e.message().contains("flow-control window"), "{e}"),
    }
    drop(stalled);
}
