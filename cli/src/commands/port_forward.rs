//! `corral port-forward POD|pod/NAME|svc/NAME|deployment/NAME [LOCAL:]REMOTE...
//! [--address 127.0.0.1]`: listens locally and forwards each accepted TCP connection over its
//! own `PortForward` gRPC stream (all on the client's one HTTP/2 connection) until Ctrl-C.

mod resolve;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use clap::Args;
use corral_api::k8s::api::core::v1::{Pod, Service};
use corral_api::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector;
use corral_api::{kinds, ListParams, ResourceInfo};
use corral_proto as pb;
use pb::stream_frame::Msg;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{errln, kind, outln, Ctx};
use crate::error::{local, Result};
use resolve::Forward;

#[derive(Debug, Args)]
pub struct PortForwardArgs {
    /// POD, pod/NAME, svc/NAME or a controller (deployment/NAME): its most active pod.
    pub target: String,
    /// `[LOCAL:]REMOTE`: LOCAL omitted is REMOTE, empty (`:REMOTE`) is any free port; REMOTE
    /// may be a port name (the pod's, or a Service's).
    #[arg(required = true)]
    pub ports: Vec<String>,
    /// Addresses to listen on (comma-separated); `localhost` is 127.0.0.1 and ::1.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    pub address: Vec<String>,
}

/// Bytes per stdin frame (the streams' 32 KiB data frames).
const FRAME: usize = 32 * 1024;

/// The pod to forward to and its forwards, from the target as kubectl resolves it.
async fn target(ctx: &Ctx, a: &PortForwardArgs) -> Result<(Pod, Vec<Forward>)> {
    let (info, name): (&ResourceInfo, &str) = match a.target.split_once('/') {
        Some((k, n)) => (kind(k)?, n),
        None => (&kinds::PODS, a.target.as_str()),
    };
    if info.plural == "pods" {
        let pod = ctx
            .client
            .get::<Pod>(&ctx.namespace, name)
            .await
            .map_err(|e| ctx.about(info, name, &e))?;
        let forwards = resolve::pod_forwards(&a.ports, &pod).map_err(local)?;
        return Ok((pod, forwards));
    }
    let obj: Value = ctx
        .client
        .get_value(info, &ctx.namespace, name)
        .await
        .map_err(|e| ctx.about(info, name, &e))?;
    let no_selector = || {
        local(format!(
            "cannot attach to {}/{name}: it selects no pods",
            info.qualified()
        ))
    };
    // A Service's selector is a plain map; a controller's a LabelSelector.
    let selector = if info.plural == "services" {
        let labels = obj
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                local(format!(
                    "invalid service '{name}': Service is defined without a selector"
                ))
            })?;
        let mut pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        pairs.sort();
        pairs.join(",")
    } else {
        let s: LabelSelector = obj
            .pointer("/spec/selector")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(no_selector)?;
        match crate::printers::format::label_selector(Some(&s)) {
            s if s == "<none>" => return Err(no_selector()),
            s => s,
        }
    };
    let (pods, _) = ctx
        .client
        .list::<Pod>(&ctx.namespace, &ListParams::labels(selector))
        .await
        .map_err(|e| ctx.err(&e))?;
    let pod = resolve::pick_pod(&pods)
        .cloned()
        .ok_or_else(|| local(format!("no pods found for {}/{name}", info.qualified())))?;
    let forwards = if info.plural == "services" {
        let svc: Service = serde_json::from_value(obj).map_err(local)?;
        resolve::service_forwards(&a.ports, &svc, &pod)
    } else {
        resolve::pod_forwards(&a.ports, &pod)
    }
    .map_err(local)?;
    Ok((pod, forwards))
}

/// `localhost` is both loopbacks, as kubectl listens on it.
fn addresses(given: &[String]) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for a in given {
        match a.as_str() {
            "localhost" => {
                out.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
                out.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
            }
            a => out.push(
                a.parse()
                    .map_err(|_| local(format!("{a} is not a valid IP")))?,
            ),
        }
    }
    Ok(out)
}

fn shown(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Listeners for one forward on every address; a free port (LOCAL 0) is chosen on the
/// first and used on the others, as kubectl does. Any address that fails is reported and
/// skipped; none at all is an error.
async fn listen(addrs: &[IpAddr], f: Forward) -> Result<(u16, Vec<TcpListener>)> {
    let mut port = f.local;
    let mut out = Vec::new();
    for ip in addrs {
        match TcpListener::bind(SocketAddr::new(*ip, port)).await {
            Ok(l) => {
                let addr = l.local_addr().map_err(local)?;
                port = addr.port();
                outln(&format!("Forwarding from {} -> {}", shown(addr), f.remote))?;
                out.push(l);
            }
            Err(e) => errln(&format!(
                "Unable to listen on port {port}: {}: {e}",
                shown(SocketAddr::new(*ip, port))
            )),
        }
    }
    if out.is_empty() {
        return Err(local(format!(
            "unable to listen on any of the requested ports: [{{{} {}}}]",
            f.local, f.remote
        )));
    }
    Ok((port, out))
}

pub async fn run(ctx: &Ctx, a: &PortForwardArgs) -> Result<()> {
    let (pod, forwards) = target(ctx, a).await?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase != "Running" {
        return Err(local(format!(
            "unable to forward port because pod is not running. Current status={phase}"
        )));
    }
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| ctx.namespace.clone());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let addrs = addresses(&a.address)?;
    let mut accepting = tokio::task::JoinSet::new();
    for f in forwards {
        let (local_port, listeners) = listen(&addrs, f).await?;
        for l in listeners {
            let client = ctx.client.clone();
            let first = pb::PortForwardRequest {
                namespace: namespace.clone(),
                pod: name.clone(),
                port: u32::from(f.remote),
            };
            accepting.spawn(async move {
                loop {
                    let conn = match l.accept().await {
                        Ok((conn, _)) => conn,
                        Err(e) => {
                            errln(&format!(
                                "error accepting a connection on port {local_port}: {e}"
                            ));
                            continue;
                        }
                    };
                    let _ = outln(&format!("Handling connection for {local_port}"));
                    let (client, first) = (client.clone(), first.clone());
                    tokio::spawn(async move {
                        if let Err(e) = forward(&client, first.clone(), conn).await {
                            errln(&format!(
                                "an error occurred forwarding {local_port} -> {}: {e}",
                                first.port
                            ));
                        }
                    });
                }
            });
        }
    }
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(local)?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    accepting.abort_all();
    Ok(())
}

/// Why one forwarded connection ended badly.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("{0}")]
    Open(#[source] corral_api::client::Error),
    /// The agent's words (refused port, pod gone), printed as they are.
    #[error("{0}")]
    Remote(String),
    #[error("reading from the local connection: {0}")]
    Local(#[source] std::io::Error),
}

/// One connection over one stream: local bytes up as `stdin`, the local EOF as
/// `stdin_eof` (the pod may still answer), `stdout` back until the stream's `end`.
async fn forward(
    client: &corral_api::Client,
    first: pb::PortForwardRequest,
    conn: TcpStream,
) -> std::result::Result<(), ForwardError> {
    let first = pb::StreamFrame {
        msg: Some(Msg::PortForward(first)),
    };
    let (tx, mut rx) = client
        .open_stream(corral_api::client::StreamKind::PortForward, first)
        .await
        .map_err(ForwardError::Open)?;
    let (mut rd, mut wr) = conn.into_split();
    let up = async {
        let mut buf = vec![0u8; FRAME];
        loop {
            let msg = match rd.read(&mut buf).await {
                Ok(0) => Msg::StdinEof(true),
                Ok(n) => Msg::Stdin(buf[..n].to_vec()),
                Err(e) => return Err(ForwardError::Local(e)),
            };
            let eof = matches!(msg, Msg::StdinEof(_));
            if tx.send(pb::StreamFrame { msg: Some(msg) }).await.is_err() || eof {
                // Keep the stream's sending side open: the answer may still come.
                return std::future::pending().await;
            }
        }
    };
    let down = async {
        loop {
            let frame = match rx.message().await {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(s) => return Err(ForwardError::Open(s.into())),
            };
            match frame.msg {
                Some(Msg::Stdout(data)) => {
                    // The local side gone: nobody reads the rest.
                    let Ok(()) = wr.write_all(&data).await else {
                        return Ok(());
                    };
                }
                Some(Msg::End(end)) if !end.error.is_empty() => {
                    return Err(ForwardError::Remote(end.error))
                }
                Some(Msg::End(_)) => return Ok(()),
                _ => {}
            }
        }
    };
    let r = tokio::select! {
        r = up => r,
        r = down => r,
    };
    let _ = wr.shutdown().await;
    r
}
