//! The real kubectl's `exec`, `cp`, `attach` and `port-forward` against a Corral cluster:
//! kubectl (v1.33, and v1.32 when installed) speaks WebSocket (`v5.channel.k8s.io`) and SPDY
//! (port-forward, tunnelled in a WebSocket or a plain upgrade), kubectl v1.20 SPDY for exec,
//! to the REST connect endpoints,
//! which relay onto the pod's streams through the agent's tunnel. Output, the remote exit
//! code, stdin and its end, cp both ways, attach's live output, HTTP through port-forward.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use corral_api::k8s::api::core::v1::Pod;
use corral_tests::kubectl::{self, KillOnDrop, Kubectl};
use corral_tests::{corral, eventually, skip_unless_e2e, TestCluster, CLI_TIMEOUT};

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
---
apiVersion: v1
kind: Pod
metadata:
  name: site
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: fedek3/workshop-uns:v0.2.0
    command: [sh, -c, "mkdir -p /w && echo hola > /w/index.html && exec httpd -f -p 8080 -h /w"]
"#;

/// exec's output, exit code and stdin, with one kubectl.
fn exec_steps(k: &Kubectl) {
    let who = k.bin.display().to_string();
    assert_eq!(k.ok(&["exec", "web", "--", "hostname"]), "web\n", "{who}");

    let run = k.output(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    let (out, err, code) = (
        String::from_utf8_lossy(&run.stdout).into_owned(),
        String::from_utf8_lossy(&run.stderr).into_owned(),
        run.status.code(),
    );
    assert_eq!(code, Some(3), "{who}: {out}\n{err}");
    assert_eq!(out, "out\n", "{who}");
    assert!(
        err.contains("err\n") && err.contains("command terminated with exit code 3"),
        "{who}: {err}"
    );

    // stdin with -i, and its end reaches the process (v5's close signal).
    let mut child = k
        .command(&["exec", "-i", "web", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = output_within_child(child);
    assert!(out.status.success(), "{who}: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{who}");
}

/// A spawned child's output, killed (and failed) past the CLI timeout.
fn output_within_child(child: Child) -> std::process::Output {
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CLI_TIMEOUT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("kubectl (pid {pid}) did not finish within {CLI_TIMEOUT:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_cp_and_attach_work_over_websockets() {
    skip_unless_e2e!();
    let Some(bin) = kubectl::on_path() else {
        eprintln!("SKIPPED: kubectl is not installed");
        return;
    };
    let cluster = TestCluster::create("kubectlexec", 1).await;
    let s = cluster.server();
    let client = cluster.client().await;
    let admin = cluster
        .state
        .layout
        .dir
        .join("controlplane")
        .join("admin.kubeconfig");
    let k = Kubectl::new(&bin, &admin);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("pods.yaml");
    std::fs::write(&manifest, PODS).unwrap();
    let (out, err, ok) = corral(&s, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    for pod in ["web", "ticker", "site"] {
        tokio::time::timeout(
            WAIT,
            eventually(&format!("{pod} to run"), WAIT, || async {
                client
                    .get_opt::<Pod>("default", pod)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|p| corral_tests::running(&p))
                    .then_some(())
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("{pod} never ran\n{}", cluster.logs()));
    }

    exec_steps(&k);
    if let Some(v132) = kubectl::v1_32() {
        exec_steps(&Kubectl::new(&v132, &admin));
    }
    // kubectl v1.20 speaks SPDY/3.1 for exec.
    if let Some(old) = kubectl::v1_20() {
        exec_steps(&Kubectl::new(&old, &admin));
    }

    // cp both ways (tar through exec, its stdin ended by v5's close).
    let local = dir.path().join("notes.txt");
    std::fs::write(&local, "line one\nline two\n").unwrap();
    k.ok(&["cp", local.to_str().unwrap(), "web:/tmp/notes.txt"]);
    assert_eq!(
        k.ok(&["exec", "web", "--", "cat", "/tmp/notes.txt"]),
        "line one\nline two\n"
    );
    let back = dir.path().join("back.txt");
    k.ok(&["cp", "web:/tmp/notes.txt", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "line one\nline two\n"
    );

    // attach shows the container's live output: two ticks in a row as they are printed.
    let mut attach = KillOnDrop(
        k.command(&["attach", "ticker"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = attach.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let tick = |line: &str| -> u64 {
        line.strip_prefix("tick ")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("attach printed {line:?}"))
    };
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("attach printed nothing");
    let second = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("attach stopped printing");
    assert_eq!(tick(&second), tick(&first) + 1, "{first} then {second}");
    drop(attach);

    // port-forward: SPDY tunnelled in a WebSocket (kubectl's default), then the plain SPDY
    // upgrade kubectl falls back to; two connections through each session.
    for websockets in ["true", "false"] {
        let mut cmd = k.command(&["port-forward", "-v=6", "pod/site", ":8080"]);
        cmd.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets);
        let log = dir.path().join(format!("port-forward-{websockets}.log"));
        let (forward, port) = port_forward(cmd, &log);
        for _ in 0..2 {
            let got = corral_tests::http_get(&format!("127.0.0.1:{port}"), "site").await;
            assert_eq!(
                got,
                Some((200, "hola\n".to_string())),
                "websockets={websockets}; kubectl said:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        drop(forward);
    }
}

/// A started `kubectl port-forward` and the local port it printed.
fn port_forward(mut cmd: Command, log: &Path) -> (KillOnDrop, u16) {
    let mut child = KillOnDrop(
        cmd.stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // Reads stdout to its end: a closed pipe would kill kubectl at its next line (SIGPIPE).
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    // "Forwarding from 127.0.0.1:PORT -> 8080"
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("port-forward printed nothing");
    let port = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("port-forward printed {line:?}"));
    (child, port)
}
