//! `corral exec`, `attach` and `cp` on the local rig, through the agent's tunnel: exec's
//! output and exit code, stdin with -i, an interactive shell on a terminal that follows
//! resizes, cp both ways, attach's live output, 50 execs at once, kubectl's errors for a
//! missing pod or container; ignored as a figure, exec round-trip latency.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_api::client::StreamKind;
use corral_api::k8s::api::core::v1::Pod;
use corral_api::Client;
use corral_proto as pb;
use corral_tests::{
    corral, corral_command, eventually, output_within, skip_unless_e2e, TestCluster, CLI_TIMEOUT,
};
use pb::stream_frame::Msg;

const WAIT: Duration = Duration::from_secs(90);

const PODS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: fedek3/workshop-uns:v0.2.0
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: ticker
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: fedek3/workshop-uns:v0.2.0
    command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]
"#;

fn ok(server: &str, args: &[&str]) -> String {
    let (out, err, success) = corral(server, args);
    assert!(success, "corral {} failed:\n{out}\n{err}", args.join(" "));
    out
}

async fn running(client: &Client, name: &str) -> bool {
    client
        .get_opt::<Pod>("default", name)
        .await
        .ok()
        .flatten()
        .is_some_and(|p| corral_tests::running(&p))
}

async fn boot(name: &str) -> (TestCluster, String, Client, tempfile::TempDir) {
    let cluster = TestCluster::create(name, 1).await;
    let s = cluster.server();
    let client = cluster.client().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pods.yaml");
    std::fs::write(&path, PODS).unwrap();
    ok(&s, &["apply", "-f", path.to_str().unwrap()]);
    for pod in ["web", "ticker"] {
        tokio::time::timeout(
            WAIT,
            eventually(&format!("{pod} to run"), WAIT, || async {
                running(&client, pod).await.then_some(())
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("{pod} never ran\n{}", cluster.logs()));
    }
    (cluster, s, client, dir)
}

/// Runs `command` in pod `web` through the client API; returns its stdout and exit code.
async fn exec_api(client: &Client, command: &[&str]) -> (Vec<u8>, Option<i32>) {
    let first = pb::StreamFrame {
        msg: Some(Msg::Exec(pb::ExecRequest {
            namespace: "default".into(),
            pod: "web".into(),
            command: command.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        })),
    };
    let (_tx, mut rx) = client.open_stream(StreamKind::Exec, first).await.unwrap();
    let mut out = Vec::new();
    while let Some(frame) = rx.message().await.unwrap() {
        match frame.msg {
            Some(Msg::Stdout(d)) => out.extend(d),
            Some(Msg::End(end)) => {
                assert!(end.error.is_empty(), "{}", end.error);
                return (out, end.exit_code);
            }
            _ => {}
        }
    }
    panic!("the stream ended without its end frame");
}

/// Reads the terminal's output on a thread; `expect` waits for a text to appear.
struct Screen {
    rx: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Screen {
    fn new(mut master: std::fs::File) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Self {
            rx,
            seen: String::new(),
        }
    }

    /// Waits until `text` shows up after what earlier calls consumed.
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(i) = self.seen.find(text) {
                self.seen.drain(..i + text.len());
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(d) => self.seen.push_str(&String::from_utf8_lossy(&d)),
                Err(_) => panic!(
                    "{text:?} never appeared on the terminal; saw {:?}",
                    self.seen
                ),
            }
        }
    }
}

fn set_size(fd: impl AsFd, rows: u16, cols: u16) {
    let ws = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(fd, ws).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_attach_and_cp_work_as_kubectls_through_the_agent_tunnel() {
    skip_unless_e2e!();
    let (cluster, s, client, dir) = boot("exec").await;

    // Output and the pod's hostname.
    assert_eq!(ok(&s, &["exec", "web", "--", "hostname"]), "web\n");

    // The remote exit code is the CLI's, with kubectl's line.
    let out = output_within(
        corral_command(
            &s,
            &[
                "exec",
                "web",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
        ),
        CLI_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("err\n") && stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );

    // stdin only with -i, and its end reaches the process.
    let mut child = corral_command(&s, &["exec", "-i", "web", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    // An interactive shell on a terminal; a resize (SIGWINCH) reaches it.
    let pty = nix::pty::openpty(None, None).unwrap();
    set_size(&pty.slave, 30, 100);
    let slave = std::fs::File::from(pty.slave);
    let mut shell = corral_command(&s, &["exec", "-it", "web", "--", "sh"])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut screen = Screen::new(master.try_clone().unwrap());
    master.write_all(b"echo one$((1+1))\n").unwrap();
    screen.expect("one2");
    master.write_all(b"stty size\n").unwrap();
    screen.expect("30 100");
    set_size(&master, 40, 120);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shell.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .unwrap();
    // The resize travels on its own; poll until the shell sees it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        master.write_all(b"stty size\n").unwrap();
        let start = Instant::now();
        let mut got = false;
        while start.elapsed() < Duration::from_millis(500) {
            if let Ok(d) = screen.rx.recv_timeout(Duration::from_millis(100)) {
                screen.seen.push_str(&String::from_utf8_lossy(&d));
            }
            if screen.seen.contains("40 120") {
                got = true;
                break;
            }
        }
        if got {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resize never arrived: {:?}",
            screen.seen
        );
    }
    master.write_all(b"exit 0\n").unwrap();
    let status = tokio::task::spawn_blocking(move || shell.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");

    // cp both ways, a file and a directory.
    let local = dir.path().join("notes.txt");
    std::fs::write(&local, "hello from the host\n").unwrap();
    ok(&s, &["cp", local.to_str().unwrap(), "web:/tmp/notes.txt"]);
    assert_eq!(
        ok(&s, &["exec", "web", "--", "cat", "/tmp/notes.txt"]),
        "hello from the host\n"
    );
    let back = dir.path().join("back.txt");
    ok(&s, &["cp", "web:/tmp/notes.txt", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "hello from the host\n"
    );
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/a.txt"), "a\n").unwrap();
    ok(&s, &["cp", tree.to_str().unwrap(), "web:/tmp/tree"]);
    let copied = dir.path().join("copied");
    ok(&s, &["cp", "web:/tmp/tree", copied.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(copied.join("sub/a.txt")).unwrap(),
        "a\n"
    );
    let (_, err, success) = corral(&s, &["cp", "/no/such/file", "web:/tmp/x"]);
    assert!(!success);
    assert!(
        err.contains("/no/such/file doesn't exist in local filesystem"),
        "{err}"
    );

    // attach shows the container's live output.
    let mut attach = corral_command(&s, &["attach", "ticker"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(attach.stdout.take().unwrap()).lines();
    let first = tokio::task::spawn_blocking(move || {
        let a = lines.next().unwrap().unwrap();
        let b = lines.next().unwrap().unwrap();
        (a, b)
    });
    let (a, b) = tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .expect("attach printed nothing")
        .unwrap();
    assert!(
        a.starts_with("tick ") && b.starts_with("tick "),
        "{a} / {b}"
    );
    let n = |l: &str| l[5..].parse::<u64>().unwrap();
    assert_eq!(n(&b), n(&a) + 1, "{a} / {b}");
    attach.kill().unwrap();
    let _ = attach.wait();

    // 50 at once, each with its own answer.
    let runs = (0..50).map(|i| {
        let client = client.clone();
        tokio::spawn(async move {
            let (out, code) = exec_api(&client, &["echo", &format!("run {i}")]).await;
            (i, String::from_utf8(out).unwrap(), code)
        })
    });
    let all = tokio::time::timeout(WAIT, futures::future::join_all(runs))
        .await
        .expect("50 concurrent execs did not all finish");
    for r in all {
        let (i, out, code) = r.unwrap();
        assert_eq!(
            (out.as_str(), code),
            (format!("run {i}\n").as_str(), Some(0))
        );
    }

    // Clear errors for a missing pod or container.
    let (_, err, success) = corral(&s, &["exec", "nope", "--", "true"]);
    assert!(!success);
    assert!(
        err.contains("Error from server (NotFound): pods \"nope\" not found"),
        "{err}"
    );
    let (_, err, success) = corral(&s, &["exec", "web", "-c", "nope", "--", "true"]);
    assert!(!success);
    assert!(
        err.contains("container nope is not valid for pod web"),
        "{err}"
    );
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figure: exec round-trip latency"]
async fn figure_exec_round_trip_latency() {
    skip_unless_e2e!();
    let (_cluster, _s, client, _dir) = boot("execfig").await;
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for _ in 0..100 {
        let start = Instant::now();
        let (_, code) = exec_api(&client, &["true"]).await;
        assert_eq!(code, Some(0));
        h.record(start.elapsed().as_micros() as u64).unwrap();
    }
    eprintln!(
        "exec `true` round trip over 100 runs: median {:.1} ms, p99 {:.1} ms",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0
    );
}
