//! Test harness: an in-process control plane on 127.0.0.1:0 and the real `corral` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use corral_api::Client;
use corral_controlplane::{Config, Running};
use tokio::io::AsyncWriteExt;

pub const BIN: &str = env!("CARGO_BIN_EXE_corral");

pub fn manifest(name: &str) -> String {
    format!("{}/tests/manifests/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub struct Cluster {
    pub cp: Running,
    pub client: Client,
    pub dir: tempfile::TempDir,
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        &self.stdout
    }
    pub fn failed(&self) -> &str {
        assert_eq!(self.code, 1, "command should have failed: {self:?}");
        assert!(!self.stderr.contains("panicked"), "panic: {self:?}");
        &self.stderr
    }
}

impl Cluster {
    /// A control plane without controllers: tests play the controllers' part where needed.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// A control plane over TLS; the CLI's config file is the admin kubeconfig (so `corral`
    /// sends the admin's certificate), `CORRAL_SERVER` its address.
    pub async fn start_with(controllers: bool) -> Self {
        let c = Self::boot(controllers, false).await;
        corral_api::kubeconfig::write(
            &c.dir.path().join("config"),
            "test",
            &c.cp.url(),
            &c.cp.admin_credentials(),
        )
        .expect("writing the CLI config");
        c
    }

    /// A plaintext control plane (`insecure_plaintext`: every request is the admin) and no
    /// config file, for tests of the config file itself.
    pub async fn start_insecure() -> Self {
        Self::boot(false, true).await
    }

    async fn boot(controllers: bool, insecure_plaintext: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = corral_controlplane::start(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("data"),
            controllers,
            insecure_plaintext,
            ..Default::default()
        })
        .await
        .expect("control plane starts");
        let client = cp.client().await.expect("client connects");
        Self { cp, client, dir }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args)
            .env("CORRAL_SERVER", self.cp.url())
            .env("CORRAL_CONFIG", self.dir.path().join("config"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `corral ARGS` to completion (with a deadline).
    pub async fn corral(&self, args: &[&str]) -> Out {
        run(self.command(args), None).await
    }

    pub async fn corral_stdin(&self, args: &[&str], input: &str) -> Out {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped());
        run(cmd, Some(input.to_string())).await
    }

    /// Writes a manifest into the test's directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let p: PathBuf = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

pub async fn run(mut cmd: tokio::process::Command, input: Option<String>) -> Out {
    let mut child = cmd.spawn().expect("corral starts");
    if let Some(text) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
        drop(stdin);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("corral finishes within a minute")
        .expect("corral runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Polls `f` until it returns `Some`, failing after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Column values of a table line split on runs of 3+ spaces.
pub fn cells(line: &str) -> Vec<String> {
    line.split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A `corral` process left running (watch, waits), read line by line.
pub struct Proc {
    pub child: tokio::process::Child,
    pub lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Cluster {
    pub fn spawn(&self, args: &[&str]) -> Proc {
        use tokio::io::AsyncBufReadExt;
        let mut child = self.command(args).spawn().expect("corral starts");
        let stdout = child.stdout.take().unwrap();
        Proc {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
        }
    }
}

impl Proc {
    /// The next line of output, within `secs` seconds.
    pub async fn line(&mut self, secs: u64) -> String {
        tokio::time::timeout(Duration::from_secs(secs), self.lines.next_line())
            .await
            .expect("a line of output in time")
            .expect("stdout readable")
            .expect("output not closed")
    }

    /// Reads lines until one contains every needle; returns it.
    pub async fn line_with(&mut self, needles: &[&str], secs: u64) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let line = tokio::time::timeout(left, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no line with {needles:?} in time"))
                .expect("stdout readable")
                .unwrap_or_else(|| panic!("output ended before a line with {needles:?}"));
            if needles.iter().all(|n| line.contains(n)) {
                return line;
            }
        }
    }

    /// Waits for the process to exit (within `secs`) and returns its exit code.
    pub async fn exit(&mut self, secs: u64) -> i32 {
        tokio::time::timeout(Duration::from_secs(secs), self.child.wait())
            .await
            .expect("corral exits in time")
            .expect("wait works")
            .code()
            .unwrap_or(-1)
    }
}

/// Plays the node agent's part in deletion: confirms every graceful pod deletion at once.
pub fn confirm_pod_deletions(client: Client) -> tokio::task::JoinHandle<()> {
    use corral_api::k8s::api::core::v1::Pod;
    use corral_api::{DeleteOptions, ListParams, WatchEvent};
    use futures::StreamExt;
    tokio::spawn(async move {
        let (pods, rv) = client
            .list::<Pod>("", &ListParams::default())
            .await
            .unwrap();
        let confirm = |p: Pod| {
            let client = client.clone();
            async move {
                if p.metadata.deletion_timestamp.is_some() {
                    let ns = p.metadata.namespace.clone().unwrap_or_default();
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let _ = client
                        .delete::<Pod>(&ns, &name, DeleteOptions::grace(0))
                        .await;
                }
            }
        };
        for p in pods {
            confirm(p).await;
        }
        let stream = client
            .watch::<Pod>("", &ListParams::default(), rv)
            .await
            .unwrap();
        let mut stream = std::pin::pin!(stream);
        while let Some(Ok(ev)) = stream.next().await {
            if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev {
                confirm(p).await;
            }
        }
    })
}
