use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::tunnel::Conn;

type DownRx = UnboundedReceiver<Result<pb::AgentDown, tonic::Status>>;

/// Tunnels with node `n1` connected to nothing but the returned receiver of its down messages.
fn connected() -> (Tunnels, DownRx, Streams, Down) {
    let tunnels = Tunnels::default();
    let (down, rx) = mpsc::unbounded_channel();
    let streams: Streams = Default::default();
    tunnels.inner.nodes.lock().insert(
        "n1".into(),
        Conn {
            session: 1,
            down: down.clone(),
            pending: Default::default(),
            streams: streams.clone(),
            stats: Default::default(),
        },
    );
    (tunnels, rx, streams, down)
}

fn exec_frame() -> pb::StreamFrame {
    pb::StreamFrame {
        msg: Some(Msg::Exec(pb::ExecRequest {
            pod: "p".into(),
            command: vec!["cat".into()],
            ..Default::default()
        })),
    }
}

fn frame(msg: Msg) -> pb::StreamFrame {
    pb::StreamFrame { msg: Some(msg) }
}

fn up(id: u64, msg: Msg) -> pb::StreamUp {
    pb::StreamUp {
        request_id: id,
        frame: Some(frame(msg)),
    }
}

/// The request ids of the streams opened so far, in order, with every other message.
fn drain(rx: &mut DownRx) -> Vec<pb::agent_down::Msg> {
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        out.push(m.unwrap().msg.unwrap());
    }
    out
}

fn opened(msgs: &[pb::agent_down::Msg]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            pb::agent_down::Msg::StreamOpen(o) => Some(o.request_id),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_reader_that_stops_reading_holds_back_no_other_streams_output() {
    let (tunnels, mut rx, streams, down) = connected();
    let (_a_in, mut a) = tunnels.stream("n1", exec_frame()).await.unwrap();
    let (_b_in, mut b) = tunnels.stream("n1", exec_frame()).await.unwrap();
    let ids = opened(&drain(&mut rx));
    let (ida, idb) = (ids[0], ids[1]);
    // A's reader never reads: its agent may send its whole window, and the tunnel's reader
    // (this thread, calling deliver) never waits for it.
    for _ in 0..WINDOW {
        deliver("n1", &streams, &down, up(ida, Msg::Stdout(vec![1; 10])));
    }
    for i in 0..100u8 {
        deliver("n1", &streams, &down, up(idb, Msg::Stdout(vec![i])));
        let f = b.next().await.unwrap().unwrap();
        assert_eq!(f.msg, Some(Msg::Stdout(vec![i])));
    }
    // B's reader granted credit back as it read, A's none.
    let credits: Vec<(u64, u32)> = drain(&mut rx)
        .into_iter()
        .filter_map(|m| match m {
            pb::agent_down::Msg::StreamDown(d) => match d.frame.unwrap().msg {
                Some(Msg::Credit(n)) => Some((d.request_id, n)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(credits.iter().all(|(id, _)| *id == idb), "{credits:?}");
    assert_eq!(credits.iter().map(|(_, n)| n).sum::<u32>(), 96);
    // A sending past its window loses A only, with an error to A's reader.
    deliver("n1", &streams, &down, up(ida, Msg::Stdout(vec![2])));
    for _ in 0..WINDOW {
        a.next().await.unwrap().unwrap();
    }
    let err = a.next().await.unwrap().unwrap_err();
    assert!(err.to_string().contains("flow-control window"), "{err}");
    assert!(streams.lock().contains_key(&idb));
}

#[tokio::test]
async fn input_goes_down_only_under_the_agents_credit_and_per_stream() {
    let (tunnels, mut rx, streams, down) = connected();
    let (a_in, _a) = tunnels.stream("n1", exec_frame()).await.unwrap();
    let (b_in, _b) = tunnels.stream("n1", exec_frame()).await.unwrap();
    let ids = opened(&drain(&mut rx));
    let (ida, idb) = (ids[0], ids[1]);
    let sent = |rx: &mut DownRx| -> Vec<u64> {
        drain(rx)
            .into_iter()
            .filter_map(|m| match m {
                pb::agent_down::Msg::StreamDown(d) => Some(d.request_id),
                _ => None,
            })
            .collect()
    };
    // A's agent never consumes its input: only its window goes down, the rest waits.
    for _ in 0..WINDOW + 10 {
        a_in.send(frame(Msg::Stdin(vec![0]))).await.unwrap();
    }
    // B is not held back by A: all of B's input goes down as its agent grants credit.
    let mut b_sent = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for i in 0..200 {
        b_in.send(frame(Msg::Stdin(vec![1]))).await.unwrap();
        if i % 8 == 7 {
            deliver("n1", &streams, &down, up(idb, Msg::Credit(8)));
        }
    }
    let mut a_sent = 0;
    while b_sent < 200 - 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B's input stalled at {b_sent}"
        );
        tokio::task::yield_now().await;
        for id in sent(&mut rx) {
            if id == ida {
                a_sent += 1;
            } else {
                b_sent += 1;
            }
        }
    }
    assert_eq!(a_sent, WINDOW as usize, "A sent past the agent's credit");
    deliver("n1", &streams, &down, up(ida, Msg::Credit(10)));
    while a_sent < WINDOW as usize + 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A's credit was not used"
        );
        tokio::task::yield_now().await;
        a_sent += sent(&mut rx).iter().filter(|id| **id == ida).count();
    }
}

#[tokio::test]
async fn a_broken_tunnel_ends_every_stream_with_an_error_and_a_dropped_reader_cancels() {
    let (tunnels, mut rx, streams, _down) = connected();
    let (_a_in, mut a) = tunnels.stream("n1", exec_frame()).await.unwrap();
    let (_b_in, b) = tunnels.stream("n1", exec_frame()).await.unwrap();
    let ids = opened(&drain(&mut rx));
    drop(b);
    let cancelled: Vec<u64> = drain(&mut rx)
        .into_iter()
        .filter_map(|m| match m {
            pb::agent_down::Msg::Cancel(c) => Some(c.request_id),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled, vec![ids[1]]);
    broken("n1", &streams);
    let err = a.next().await.unwrap().unwrap_err();
    assert!(err.to_string().contains("disconnected"), "{err}");
    assert!(a.next().await.is_none());
}

#[tokio::test]
async fn the_end_frame_closes_the_stream_without_a_cancel() {
    let (tunnels, mut rx, streams, down) = connected();
    let (_in, mut s) = tunnels.stream("n1", exec_frame()).await.unwrap();
    let id = opened(&drain(&mut rx))[0];
    let end = pb::StreamEnd {
        exit_code: Some(3),
        error: String::new(),
    };
    deliver("n1", &streams, &down, up(id, Msg::Stdout(b"x".to_vec())));
    deliver("n1", &streams, &down, up(id, Msg::End(end.clone())));
    assert_eq!(
        s.next().await.unwrap().unwrap().msg,
        Some(Msg::Stdout(b"x".to_vec()))
    );
    assert_eq!(s.next().await.unwrap().unwrap().msg, Some(Msg::End(end)));
    assert!(s.next().await.is_none());
    drop(s);
    assert!(drain(&mut rx)
        .iter()
        .all(|m| !matches!(m, pb::agent_down::Msg::Cancel(_))));
}
