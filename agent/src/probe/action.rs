//! One probe attempt or lifecycle hook handler: an HTTP GET (200..399 is success for a probe,
//! any response for a hook, as kubelet does), a TCP connect, or a command run inside the
//! container through containerd's task exec (exit code 0 is success).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Action;
use crate::runtime::ContainerRuntime;

/// Who runs an action: they differ in the User-Agent and in which HTTP answers pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Probe,
    Hook,
}

impl Purpose {
    fn user_agent(self) -> &'static str {
        match self {
            Purpose::Probe => "kube-probe/1.31",
            Purpose::Hook => "kube-lifecycle/1.31",
        }
    }

    /// kubelet's lifecycle hooks only fail when no HTTP answer comes back at all.
    fn accepts(self, code: u16) -> bool {
        match self {
            Purpose::Probe => (200..400).contains(&code),
            Purpose::Hook => true,
        }
    }
}

/// Runs the probe action once; `Err` carries why it failed (for the log and events).
pub async fn run_action(
    action: &Action,
    pod_ip: &str,
    container_id: &str,
    runtime: &Arc<dyn ContainerRuntime>,
    timeout: Duration,
) -> Result<(), String> {
    perform(
        action,
        pod_ip,
        container_id,
        runtime,
        timeout,
        Purpose::Probe,
    )
    .await
}

/// Runs a lifecycle hook's exec or httpGet handler once.
pub async fn run_hook_action(
    action: &Action,
    pod_ip: &str,
    container_id: &str,
    runtime: &Arc<dyn ContainerRuntime>,
    timeout: Duration,
) -> Result<(), String> {
    perform(
        action,
        pod_ip,
        container_id,
        runtime,
        timeout,
        Purpose::Hook,
    )
    .await
}

async fn perform(
    action: &Action,
    pod_ip: &str,
    container_id: &str,
    runtime: &Arc<dyn ContainerRuntime>,
    timeout: Duration,
    purpose: Purpose,
) -> Result<(), String> {
    let attempt = async {
        match action {
            Action::Http {
                host,
                port,
                path,
                scheme,
                headers,
            } => {
                if scheme != "HTTP" {
                    return Err(format!("scheme {scheme} is not supported by this agent"));
                }
                let host = host.as_deref().unwrap_or(pod_ip);
                let code = http_get(host, *port, path, headers, purpose.user_agent()).await?;
                if purpose.accepts(code) {
                    Ok(())
                } else {
                    Err(format!(
                        "GET http://{}{path}: HTTP probe failed with statuscode: {code}",
                        addr(host, *port)
                    ))
                }
            }
            Action::Tcp { host, port } => {
                let host = host.as_deref().unwrap_or(pod_ip);
                TcpStream::connect(addr(host, *port))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("dial tcp {}: {e}", addr(host, *port)))
            }
            Action::Exec { command } => match runtime.exec(container_id, command, timeout).await {
                Ok(0) => Ok(()),
                Ok(code) => Err(format!("command {command:?} exited with {code}")),
                Err(e) => Err(format!("exec {command:?}: {e}")),
            },
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs_f64())),
    }
}

fn addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    user_agent: &str,
) -> Result<u16, String> {
    let target = addr(host, port);
    let mut stream = TcpStream::connect(&target)
        .await
        .map_err(|e| format!("GET http://{target}{path}: {e}"))?;
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        req.push_str(&format!("Host: {target}\r\n"));
    }
    if !has("user-agent") {
        req.push_str(&format!("User-Agent: {user_agent}\r\n"));
    }
    if !has("accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("GET http://{target}{path}: {e}"))?;
    // Only the status line matters.
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("GET http://{target}{path}: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    status_code(&line).ok_or_else(|| format!("GET http://{target}{path}: malformed response"))
}

/// The status code of an HTTP/1.x status line.
pub(crate) fn status_code(response: &str) -> Option<u16> {
    let line = response.lines().next()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}
