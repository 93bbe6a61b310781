//! Headless Chromium driven over the DevTools protocol (one WebSocket, flattened sessions):
//! launch with a private profile and every phone-home feature off, open a page, evaluate
//! JavaScript, take screenshots. The browser is killed and its profile removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Flags that keep Chromium from talking to anything but the pages a test opens: no proxy
/// lookup, no background networking (component and safe-browsing updates, variations), no
/// sync, no crash or metrics reports, no first-run or default-browser checks.
pub const QUIET_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--safebrowsing-disable-auto-update",
    "--disable-features=Translate,OptimizationHints,MediaRouter,InterestFeedContentSuggestions,CertificateTransparencyComponentUpdater,AutofillServerCommunication",
    "--password-store=basic",
    "--use-mock-keychain",
    "--hide-scrollbars",
    "--window-size=1400,900",
];

#[derive(Debug, thiserror::Error)]
pub enum ChromiumError {
    #[error("starting {bin}: {source}")]
    Start {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("chromium wrote no DevToolsActivePort in {dir} within {secs} s")]
    NoPort { dir: String, secs: u64 },
    #[error("devtools connection: {0}")]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("devtools connection to port {port}: {source}")]
    Connect {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("devtools connection closed")]
    Closed,
    #[error("devtools method {method}: {error}")]
    Method { method: String, error: Value },
    #[error("page script threw: {0}")]
    Script(Value),
    #[error("screenshot data: {0}")]
    Screenshot(#[from] base64::DecodeError),
}

/// The Chromium binary: `$CHROMIUM`, else Debian's `chromium` on the PATH.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    })
}

/// A running headless Chromium with one page attached.
pub struct Chromium {
    child: Child,
    profile: Option<tempfile::TempDir>,
    ws: WebSocketStream<TcpStream>,
    session: String,
    next_id: u64,
    /// Events read while waiting for an answer, for [`Chromium::event`].
    events: std::collections::VecDeque<Value>,
}

impl Chromium {
    /// Launches Chromium trusting only the certificates whose SPKI SHA-256 (base64) is in
    /// `spki_pins` besides the system's, and opens a blank page.
    pub async fn launch(bin: &Path, spki_pins: &[String]) -> Result<Self, ChromiumError> {
        let profile = tempfile::tempdir().map_err(|source| ChromiumError::Start {
            bin: "temp dir".into(),
            source,
        })?;
        let mut cmd = Command::new(bin);
        cmd.args(QUIET_FLAGS)
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()));
        if !spki_pins.is_empty() {
            cmd.arg(format!(
                "--ignore-certificate-errors-spki-list={}",
                spki_pins.join(",")
            ));
        }
        if nix::unistd::Uid::effective().is_root() {
            // Chromium's sandbox refuses to run as root.
            cmd.arg("--no-sandbox");
        }
        // Its own process group, so drop ends its helpers (renderer, GPU, zygote) with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let log = std::fs::File::create(profile.path().join("chromium.log")).ok();
        cmd.arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.map(Stdio::from).unwrap_or_else(Stdio::null));
        let child = cmd.spawn().map_err(|source| ChromiumError::Start {
            bin: bin.display().to_string(),
            source,
        })?;
        // From here on, a failure still kills the browser: `Starting` drops it.
        let mut starting = Starting {
            child: Some(child),
            profile: Some(profile),
        };
        let port_file = starting
            .profile
            .as_ref()
            .expect("set")
            .path()
            .join("DevToolsActivePort");
        let limit = Duration::from_secs(30);
        let deadline = Instant::now() + limit;
        let (port, path) = loop {
            let text = std::fs::read_to_string(&port_file).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                if let Ok(port) = port.trim().parse::<u16>() {
                    break (port, path.trim().to_string());
                }
            }
            if Instant::now() > deadline {
                return Err(ChromiumError::NoPort {
                    dir: port_file.display().to_string(),
                    secs: limit.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|source| ChromiumError::Connect { port, source })?;
        let (ws, _) =
            tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}{path}"), tcp).await?;
        let mut c = Chromium {
            child: starting.child.take().expect("set"),
            profile: starting.profile.take(),
            ws,
            session: String::new(),
            next_id: 0,
            events: Default::default(),
        };
        let target = c
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let attached = c
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await?;
        c.session = attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        c.call("Page.enable", json!({})).await?;
        c.call("Runtime.enable", json!({})).await?;
        Ok(c)
    }

    /// The profile directory (removed on drop); Chromium's log is `chromium.log` in it.
    pub fn profile(&self) -> &Path {
        self.profile.as_ref().expect("kept until drop").path()
    }

    /// The next message from the browser.
    async fn read(&mut self) -> Result<Value, ChromiumError> {
        loop {
            let frame = self.ws.next().await.ok_or(ChromiumError::Closed)??;
            if let Message::Text(text) = frame {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    return Ok(v);
                }
            }
        }
    }

    /// Sends one method (to the page's session once attached) and waits for its answer;
    /// the page's events in between are kept for [`Chromium::event`] (the last 1000).
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, ChromiumError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = self.session.clone().into();
        }
        self.ws.send(Message::text(msg.to_string())).await?;
        loop {
            let v = self.read().await?;
            if v.get("id").is_none() {
                if v["sessionId"].as_str() == Some(self.session.as_str()) {
                    self.events.push_back(v);
                    if self.events.len() > 1000 {
                        self.events.pop_front();
                    }
                }
                continue;
            }
            if v["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(error) = v.get("error") {
                return Err(ChromiumError::Method {
                    method: method.into(),
                    error: error.clone(),
                });
            }
            return Ok(v["result"].clone());
        }
    }

    /// The page's next event named `method` (one kept from before, else one read now), or
    /// None when none comes within `limit`.
    pub async fn event(
        &mut self,
        method: &str,
        limit: Duration,
    ) -> Result<Option<Value>, ChromiumError> {
        if let Some(at) = self.events.iter().position(|e| e["method"] == method) {
            return Ok(self.events.remove(at).map(|e| e["params"].clone()));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let v = match tokio::time::timeout_at(deadline, self.read()).await {
                Ok(v) => v?,
                Err(_) => return Ok(None),
            };
            if v["sessionId"].as_str() != Some(self.session.as_str()) {
                continue;
            }
            if v["method"] == method {
                return Ok(Some(v["params"].clone()));
            }
            self.events.push_back(v);
        }
    }

    pub async fn navigate(&mut self, url: &str) -> Result<(), ChromiumError> {
        self.call("Page.navigate", json!({"url": url})).await?;
        Ok(())
    }

    /// Evaluates an expression in the page (promises awaited) and returns its JSON value.
    pub async fn eval(&mut self, expression: &str) -> Result<Value, ChromiumError> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(ChromiumError::Script(e.clone()));
        }
        Ok(r["result"]["value"].clone())
    }

    /// A PNG of the page as it is drawn now.
    pub async fn screenshot(&mut self) -> Result<Vec<u8>, ChromiumError> {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await?;
        let data = r["data"].as_str().unwrap_or_default();
        Ok(base64::engine::general_purpose::STANDARD.decode(data)?)
    }
}

/// Kills a browser whose start failed half-way.
struct Starting {
    child: Option<Child>,
    profile: Option<tempfile::TempDir>,
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        // The profile is removed after the browser is gone (TempDir's drop).
        self.profile.take();
    }
}

/// Kills the browser's process group (the one it was started in, by its id) and reaps it.
fn kill_group(child: &mut Child) {
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}
