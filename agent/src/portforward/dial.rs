//! Dials a port on 127.0.0.1 inside a pod's network namespace, as CRI's port-forward does:
//! a dedicated thread enters the namespace (setns only moves the calling thread), creates
//! and connects the socket there, and hands it to tokio; the thread then ends.

use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;

/// Where to dial: the pod's own namespace, or the node's for a hostNetwork pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    Host,
    Path(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("opening network namespace {path:?}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("entering network namespace {path:?}: {source}")]
    Enter {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    /// Both loopback addresses refused or failed, in containerd's words.
    #[error("failed to connect to localhost:{port} inside namespace {path:?}, IPv4: dial tcp4 127.0.0.1:{port}: connect: {} IPv6 dial tcp6 [::1]:{port}: connect: {}", go_error(.v4), go_error(.v6))]
    Connect {
        port: u16,
        path: String,
        v4: std::io::Error,
        v6: std::io::Error,
    },
    #[error("the dialing thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl DialError {
    /// True when nothing listens on the port (ECONNREFUSED on IPv4).
    pub fn refused(&self) -> bool {
        matches!(self, DialError::Connect { v4, .. } if v4.kind() == std::io::ErrorKind::ConnectionRefused)
    }
}

/// An OS error as Go prints it: `connection refused`, lower case, no errno suffix.
fn go_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let text = nix::errno::Errno::from_raw(code).desc();
            let mut chars = text.chars();
            match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => String::new(),
            }
        }
        None => e.to_string(),
    }
}

/// Connects to `port` on the namespace's loopback (127.0.0.1, then [::1]) within `timeout`.
pub async fn dial(
    netns: &Netns,
    port: u16,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, DialError> {
    let (tx, rx) = oneshot::channel();
    let netns = netns.clone();
    std::thread::Builder::new()
        .name("netns-dial".into())
        .spawn(move || {
            let _ = tx.send(dial_here(&netns, port, timeout));
        })
        .map_err(DialError::Thread)?;
    let stream = rx
        .await
        .map_err(|_| DialError::Thread(std::io::Error::other("ended without an answer")))??;
    stream.set_nonblocking(true).map_err(DialError::Thread)?;
    tokio::net::TcpStream::from_std(stream).map_err(DialError::Thread)
}

/// On the dialing thread: enter the namespace, then connect. The thread is never reused, so
/// entering without coming back is safe.
fn dial_here(netns: &Netns, port: u16, timeout: Duration) -> Result<TcpStream, DialError> {
    let path = match netns {
        Netns::Host => "host".to_string(),
        Netns::Path(p) => {
            enter(p)?;
            p.display().to_string()
        }
    };
    let v4 = match TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout) {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    match TcpStream::connect_timeout(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)), timeout) {
        Ok(s) => Ok(s),
        Err(v6) => Err(DialError::Connect { port, path, v4, v6 }),
    }
}

fn enter(path: &Path) -> Result<(), DialError> {
    let file = std::fs::File::open(path).map_err(|source| DialError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|source| {
        DialError::Enter {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_host_dial_reaches_a_loopback_listener_and_a_closed_port_is_refused() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"hi").await.unwrap();
        });
        let mut s = dial(&Netns::Host, port, Duration::from_secs(2))
            .await
            .unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        server.await.unwrap();

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let e = dial(&Netns::Host, port, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.refused(), "{e}");
        assert!(
            e.to_string().contains(&format!(
                "dial tcp4 127.0.0.1:{port}: connect: connection refused"
            )),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_missing_namespace_is_an_error_naming_it() {
        let e = dial(
            &Netns::Path("/nonexistent/corral-netns".into()),
            80,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, DialError::Open { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/corral-netns"), "{e}");
    }

    /// A listener on 127.0.0.1 inside a fresh namespace is reached only through it: the
    /// host's loopback has no such port.
    #[tokio::test]
    async fn a_namespace_dial_reaches_a_loopback_only_listener_inside_it() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        crate::network::create_netns(&path).unwrap();
        struct Cleanup(PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = crate::network::delete_netns(&self.0);
            }
        }
        let _cleanup = Cleanup(path.clone());
        let p = path.clone();
        let listener = std::thread::spawn(move || {
            enter(&p).unwrap();
            std::net::TcpListener::bind("127.0.0.1:0").unwrap()
        })
        .join()
        .unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::Write;
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"inside").unwrap();
        });
        let mut s = dial(&Netns::Path(path.clone()), port, Duration::from_secs(2))
            .await
            .unwrap();
        let mut buf = [0u8; 6];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"inside");
        server.join().unwrap();
        let e = dial(&Netns::Path(path), port, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.refused(), "the listener is gone: {e}");
    }
}
