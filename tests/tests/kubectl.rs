//! The real kubectl drives a Corral cluster through the Kubernetes REST API: the core of the
//! workshop chapter (shared/seed/04-hola-mundo-real.md) typed as written with `kubectl`,
//! against the admin kubeconfig the control plane wrote, unchanged.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_tests::kubectl::{self, KillOnDrop, Kubectl};
use corral_tests::{corral, eventually, pods, rows, running, skip_unless_e2e, TestCluster};

const WAIT: Duration = Duration::from_secs(90);

/// Lines `kubectl get pods -w` prints until one satisfies `done`, or panics at the deadline.
fn watch_until(k: &Kubectl, args: &[&str], done: impl Fn(&str) -> bool) -> Vec<String> {
    let mut child = KillOnDrop(
        k.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kubectl -w"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let finished = done(&line);
                seen.push(line);
                if finished {
                    return seen;
                }
            }
            Err(_) => panic!(
                "kubectl {} never showed it:\n{}",
                args.join(" "),
                seen.join("\n")
            ),
        }
    }
}

async fn wait_running(client: &corral_api::Client, selector: &str, n: usize) {
    let what = format!("{n} running pods with {selector}");
    eventually(&what, WAIT, || async {
        let all = pods(client, selector).await;
        (all.len() == n && all.iter().all(running)).then_some(())
    })
    .await;
}

async fn wait_gone(client: &corral_api::Client, selector: &str) {
    eventually(&format!("no pods with {selector}"), WAIT, || async {
        pods(client, selector).await.is_empty().then_some(())
    })
    .await;
}

/// A Python with the `kubernetes` client: a venv in /var/cache (made once, from PyPI).
/// `None` skips that step locally when Python or PyPI is missing; CI must have both.
fn python_with_client() -> Option<PathBuf> {
    let venv = Path::new("/var/cache/corral-tests-pyk8s");
    let python = venv.join("bin/python");
    let has_client = |p: &Path| {
        Command::new(p)
            .args(["-c", "import kubernetes"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has_client(&python) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "kubernetes"])
                .status()
                .is_ok_and(|s| s.success());
        if !made || !has_client(&python) {
            if std::env::var_os("CI").is_some() {
                panic!("cannot make a Python venv with the kubernetes client in {venv:?}");
            }
            return None;
        }
    }
    Some(python)
}

/// A kubeconfig naming the cluster and its CA but only a bearer token as the user.
fn token_kubeconfig(admin: &Path, server: &str, token: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(admin).expect("admin kubeconfig");
    let ca = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .expect("the admin kubeconfig carries the CA")
        .trim()
        .to_string();
    let path = dir.join("token.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .expect("write kubeconfig");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_the_workshop_chapter_against_corral() {
    skip_unless_e2e!();
    let Some(bin) = kubectl::v1_32().or_else(kubectl::on_path) else {
        eprintln!("SKIPPED: kubectl is not installed");
        return;
    };
    let cluster = TestCluster::create("kubectl", 1).await;
    let s = cluster.server();
    let client = cluster.client().await;
    let admin = cluster
        .state
        .layout
        .dir
        .join("controlplane")
        .join("admin.kubeconfig");
    let k = Kubectl {
        bin,
        kubeconfig: admin.clone(),
        home: tempfile::tempdir().expect("temp dir"),
    };

    // The admin kubeconfig works as KUBECONFIG; discovery lists the kinds with short names.
    let version = k.ok(&["version"]);
    assert!(version.contains("Server Version: v1.33.0"), "{version}");
    let resources = k.ok(&["api-resources"]);
    let rs_row = resources
        .lines()
        .find(|l| l.starts_with("replicasets "))
        .unwrap_or_else(|| panic!("{resources}"));
    assert_eq!(
        rs_row.split_whitespace().collect::<Vec<_>>(),
        ["replicasets", "rs", "apps/v1", "true", "ReplicaSet"]
    );

    // A bare pod: apply, watch it start, the tables, delete.
    assert_eq!(
        k.ok(&["apply", "-f", "examples/workshop/mi-pod.yaml"])
            .trim(),
        "pod/mi-pod created"
    );
    let seen = watch_until(&k, &["get", "pods", "-w"], |l| {
        l.starts_with("mi-pod ") && l.contains(" Running ")
    });
    assert!(seen[0].starts_with("NAME "), "{seen:?}");
    let table = k.ok(&["get", "pods"]);
    assert!(
        table.starts_with(
            "NAME     READY   STATUS    RESTARTS   AGE\nmi-pod   1/1     Running   0 "
        ),
        "{table}"
    );
    let wide = k.ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            == [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED",
                "NODE",
                "READINESS",
                "GATES"
            ],
        "{wide}"
    );
    assert!(rows(&wide)[0][6].starts_with("corral-kubectl-"), "{wide}");
    let (corral_logs, _, _) = corral(&s, &["logs", "mi-pod"]);
    assert_eq!(k.ok(&["logs", "mi-pod"]), corral_logs);
    // Each line with the time it was written (the node's log copier records it), and none
    // written after a future time.
    let timed = k.ok(&["logs", "mi-pod", "--timestamps"]);
    let lines: Vec<(&str, &str)> = timed
        .lines()
        .map(|l| l.split_once(' ').unwrap_or((l, "")))
        .collect();
    assert!(!lines.is_empty(), "{timed}");
    for (time, text) in &lines {
        assert!(
            time.starts_with("20") && time.ends_with('Z') && time.contains('T'),
            "{timed}"
        );
        assert!(corral_logs.contains(text), "{timed}\n{corral_logs}");
    }
    let (future, _, shown) = k.run(&["logs", "mi-pod", "--since-time=2099-01-01T00:00:00Z"]);
    assert!(shown && future.is_empty(), "{future}");
    assert_eq!(
        k.ok(&["delete", "pod", "mi-pod"]).trim(),
        "pod \"mi-pod\" deleted"
    );
    let (out, err, _) = k.run(&["get", "pods"]);
    assert_eq!(
        (out.as_str(), err.trim()),
        ("", "No resources found in default namespace.")
    );
    let (_, err, found) = k.run(&["get", "pod", "mi-pod"]);
    assert!(!found);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): pods \"mi-pod\" not found"
    );

    // ReplicaSet: apply twice (unchanged), scale to 5, describe, delete -f.
    let rs = "examples/workshop/deploy-02/replicaSet-mi-app.yaml";
    assert_eq!(
        k.ok(&["apply", "-f", rs]).trim(),
        "replicaset.apps/mi-app created"
    );
    assert_eq!(
        k.ok(&["apply", "-f", rs]).trim(),
        "replicaset.apps/mi-app unchanged"
    );
    wait_running(&client, "app=mi-app", 3).await;
    assert_eq!(
        k.ok(&["scale", "--replicas=5", "replicaset/mi-app"]).trim(),
        "replicaset.apps/mi-app scaled"
    );
    wait_running(&client, "app=mi-app", 5).await;
    let described = k.ok(&["describe", "pod"]);
    let images = described
        .lines()
        .filter(|l| l.trim_start().starts_with("Image:"))
        .count();
    assert_eq!(images, 5, "{described}");
    eventually("get replicaset to show 5 ready", WAIT, || async {
        let r = rows(&k.ok(&["get", "replicaset"]));
        (r.len() == 1 && r[0][..4] == ["mi-app", "5", "5", "5"]).then_some(())
    })
    .await;

    // A template change is a strategic merge patch computed by kubectl (its three-way patch
    // also sets replicas back to the file's 3, as against Kubernetes).
    let v3 = "examples/workshop/deploy-03/replicaSet-mi-app.yaml";
    assert_eq!(
        k.ok(&["apply", "-f", v3]).trim(),
        "replicaset.apps/mi-app configured"
    );
    let image = k.ok(&[
        "get",
        "rs",
        "mi-app",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "fedek3/workshop-uns:v0.3.0");
    wait_running(&client, "app=mi-app", 3).await;
    assert_eq!(
        k.ok(&["delete", "-f", v3]).trim(),
        "replicaset.apps \"mi-app\" deleted"
    );
    wait_gone(&client, "app=mi-app").await;

    // Deployment, Service, Ingress: the endpoints and the ingress table.
    for (file, said) in [
        (
            "examples/workshop/deploy-05/mi-deploy.yaml",
            "deployment.apps/mi-deploy created",
        ),
        (
            "examples/workshop/deploy-05/mi-deploy-svc.yaml",
            "service/mi-deploy-svc created",
        ),
        (
            "examples/workshop/deploy-05/mi-deploy-ingress.yaml",
            "ingress.networking.k8s.io/mi-deploy-ingress created",
        ),
    ] {
        assert_eq!(k.ok(&["apply", "-f", file]).trim(), said);
    }
    wait_running(&client, "app=mi-deploy", 3).await;
    let status = k.ok(&["rollout", "status", "deployment/mi-deploy", "--timeout=90s"]);
    assert!(
        status
            .trim_end()
            .ends_with("deployment \"mi-deploy\" successfully rolled out"),
        "{status}"
    );
    // kubectl edit (EDITOR run on the YAML), sent as a strategic merge patch.
    let (out, err, edited) = k
        .command(&["edit", "deployment", "mi-deploy"])
        .env("EDITOR", "sed -i s/replicas:.3/replicas:\\ 2/")
        .output()
        .map(|o| {
            (
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
                o.status.success(),
            )
        })
        .expect("run kubectl edit");
    assert!(edited, "{out}\n{err}");
    assert_eq!(out.trim(), "deployment.apps/mi-deploy edited");
    wait_running(&client, "app=mi-deploy", 2).await;
    let ep = eventually("two endpoints", WAIT, || async {
        let ep = k.ok(&["get", "ep", "mi-deploy-svc"]);
        let r = rows(&ep);
        (r.len() == 1 && r[0][1].split(',').count() == 2).then_some(ep)
    })
    .await;
    assert!(ep.starts_with("NAME            ENDPOINTS"), "{ep}");
    let ing = rows(&k.ok(&["get", "ingress"]));
    assert_eq!(
        ing[0][..3],
        ["mi-deploy-ingress", "<none>", "mi-app.com"],
        "{ing:?}"
    );
    // rollout history and undo: a new image is revision 2; undo brings back revision 1's.
    assert_eq!(
        k.ok(&[
            "set",
            "image",
            "deployment/mi-deploy",
            "workshop-uns=fedek3/workshop-uns:v0.2.0"
        ])
        .trim(),
        "deployment.apps/mi-deploy image updated"
    );
    k.ok(&["rollout", "status", "deployment/mi-deploy", "--timeout=90s"]);
    let revisions = |k: &Kubectl| -> Vec<String> {
        rows(&k.ok(&["rollout", "history", "deployment/mi-deploy"]))
            .into_iter()
            .skip(1)
            .map(|r| r[0].clone())
            .collect()
    };
    assert_eq!(revisions(&k), ["1", "2"]);
    assert_eq!(
        k.ok(&["rollout", "undo", "deployment/mi-deploy"]).trim(),
        "deployment.apps/mi-deploy rolled back"
    );
    k.ok(&["rollout", "status", "deployment/mi-deploy", "--timeout=90s"]);
    let image = k.ok(&[
        "get",
        "deploy",
        "mi-deploy",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "fedek3/workshop-uns:v0.3.0");
    assert_eq!(revisions(&k), ["2", "3"]);
    // The chapter's imperative YAML, written by kubectl alone.
    let generated = k.ok(&[
        "create",
        "deployment",
        "mi-deploy",
        "--image=fedek3/workshop-uns:v0.2.0",
        "--replicas=3",
        "--port=80",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    for line in [
        "kind: Deployment",
        "  replicas: 3",
        "      - image: fedek3/workshop-uns:v0.2.0",
        "        - containerPort: 80",
    ] {
        assert!(generated.lines().any(|l| l == line), "{line}\n{generated}");
    }
    assert_eq!(
        k.ok(&["delete", "-f", "examples/workshop/deploy-05/"])
            .lines()
            .count(),
        3
    );
    wait_gone(&client, "app=mi-deploy").await;

    // Server-side apply creates, then applies again without a warning.
    let pod = "examples/workshop/mi-pod.yaml";
    for _ in 0..2 {
        let (out, err, applied) = k.run(&["apply", "--server-side", "-f", pod]);
        assert!(applied && err.is_empty(), "{out}\n{err}");
        assert_eq!(out.trim(), "pod/mi-pod serverside-applied");
    }
    k.ok(&["delete", "-f", pod]);
    wait_gone(&client, "app=mi-pod").await;

    // Debian's kubectl v1.20 (protobuf /openapi/v2, no OpenAPI v3) drives the same API.
    match kubectl::v1_20() {
        None => eprintln!("SKIPPED (kubectl v1.20 step): kubernetes-client is not available"),
        Some(bin) => {
            let old = Kubectl {
                bin,
                kubeconfig: admin.clone(),
                home: tempfile::tempdir().expect("temp dir"),
            };
            assert!(old.ok(&["version"]).contains("GitVersion:\"v1.33.0"));
            assert_eq!(
                old.ok(&["apply", "-f", rs]).trim(),
                "replicaset.apps/mi-app created"
            );
            assert_eq!(
                old.ok(&["apply", "-f", rs]).trim(),
                "replicaset.apps/mi-app unchanged"
            );
            wait_running(&client, "app=mi-app", 3).await;
            let wide = rows(&old.ok(&["get", "pods", "-o", "wide"]));
            assert_eq!(wide.len(), 3, "{wide:?}");
            assert!(wide.iter().all(|r| r[2] == "Running"), "{wide:?}");
            assert_eq!(
                old.ok(&["scale", "--replicas=1", "rs/mi-app"]).trim(),
                "replicaset.apps/mi-app scaled"
            );
            wait_running(&client, "app=mi-app", 1).await;
            assert_eq!(
                old.ok(&["delete", "-f", rs]).trim(),
                "replicaset.apps \"mi-app\" deleted"
            );
            wait_gone(&client, "app=mi-app").await;
        }
    }

    // An unknown field is refused by the server's strict validation.
    let bad = k.home.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n    image: busybox\n    bogus: 1\n",
    )
    .expect("write manifest");
    let (_, err, created) = k.run(&["apply", "-f", bad.to_str().expect("utf-8 path")]);
    assert!(!created);
    assert!(
        err.starts_with("Error from server (BadRequest): error when creating")
            && err.contains("unknown field")
            && err.contains("spec.containers[0].bogus"),
        "{err}"
    );

    // The Python client (HTTP/1.1): list, create, strategic merge patch, watch, delete.
    match python_with_client() {
        None => eprintln!("SKIPPED (Python client step): no python3 with the kubernetes client"),
        Some(python) => {
            let out = Command::new(python)
                .arg(corral_tests::workspace_dir().join("tests/python/k8s_client.py"))
                .env("KUBECONFIG", &admin)
                .output()
                .expect("run the Python client");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("watched ADDED DELETED"), "{text}");
        }
    }

    // A wrong bearer token is Unauthorized.
    let wrong = Kubectl {
        bin: k.bin.clone(),
        kubeconfig: token_kubeconfig(&admin, &s, "abcdef.0123456789abcdef", k.home.path()),
        home: tempfile::tempdir().expect("temp dir"),
    };
    let (_, err, allowed) = wrong.run(&["get", "pods"]);
    assert!(!allowed);
    // As against Kubernetes: a 401 on discovery is the server asking for credentials.
    assert_eq!(
        err.trim().lines().last(),
        Some("error: You must be logged in to the server (the server has asked for the client to provide credentials)"),
        "{err}"
    );
}
