//! A forward end to end over the tunnel's stream ends (`streams::open`), to servers on the
//! host's loopback (a hostNetwork pod dials there): bytes both ways under credit, the
//! half-close, and the errors a client sees.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::streams;

struct Rig {
    inbound: streams::Inbound,
    up: mpsc::Receiver<pb::AgentUp>,
}

impl Rig {
    fn send(&self, msg: Msg) {
        self.inbound
            .deliver(1, pb::StreamFrame { msg: Some(msg) })
            .unwrap();
    }

    /// The next frame up, skipping the input credit the stream grants back.
    async fn next(&mut self) -> Msg {
        loop {
            let up = tokio::time::timeout(Duration::from_secs(5), self.up.recv())
                .await
                .expect("a frame in time")
                .expect("the stream is open");
            let Some(pb::agent_up::Msg::Stream(s)) = up.msg else {
                panic!("not a stream frame: {up:?}");
            };
            match s.frame.and_then(|f| f.msg) {
                Some(Msg::Credit(_)) | None => continue,
                Some(m) => return m,
            }
        }
    }
}

/// An index holding one hostNetwork pod `default/web` (uid `uid-1`): its ports are the
/// host's.
fn index() -> PodIndex {
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "default", "name": "web", "uid": "uid-1"},
        "spec": {"hostNetwork": true, "containers": []}
    }))
    .unwrap();
    let index = PodIndex::default();
    index.set(&pod, true);
    index
}

fn start(pod: &str, port: u16) -> Rig {
    let (up_tx, up) = mpsc::channel(64);
    let (duplex, inbound) = streams::open(1, up_tx, 16);
    let req = pb::PortForwardRequest {
        namespace: "default".into(),
        pod: pod.into(),
        port: u32::from(port),
    };
    tokio::spawn(serve(index(), req, duplex));
    Rig { inbound, up }
}

#[tokio::test]
async fn bytes_flow_both_ways_and_the_half_close_still_lets_the_pod_answer() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    // Reads to EOF (the client's half-close), then answers and closes.
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(format!("got {}", String::from_utf8_lossy(&got)).as_bytes())
            .await
            .unwrap();
    });
    let mut rig = start("web", port);
    rig.send(Msg::Stdin(b"hello ".to_vec()));
    rig.send(Msg::Stdin(b"pod".to_vec()));
    rig.send(Msg::StdinEof(true));
    let mut out = Vec::new();
    loop {
        match rig.next().await {
            Msg::Stdout(d) => out.extend(d),
            Msg::End(e) => {
                assert_eq!(e.error, "", "a clean end");
                break;
            }
            m => panic!("unexpected {m:?}"),
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), "got hello pod");
}

#[tokio::test]
async fn a_large_answer_arrives_whole_in_frames_under_credit() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    const SIZE: usize = 1 << 20;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(&vec![7u8; SIZE]).await.unwrap();
    });
    let mut rig = start("web", port);
    let mut total = 0;
    loop {
        match rig.next().await {
            Msg::Stdout(d) => {
                assert!(d.len() <= 32 * 1024);
                assert!(d.iter().all(|b| *b == 7));
                total += d.len();
                // The control plane grants credit back as its reader takes each frame.
                rig.send(Msg::Credit(1));
            }
            Msg::End(e) => {
                assert_eq!(e.error, "");
                break;
            }
            m => panic!("unexpected {m:?}"),
        }
    }
    assert_eq!(total, SIZE);
}

#[tokio::test]
async fn a_refused_port_ends_the_stream_with_kubelets_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut rig = start("web", port);
    let Msg::End(e) = rig.next().await else {
        panic!("an end");
    };
    assert!(
        e.error.starts_with(&format!(
            "error forwarding port {port} to pod uid-1, uid : failed to execute portforward in network namespace \"host\": failed to connect to localhost:{port} inside namespace \"host\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused"
        )),
        "{}",
        e.error
    );
}

#[tokio::test]
async fn a_pod_not_on_this_node_ends_the_stream_saying_so() {
    let mut rig = start("nope", 80);
    let Msg::End(e) = rig.next().await else {
        panic!("an end");
    };
    assert_eq!(
        e.error,
        "pod \"nope\" in namespace \"default\" is not on this node"
    );
}
