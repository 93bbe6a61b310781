//! One probe attempt: an HTTP GET (200..399 is success), a TCP connect, or a command run
//! inside the container through containerd's task exec (exit code 0 is success).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Action;
use crate::runtime::ContainerRuntime;

/// Runs the action once; `Err` carries why it failed (for the log and events).
pub async fn run_action(
    action: &Action,
    pod_ip: &str,
    container_id: &str,
    runtime: &Arc<dyn ContainerRuntime>,
    timeout: Duration,
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
                http_get(host, *port, path, headers).await
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
) -> Result<(), String> {
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
        req.push_str("User-Agent: kube-probe/1.31\r\n");
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
    let code = status_code(&line)
        .ok_or_else(|| format!("GET http://{target}{path}: malformed response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!(
            "GET http://{target}{path}: HTTP probe failed with statuscode: {code}"
        ))
    }
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
