use super::*;

fn pairs(q: &str) -> Vec<(String, String)> {
    path::query_pairs(Some(q)).collect()
}

#[test]
fn an_exec_query_becomes_the_first_frame_with_every_command_argument_in_order() {
    let (first, wants) = request_of(
        true,
        "ns",
        "web",
        pairs("command=sh&command=-c&command=echo+a%26b&container=app&stdin=true&stdout=true&tty=false"),
    );
    assert_eq!(
        first.msg,
        Some(Msg::Exec(pb::ExecRequest {
            namespace: "ns".into(),
            pod: "web".into(),
            container: "app".into(),
            command: vec!["sh".into(), "-c".into(), "echo a&b".into()],
            stdin: true,
            tty: false,
            size: None,
        }))
    );
    assert!(wants.stdout && !wants.stderr);
    let (first, wants) = request_of(false, "ns", "web", pairs("stdout=1&stderr=true&tty=true"));
    assert_eq!(
        first.msg,
        Some(Msg::Attach(pb::AttachRequest {
            namespace: "ns".into(),
            pod: "web".into(),
            tty: true,
            ..Default::default()
        }))
    );
    assert!(wants.stdout && wants.stderr);
}

#[test]
fn only_pods_exec_attach_and_portforward_are_connect_requests() {
    let info = |resource: &str, name: &str, sub: &str, verb: &'static str| RequestInfo {
        verb,
        version: "v1".into(),
        namespace: "default".into(),
        resource: resource.into(),
        name: name.into(),
        subresource: sub.into(),
        ..Default::default()
    };
    let cases = [
        (info("pods", "web", "exec", "get"), true),
        (info("pods", "web", "exec", "create"), true),
        (info("pods", "web", "attach", "get"), true),
        (info("pods", "web", "portforward", "create"), true),
        (info("pods", "web", "log", "get"), false),
        (info("pods", "web", "exec", "delete"), false),
        (info("services", "web", "exec", "get"), false),
        (info("pods", "", "exec", "get"), false),
    ];
    for (info, want) in cases {
        assert_eq!(handles(&info), want, "{info:?}");
    }
}

#[test]
fn a_websocket_upgrade_needs_its_headers_and_version_13() {
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    };
    let good = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    assert!(websocket_key(&headers(&good)).is_some());
    let spdy = [
        ("connection", "Upgrade"),
        ("upgrade", "SPDY/3.1"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "x"),
    ];
    assert!(websocket_key(&headers(&spdy)).is_none());
    assert!(websocket_key(&headers(&good[..3])).is_none());
    let mut old = good;
    old[2] = ("sec-websocket-version", "8");
    assert!(websocket_key(&headers(&old)).is_none());
}
