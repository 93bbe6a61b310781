//! The hickory server end to end on loopback: A, SRV and NXDOMAIN from a snapshot, other
//! names forwarded to a fake upstream on 127.0.0.1 (never a real resolver), over TCP when
//! its UDP answer is truncated; PTR from the snapshot.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::net::UdpSocket;

use super::*;

/// A resolver on loopback that answers every A query with 192.0.2.1 and counts them.
async fn fake_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.metadata.recursion_available = true;
            r.add_queries(q.queries.clone());
            r.add_answer(Record::from_rdata(
                q.queries[0].name.clone(),
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
            sock.send_to(&r.to_vec().unwrap(), from).await.unwrap();
        }
    });
    (addr, task)
}

async fn ask(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    sock.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("the DNS server answers within 5 s")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    m
}

fn snapshot() -> Snapshot {
    let svc = Service {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some("mi-deploy-svc".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.43.0.20".into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                protocol: Some("TCP".into()),
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Snapshot::build("cluster.local", &[Arc::new(svc)], &BTreeMap::new())
}

#[tokio::test]
async fn the_server_answers_cluster_names_and_forwards_the_rest_to_its_upstream() {
    let (upstream, fake) = fake_upstream().await;
    let handler = Handler {
        snapshot: Arc::new(RwLock::new(Arc::new(snapshot()))),
        upstreams: vec![upstream],
        upstream_timeout: Duration::from_secs(2),
    };
    let (_server, addr) = serve("127.0.0.1:0".parse().unwrap(), handler)
        .await
        .unwrap();

    let m = ask(
        addr,
        "mi-deploy-svc.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(
        m.answers.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
        [RData::A(A(Ipv4Addr::new(10, 43, 0, 20)))]
    );

    let m = ask(
        addr,
        "_http._tcp.mi-deploy-svc.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    let RData::SRV(srv) = &m.answers[0].data else {
        panic!("an SRV answer: {m:?}");
    };
    assert_eq!(srv.port, 80);
    assert_eq!(
        srv.target.to_ascii(),
        "mi-deploy-svc.default.svc.cluster.local."
    );
    assert_eq!(m.additionals.len(), 1, "the target's A record comes along");

    let m = ask(addr, "nope.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    let m = ask(addr, "example.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        m.answers.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
        [RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))],
        "forwarded to the fake upstream"
    );
    fake.abort();
}

#[tokio::test]
async fn an_unreachable_upstream_is_servfail_not_a_hang() {
    // A bound socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let handler = Handler {
        snapshot: Arc::new(RwLock::new(Arc::new(snapshot()))),
        upstreams: vec![silent.local_addr().unwrap()],
        upstream_timeout: Duration::from_millis(200),
    };
    let (_server, addr) = serve("127.0.0.1:0".parse().unwrap(), handler)
        .await
        .unwrap();
    let m = ask(addr, "example.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

/// A resolver on loopback that answers `n` A records for any name over TCP, and only an
/// empty answer with the TC bit over UDP; counts the TCP queries.
async fn truncating_upstream(
    n: u8,
) -> (
    SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
    let answer = move |q: &Message, full: bool| {
        let mut r = Message::response(q.metadata.id, q.metadata.op_code);
        r.metadata.recursion_available = true;
        r.metadata.truncation = !full;
        r.add_queries(q.queries.clone());
        for i in 0..if full { n } else { 0 } {
            r.add_answer(Record::from_rdata(
                q.queries[0].name.clone(),
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, i))),
            ));
        }
        r.to_vec().unwrap()
    };
    let tcp_queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((len, from)) = sock.recv_from(&mut buf).await {
            let q = Message::from_vec(&buf[..len]).unwrap();
            sock.send_to(&answer(&q, false), from).await.unwrap();
        }
    });
    let counted = tcp_queries.clone();
    let tcp_task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = tcp.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let len = conn.read_u16().await.unwrap();
            let mut buf = vec![0u8; usize::from(len)];
            conn.read_exact(&mut buf).await.unwrap();
            let out = answer(&Message::from_vec(&buf).unwrap(), true);
            conn.write_u16(out.len() as u16).await.unwrap();
            conn.write_all(&out).await.unwrap();
        }
    });
    (addr, tcp_queries, vec![udp_task, tcp_task])
}

async fn ask_tcp(server: SocketAddr, name: &str) -> Message {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let bytes = q.to_vec().unwrap();
    let mut conn = tokio::net::TcpStream::connect(server).await.unwrap();
    conn.write_u16(bytes.len() as u16).await.unwrap();
    conn.write_all(&bytes).await.unwrap();
    let read = async {
        let len = conn.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        conn.read_exact(&mut buf).await.unwrap();
        buf
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the DNS server answers over TCP within 5 s");
    Message::from_vec(&buf).unwrap()
}

#[tokio::test]
async fn a_truncated_udp_answer_from_upstream_is_asked_again_over_tcp() {
    let (upstream, tcp_queries, tasks) = truncating_upstream(3).await;
    let handler = Handler {
        snapshot: Arc::new(RwLock::new(Arc::new(snapshot()))),
        upstreams: vec![upstream],
        upstream_timeout: Duration::from_secs(2),
    };
    let (_server, addr) = serve("127.0.0.1:0".parse().unwrap(), handler)
        .await
        .unwrap();
    let m = ask(addr, "small.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.truncation, "the full answer fits: {m:?}");
    assert_eq!(m.answers.len(), 3, "the TCP answer, not the truncated one");
    assert_eq!(tcp_queries.load(std::sync::atomic::Ordering::SeqCst), 1);
    tasks.iter().for_each(|t| t.abort());
}

#[tokio::test]
async fn a_client_asking_over_tcp_gets_the_whole_upstream_answer() {
    // 60 A records are over 512 bytes: only TCP carries them whole.
    let (upstream, tcp_queries, tasks) = truncating_upstream(60).await;
    let handler = Handler {
        snapshot: Arc::new(RwLock::new(Arc::new(snapshot()))),
        upstreams: vec![upstream],
        upstream_timeout: Duration::from_secs(2),
    };
    let (_server, addr) = serve("127.0.0.1:0".parse().unwrap(), handler)
        .await
        .unwrap();
    let m = ask_tcp(addr, "big.test.").await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
    // Over UDP the same answer does not fit 512 bytes: the client is told to use TCP.
    let m = ask(addr, "big.test.", RecordType::A).await;
    assert!(
        m.metadata.truncation,
        "a UDP client gets TC for an answer too big"
    );
    assert!(tcp_queries.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    tasks.iter().for_each(|t| t.abort());
}

#[tokio::test]
async fn ptr_queries_are_answered_from_the_snapshot() {
    let snapshot = snapshot().with_reverse_ranges(&["10.43.0.0/16".parse().unwrap()]);
    let handler = Handler {
        snapshot: Arc::new(RwLock::new(Arc::new(snapshot))),
        upstreams: vec![],
        upstream_timeout: Duration::from_secs(1),
    };
    let (_server, addr) = serve("127.0.0.1:0".parse().unwrap(), handler)
        .await
        .unwrap();
    let m = ask(addr, "20.0.43.10.in-addr.arpa.", RecordType::PTR).await;
    let RData::PTR(ptr) = &m.answers[0].data else {
        panic!("a PTR answer: {m:?}");
    };
    assert_eq!(ptr.0.to_ascii(), "mi-deploy-svc.default.svc.cluster.local.");
    let m = ask(addr, "21.0.43.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn upstreams_are_the_nameserver_lines_of_resolv_conf() {
    let text = "# generated\nsearch lan\nnameserver 192.0.2.53\nnameserver  2001:db8::1\nnameserver 127.0.0.53\noptions edns0\n";
    assert_eq!(
        nameservers(text, false),
        [
            "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:53".parse().unwrap(),
            "127.0.0.53:53".parse().unwrap(),
        ]
    );
    assert_eq!(nameservers(text, true).len(), 2);
}

/// The figure: queries/s and latency of the server answering a Service name from the
/// snapshot, 16 clients in a closed loop over loopback UDP for 3 s.
/// `cargo test -p corral-proxy --release --lib dns_throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark figure, not a check"]
async fn dns_throughput() {
    let handler = Handler {
        snapshot: Arc::new(RwLock::new(Arc::new(snapshot()))),
        upstreams: vec![],
        upstream_timeout: Duration::from_secs(1),
    };
    let (_server, addr) = serve("127.0.0.1:0".parse().unwrap(), handler)
        .await
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(tokio::spawn(async move {
            let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            sock.connect(addr).await.unwrap();
            let mut q = Message::query();
            q.add_query(Query::query(
                Name::from_ascii("mi-deploy-svc.default.svc.cluster.local.").unwrap(),
                RecordType::A,
            ));
            let bytes = q.to_vec().unwrap();
            let mut buf = vec![0u8; 512];
            while std::time::Instant::now() < until {
                let t = std::time::Instant::now();
                sock.send(&bytes).await.unwrap();
                let n = sock.recv(&mut buf).await.unwrap();
                h.record(t.elapsed().as_micros() as u64).unwrap();
                assert!(n > 12);
            }
            h
        }));
    }
    let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for c in clients {
        all.add(c.await.unwrap()).unwrap();
    }
    println!(
        "cluster DNS: {} queries in 3 s = {:.0} q/s; latency p50 {} us, p99 {} us, max {} us",
        all.len(),
        all.len() as f64 / 3.0,
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99),
        all.max()
    );
}
