//! `pods/exec` over a WebSocket (`v5.channel.k8s.io`, as kubectl speaks it) through the real
//! listener, REST layer, gRPC stream code and tunnel, with a fake agent: stdin reaches the
//! pod, its stdout comes back on channel 1, the v5 close of stdin ends the command and its
//! exit code comes back as kubectl reads it; a missing pod is refused before the upgrade.
//! And `pods/portforward` as a plain SPDY/3.1 upgrade: a forwarded connection's bytes go to
//! the pod and back, and its error stream ends empty.

mod common;

use std::sync::Arc;
use std::time::Duration;

use corral_proto as pb;
use futures::{SinkExt, StreamExt};
use pb::stream_frame::Msg;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn up(id: u64, msg: Msg) -> pb::AgentUp {
    pb::AgentUp {
        msg: Some(pb::agent_up::Msg::Stream(pb::StreamUp {
            request_id: id,
            frame: Some(pb::StreamFrame { msg: Some(msg) }),
        })),
    }
}

/// A fake agent for node `n1` whose every exec echoes stdin to stdout and, at stdin's end,
/// exits with the number of bytes it echoed (so the test sees a non-zero exit code).
async fn fake_agent(api: &corral_api::Client) {
    let (tx, mut down) = common::tunnel::open(api, "n1").await;
    tokio::spawn(async move {
        let mut echoed = 0;
        while let Ok(Some(m)) = down.message().await {
            let Some(pb::agent_down::Msg::StreamDown(d)) = m.msg else {
                continue;
            };
            let id = d.request_id;
            match d.frame.and_then(|f| f.msg) {
                Some(Msg::Stdin(data)) => {
                    echoed += data.len() as i32;
                    tx.send(up(id, Msg::Stdout(data))).await.unwrap();
                    tx.send(up(id, Msg::Credit(1))).await.unwrap();
                }
                Some(Msg::StdinEof(_)) => {
                    let end = pb::StreamEnd {
                        exit_code: Some(echoed),
                        error: String::new(),
                    };
                    tx.send(up(id, Msg::End(end))).await.unwrap();
                }
                _ => {}
            }
        }
    });
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Opens `path` as kubectl does: TLS without ALPN (so the listener tells HTTP/1.1 by its
/// first bytes), the admin's certificate, the channel subprotocols offered newest first.
async fn dial(
    addr: std::net::SocketAddr,
    creds: &corral_api::Credentials,
    path: &str,
) -> Result<(Ws, String), WsError> {
    let mut config = (*corral_api::tls::client_config(creds, "test").unwrap()).clone();
    config.alpn_protocols = vec![];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let mut req = format!("wss://localhost{path}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "v5.channel.k8s.io, v4.channel.k8s.io".parse().unwrap(),
    );
    let (ws, resp) = tokio_tungstenite::client_async(req, tls).await?;
    let protocol = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((ws, protocol))
}

/// The next binary message, within 10 s.
async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the connection still open")
            .unwrap();
        match msg {
            Message::Binary(b) => return b.to_vec(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn exec_over_a_websocket_relays_stdin_stdout_and_the_exit_code_kubectl_reads() {
    let (_dir, running, client) = common::boot().await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox:1"}]}});
    let pods = corral_api::kinds::by_plural("pods").unwrap();
    client
        .create_value(pods, "default", &pod, false)
        .await
        .unwrap();
    fake_agent(&client).await;
    let admin = running.admin_credentials();

    let err = dial(
        running.addr,
        &admin,
        "/api/v1/namespaces/default/pods/nope/exec?command=cat&stdin=true&stdout=true",
    )
    .await
    .unwrap_err();
    match err {
        WsError::Http(resp) => assert_eq!(resp.status(), 404, "{resp:?}"),
        other => panic!("{other:?}"),
    }

    let path =
        "/api/v1/namespaces/default/pods/echo/exec?command=cat&stdin=true&stdout=true&stderr=true";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (mut ws, protocol) = loop {
        match dial(running.addr, &admin, path).await {
            Ok(c) => break c,
            // The fake agent's tunnel may not be registered yet (503 before the upgrade).
            Err(WsError::Http(resp)) if resp.status() == 503 => {
                assert!(tokio::time::Instant::now() < deadline, "{resp:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(protocol, "v5.channel.k8s.io");

    ws.send(Message::Binary(b"\x00hi\n".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(next_binary(&mut ws).await, b"\x01hi\n");
    // v5's close of stdin: the command ends, having echoed 3 bytes.
    ws.send(Message::Binary(vec![255, 0].into())).await.unwrap();
    let status = next_binary(&mut ws).await;
    assert_eq!(status[0], 3, "{status:?}");
    let status: Value = serde_json::from_slice(&status[1..]).unwrap();
    assert_eq!(
        (&status["status"], &status["reason"]),
        (&json!("Failure"), &json!("NonZeroExitCode"))
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "ExitCode", "message": "3"}])
    );
    // Then a normal close.
    let close = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap();
    match close {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn port_forward_over_spdy_relays_a_connections_bytes_and_ends_its_error_stream() {
    use corral_controlplane::rest::connect::spdy::{self, Frame, HeaderCodec, FIN};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (_dir, running, client) = common::boot().await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox:1"}]}});
    let pods = corral_api::kinds::by_plural("pods").unwrap();
    client
        .create_value(pods, "default", &pod, false)
        .await
        .unwrap();
    fake_agent(&client).await;
    let admin = running.admin_credentials();

    let config = (*corral_api::tls::client_config(&admin, "test").unwrap()).clone();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(
        b"POST /api/v1/namespaces/default/pods/echo/portforward HTTP/1.1\r\nHost: localhost\r\n\
          Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\
          Content-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("x-stream-protocol-version: portforward.k8s.io"),
        "{head}"
    );

    let mut codec = HeaderCodec::default();
    let mut syn = |id: u32, kind: &str| {
        spdy::encode(&Frame::SynStream {
            id,
            associated: 0,
            priority: 0,
            flags: 0,
            block: codec.encode(&[("streamType", kind), ("port", "80"), ("requestID", "0")]),
        })
    };
    let (error, data) = (syn(1, "error"), syn(3, "data"));
    tls.write_all(&error).await.unwrap();
    tls.write_all(&data).await.unwrap();
    let hello = Frame::Data {
        id: 3,
        flags: 0,
        data: b"hello".to_vec(),
    };
    tls.write_all(&spdy::encode(&hello)).await.unwrap();
    let eof = Frame::Data {
        id: 3,
        flags: FIN,
        data: vec![],
    };
    tls.write_all(&spdy::encode(&eof)).await.unwrap();

    // Replies to both streams, the bytes back on the data stream, both streams ended.
    let (mut buf, mut frames) = (Vec::new(), Vec::new());
    let want_end = |frames: &[Frame], id: u32| {
        frames
            .iter()
            .any(|f| matches!(f, Frame::Data { id: i, flags, .. } if *i == id && flags & FIN != 0))
    };
    while !(want_end(&frames, 1) && want_end(&frames, 3)) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no more frames; got {frames:?}"))
            .unwrap();
        assert!(n > 0, "connection closed; got {frames:?}");
        buf.extend_from_slice(&chunk[..n]);
        while let Some((f, used)) = spdy::parse(&buf).unwrap() {
            buf.drain(..used);
            frames.push(f);
        }
    }
    let replies: Vec<u32> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::SynReply { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(replies, [1, 3]);
    let data: Vec<u8> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data { id: 3, data, .. } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(data, b"hello");
    let errors: Vec<u8> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data { id: 1, data, .. } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(String::from_utf8_lossy(&errors), "");
}
