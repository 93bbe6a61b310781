use std::time::Duration;

use super::*;

fn frame_of(m: pb::AgentUp) -> (u64, Msg) {
    match m.msg {
        Some(pb::agent_up::Msg::Stream(s)) => (s.request_id, s.frame.unwrap().msg.unwrap()),
        other => panic!("not a stream frame: {other:?}"),
    }
}

fn stdin(b: u8) -> pb::StreamFrame {
    pb::StreamFrame {
        msg: Some(Msg::Stdin(vec![b])),
    }
}

#[tokio::test]
async fn a_stream_out_of_credit_holds_back_no_other_streams_output() {
    let (up, mut up_rx) = mpsc::channel(256);
    let (a, _a_in) = open(1, up.clone(), 2);
    let (b, b_in) = open(2, up, 2);
    // A's reader is stalled: A may send two frames, then waits for credit.
    let a_task = tokio::spawn(async move {
        for i in 0..5u8 {
            a.output.stdout(vec![i]).await.unwrap();
        }
    });
    // B's credit comes back as its reader takes it.
    for i in 0..100u8 {
        b.output.stdout(vec![i]).await.unwrap();
        b_in.deliver(
            2,
            pb::StreamFrame {
                msg: Some(Msg::Credit(1)),
            },
        )
        .unwrap();
    }
    let mut a_got = 0;
    let mut b_got = 0;
    while let Ok(m) = up_rx.try_recv() {
        match frame_of(m) {
            (1, Msg::Stdout(_)) => a_got += 1,
            (2, Msg::Stdout(_)) => b_got += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((a_got, b_got), (2, 100));
    assert!(!a_task.is_finished());
    a_task.abort();
}

#[tokio::test]
async fn output_is_cut_into_frames_of_at_most_32_kib_each_spending_credit() {
    let (up, mut up_rx) = mpsc::channel(64);
    let (io, inbound) = open(1, up, 2);
    let send = tokio::spawn(async move { io.output.stderr(vec![7; MAX_DATA * 3 + 1]).await });
    let mut sizes = Vec::new();
    for _ in 0..2 {
        match frame_of(up_rx.recv().await.unwrap()) {
            (1, Msg::Stderr(d)) => sizes.push(d.len()),
            other => panic!("{other:?}"),
        }
    }
    tokio::task::yield_now().await;
    assert!(up_rx.try_recv().is_err(), "sent past its credit");
    inbound
        .deliver(
            1,
            pb::StreamFrame {
                msg: Some(Msg::Credit(5)),
            },
        )
        .unwrap();
    for _ in 0..2 {
        match frame_of(up_rx.recv().await.unwrap()) {
            (1, Msg::Stderr(d)) => sizes.push(d.len()),
            other => panic!("{other:?}"),
        }
    }
    send.await.unwrap().unwrap();
    assert_eq!(sizes, vec![MAX_DATA, MAX_DATA, MAX_DATA, 1]);
}

#[tokio::test]
async fn input_is_credited_back_as_the_handler_takes_it_and_an_overrun_is_refused() {
    let (up, mut up_rx) = mpsc::channel(64);
    // A's handler never reads its input; B's reads all of it.
    let (_a, a_in) = open(1, up.clone(), WINDOW);
    let (mut b, b_in) = open(2, up, WINDOW);
    for i in 0..WINDOW as u8 {
        a_in.deliver(1, stdin(i)).unwrap();
    }
    // Past the window and the two frames the hand-off holds, input is refused.
    let mut overrun = false;
    for i in 0..4 {
        if a_in.deliver(1, stdin(i)).is_err() {
            overrun = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(overrun, "input past the window was accepted");
    // B is unaffected: with credit coming back, 200 frames go through.
    let mut granted = WINDOW as usize;
    let mut sent = 0;
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got < 200 {
        assert!(tokio::time::Instant::now() < deadline, "B's input stalled");
        while sent < 200 && granted > 0 {
            b_in.deliver(2, stdin(sent as u8)).unwrap();
            sent += 1;
            granted -= 1;
        }
        let f = b.input.recv().await.unwrap();
        assert_eq!(f.msg, Some(Msg::Stdin(vec![got as u8])));
        got += 1;
        while let Ok(m) = up_rx.try_recv() {
            match frame_of(m) {
                (2, Msg::Credit(n)) => granted += n as usize,
                (1, Msg::Credit(_)) => panic!("A was credited for input it never took"),
                other => panic!("{other:?}"),
            }
        }
    }
}
