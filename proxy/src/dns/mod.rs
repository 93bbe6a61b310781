//! Node-local cluster DNS: a hickory-server `RequestHandler` answering from the proxy's
//! Service/Endpoints snapshot (`plan.rs`) and forwarding other names to the node's upstream
//! resolvers (UDP, then TCP when truncated); the listeners (UDP and TCP on one address) and the resolv.conf upstream list.

pub mod plan;

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, HeaderCounts, Message, Metadata, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use parking_lot::RwLock;

use plan::{Outcome, Qtype, Rdata, Rr, Snapshot};

/// The snapshot the handler reads, swapped whole by the proxy's sync loop on each change.
pub type SharedSnapshot = Arc<RwLock<Arc<Snapshot>>>;

/// The kube-dns Service every pod's resolv.conf points at (created by the control plane).
pub const SERVICE_NAMESPACE: &str = "kube-system";
pub const SERVICE_NAME: &str = "kube-dns";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading upstream resolvers from {path}: {source}")]
    ResolvConf {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no upstream resolver in {path}")]
    NoUpstream { path: String },
    #[error("listening for DNS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The `nameserver` lines of a resolv.conf as port-53 addresses, as CoreDNS's
/// `forward . /etc/resolv.conf` reads them; loopback ones are skipped when `skip_loopback`
/// (a node's 127.0.0.53 stub is not reachable the way pods' queries leave).
pub fn nameservers(resolv_conf: &str, skip_loopback: bool) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            IpAddr::from_str(words.next()?).ok()
        })
        .filter(|ip| !(skip_loopback && ip.is_loopback()))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The upstreams of `path` (a node's /etc/resolv.conf).
pub fn upstreams_from(path: &str) -> Result<Vec<SocketAddr>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ResolvConf {
        path: path.into(),
        source,
    })?;
    let found = nameservers(&text, false);
    if found.is_empty() {
        return Err(Error::NoUpstream { path: path.into() });
    }
    Ok(found)
}

/// Answers queries from the snapshot; forwards the rest.
pub struct Handler {
    pub snapshot: SharedSnapshot,
    pub upstreams: Vec<SocketAddr>,
    /// How long one upstream gets before the next is tried.
    pub upstream_timeout: Duration,
}

fn qtype(t: RecordType) -> Qtype {
    match t {
        RecordType::A => Qtype::A,
        RecordType::SRV => Qtype::Srv,
        RecordType::PTR => Qtype::Ptr,
        RecordType::ANY => Qtype::Any,
        _ => Qtype::Other,
    }
}

fn record(rr: &Rr) -> Option<Record> {
    let name = Name::from_ascii(format!("{}.", rr.name)).ok()?;
    let data = match &rr.data {
        Rdata::A(ip) => RData::A(A(*ip)),
        Rdata::Srv { port, target } => RData::SRV(SRV::new(
            0,
            100,
            *port,
            Name::from_ascii(format!("{target}.")).ok()?,
        )),
        Rdata::Ptr(target) => RData::PTR(PTR(Name::from_ascii(format!("{target}.")).ok()?)),
    };
    Some(Record::from_rdata(name, plan::TTL, data))
}

fn failed(meta: &Metadata, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(meta);
    metadata.response_code = code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

impl Handler {
    /// Sends `query` to each upstream in turn, the first answer winning: over UDP, and again
    /// over TCP to the same upstream when its UDP answer is truncated (RFC 7766), or over TCP
    /// alone when the client asked over TCP (as CoreDNS's `forward` keeps the client's
    /// protocol). The full answer goes back; hickory truncates it again only for a UDP
    /// client whose payload size it does not fit.
    async fn forward(&self, query: &Query, recursion_desired: bool, tcp: bool) -> Option<Message> {
        let mut msg = Message::query();
        msg.metadata.recursion_desired = recursion_desired;
        msg.add_query(query.clone());
        let bytes = msg.to_vec().ok()?;
        let id = msg.metadata.id;
        for upstream in &self.upstreams {
            let attempt = async {
                if !tcp {
                    let m = ask_udp(*upstream, &bytes, id).await?;
                    if !m.metadata.truncation {
                        return Some(m);
                    }
                    tracing::debug!(upstream = %upstream, name = %query.name, "truncated over UDP, asking over TCP");
                }
                ask_tcp(*upstream, &bytes, id).await
            };
            match tokio::time::timeout(self.upstream_timeout, attempt).await {
                Ok(Some(m)) => return Some(m),
                _ => {
                    tracing::debug!(upstream = %upstream, name = %query.name, tcp, "upstream did not answer")
                }
            }
        }
        None
    }
}

/// One query over UDP; the first datagram carrying `id` is the answer.
async fn ask_udp(upstream: SocketAddr, bytes: &[u8], id: u16) -> Option<Message> {
    let bind: SocketAddr = match upstream {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("valid address"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("valid address"),
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
    sock.connect(upstream).await.ok()?;
    sock.send(bytes).await.ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await.ok()?;
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.metadata.id == id => return Some(m),
            _ => continue,
        }
    }
}

/// One query over TCP: each message behind its two-byte length (RFC 1035 4.2.2).
async fn ask_tcp(upstream: SocketAddr, bytes: &[u8], id: u16) -> Option<Message> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(upstream).await.ok()?;
    let len = u16::try_from(bytes.len()).ok()?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    conn.write_all(&out).await.ok()?;
    loop {
        let n = conn.read_u16().await.ok()?;
        let mut buf = vec![0u8; usize::from(n)];
        conn.read_exact(&mut buf).await.ok()?;
        match Message::from_vec(&buf) {
            Ok(m) if m.metadata.id == id => return Some(m),
            _ => continue,
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let Ok(info) = request.request_info() else {
            let msg = builder.error_msg(&request.metadata, ResponseCode::FormErr);
            return response
                .send_response(msg)
                .await
                .unwrap_or_else(|_| failed(&request.metadata, ResponseCode::FormErr));
        };
        let name = info.query.name().to_string();
        let outcome = self
            .snapshot
            .read()
            .resolve(&name, qtype(info.query.query_type()));
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let sent = match outcome {
            Outcome::Answer {
                answers,
                additionals,
            } => {
                metadata.authoritative = true;
                let answers: Vec<Record> = answers.iter().filter_map(record).collect();
                let additionals: Vec<Record> = additionals.iter().filter_map(record).collect();
                let msg = builder.build(metadata, &answers, [], [], &additionals);
                response.send_response(msg).await
            }
            Outcome::NxDomain => {
                metadata.authoritative = true;
                metadata.response_code = ResponseCode::NXDomain;
                response
                    .send_response(builder.build_no_records(metadata))
                    .await
            }
            Outcome::Forward => {
                match self
                    .forward(
                        info.query.original(),
                        request.metadata.recursion_desired,
                        request.protocol() == Protocol::Tcp,
                    )
                    .await
                {
                    Some(up) => {
                        metadata.response_code = up.metadata.response_code;
                        metadata.truncation = up.metadata.truncation;
                        let msg = builder.build(
                            metadata,
                            &up.answers,
                            &up.authorities,
                            [],
                            &up.additionals,
                        );
                        response.send_response(msg).await
                    }
                    None => {
                        metadata.response_code = ResponseCode::ServFail;
                        response
                            .send_response(builder.build_no_records(metadata))
                            .await
                    }
                }
            }
        };
        sent.unwrap_or_else(|e| {
            tracing::debug!(name = %name, error = %e, "sending a DNS response failed");
            failed(&request.metadata, ResponseCode::ServFail)
        })
    }
}

/// Serves `handler` on UDP and TCP at `addr` (port 0: any, the same for both) until the
/// returned server is dropped or shut down; binding happens here, so a port conflict is the
/// caller's error. Returns the address served.
pub async fn serve(
    addr: SocketAddr,
    handler: Handler,
) -> Result<(Server<Handler>, SocketAddr), Error> {
    let bind = |source| Error::Bind { addr, source };
    let udp = tokio::net::UdpSocket::bind(addr).await.map_err(bind)?;
    let addr = udp.local_addr().map_err(bind)?;
    let tcp = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(10), 64 * 1024);
    tracing::info!(addr = %addr, "cluster DNS listening");
    Ok((server, addr))
}

#[cfg(test)]
mod tests;
