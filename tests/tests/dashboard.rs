//! The dashboard in headless Chromium against the real binaries (control plane, scheduler,
//! hollow nodes): a learner's story told by the page. A DaemonSet puts one pod on each node,
//! a Deployment scales to 5, a rolling update moves the pods from the old ReplicaSet to the
//! new, and a stopped node's pods reappear elsewhere. Each step checks the DOM and takes a
//! screenshot that must differ from the last; the delay from a write to the page drawing it
//! is printed as a FIGURE.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use corral_api::k8s::api::core::v1::{Pod, PodCondition};
use corral_api::{kinds, Client, DeleteOptions};
use corral_tests::chromium::{self, Chromium};
use corral_tests::kubectl::KillOnDrop;
use corral_tests::procs::{free_port, spawn_logged};
use corral_tests::{eventually, output_within, target_dir};
use serde_json::{json, Value};
use sha2::Digest;

fn hollow(kubeconfig: &Path, prefix: &str, nodes: usize, log: &Path) -> KillOnDrop {
    spawn_logged(
        Command::new(target_dir().join("corral-hollow"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--nodes", &nodes.to_string(), "--prefix", prefix])
            .args(["--lease-renew-ms", "500"]),
        log,
    )
}

/// Base64 SHA-256 of a PEM certificate's SubjectPublicKeyInfo: what Chromium's
/// `--ignore-certificate-errors-spki-list` takes, so it trusts this one server only.
fn spki_pin(cert_pem: &Path) -> String {
    let pem = std::fs::read_to_string(cert_pem).expect("serving certificate");
    let der = corral_api::pin::pem_to_der(&pem).expect("PEM certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("X.509");
    let spki = cert.tbs_certificate.subject_pki.raw;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(spki))
}

/// One node column as drawn: its classes, its state text, and its tiles' states by owner group.
#[derive(Debug, Clone, Default)]
struct Column {
    class: String,
    state: String,
    groups: BTreeMap<String, Vec<String>>,
}

/// What the page shows, read from the DOM.
const PICTURE: &str = r#"(() => {
  const out = {};
  for (const col of document.querySelectorAll('#board > section')) {
    const groups = {};
    for (const box of col.querySelectorAll('.group')) {
      groups[box.dataset.owner] = [...box.querySelectorAll('.pod')]
        .map((t) => t.className.replace(/^pod /, ''));
    }
    out[col.dataset.node] = {
      class: col.className, state: col.querySelector('.state').textContent, groups,
    };
  }
  return out;
})()"#;

type Picture = BTreeMap<String, Column>;

async fn picture(b: &mut Chromium) -> Picture {
    let v = b.eval(PICTURE).await.expect("reading the board");
    let mut out = Picture::new();
    for (node, c) in v.as_object().into_iter().flatten() {
        let groups = c["groups"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, tiles)| {
                let states = tiles
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| s.as_str().unwrap_or("").to_string())
                    .collect();
                (k.clone(), states)
            })
            .collect();
        out.insert(
            node.clone(),
            Column {
                class: c["class"].as_str().unwrap_or("").into(),
                state: c["state"].as_str().unwrap_or("").into(),
                groups,
            },
        );
    }
    out
}

/// Tiles of owner group `owner` in `state` across the columns whose name starts with `prefix`.
fn count(p: &Picture, prefix: &str, owner: &str, state: &str) -> usize {
    p.iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .filter_map(|(_, c)| c.groups.get(owner))
        .flatten()
        .filter(|s| state.is_empty() || s.as_str() == state)
        .count()
}

/// Polls the page until `ok` holds (within 30 s); panics with the last picture otherwise.
async fn wait_for(b: &mut Chromium, what: &str, ok: impl Fn(&Picture) -> bool) -> Picture {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = picture(b).await;
        if ok(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not show {what} within 30 s; it shows {p:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Screenshots in the test's directory, each required to differ from the one before.
struct Shots {
    dir: PathBuf,
    last: Vec<u8>,
    n: usize,
}

impl Shots {
    async fn take(&mut self, b: &mut Chromium, name: &str) {
        let png = b.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        assert_ne!(png, self.last, "{name}: the page looks as it did before");
        self.n += 1;
        let path = self.dir.join(format!("{:02}-{name}.png", self.n));
        std::fs::write(&path, &png).expect("writing the screenshot");
        println!("screenshot {}", path.display());
        self.last = png;
    }
}

fn web(image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image,
                    "resources": {"requests": {"cpu": "100m"}}}]}}}})
}

/// Reports a pod's phase and Ready condition as its node would (through `pods/status`).
async fn set_status(client: &Client, name: &str, phase: &str, ready: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut pod: Pod = client.get("default", name).await.expect("pod");
        let st = pod.status.get_or_insert_with(Default::default);
        st.phase = Some(phase.into());
        st.conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: ready.into(),
            ..Default::default()
        }]);
        match client.update_status(&pod).await {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => eprintln!("status of {name}, again: {e}"),
            Err(e) => panic!("status of {name}: {e}"),
        }
    }
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_a_daemonset_a_scale_up_a_rolling_update_and_a_stopped_nodes_pods_moving(
) {
    let Some(bin) = chromium::binary() else {
        assert!(
            std::env::var_os("CORRAL_E2E").is_none(),
            "chromium is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("skipped: chromium is not installed (scripts/setup.sh installs it)");
        return;
    };
    let started = Instant::now();
    let work = tempfile::tempdir().expect("temp dir");
    let data = work.path().join("cp");
    let port = free_port();
    let server = format!("https://127.0.0.1:{port}");
    let control_plane = |log: &str| {
        spawn_logged(
            Command::new(target_dir().join("corral-controlplane"))
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .arg("--data-dir")
                .arg(&data)
                .args(["--node-monitor-grace-seconds", "2"]),
            &work.path().join(log),
        )
    };
    let mut cp = Some(control_plane("controlplane.log"));
    let admin = data.join("admin.kubeconfig");
    let serving = |what: &'static str| {
        let (admin, server) = (admin.clone(), server.clone());
        async move {
            eventually(what, Duration::from_secs(60), || async {
                let creds = corral_api::kubeconfig::load(&admin).ok()?.1;
                let c = Client::connect_with(&server, &creds).await.ok()?;
                c.version().await.ok().map(|_| c)
            })
            .await
        }
    };
    let client: Client = serving("the control plane to serve").await;
    let _a = hollow(&admin, "node-a-", 2, &work.path().join("hollow-a.log"));
    let mut b_node = Some(hollow(
        &admin,
        "node-b-",
        1,
        &work.path().join("hollow-b.log"),
    ));
    let _scheduler = spawn_logged(
        Command::new(target_dir().join("corral-scheduler"))
            .arg("--kubeconfig")
            .arg(data.join("tls/scheduler.kubeconfig")),
        &work.path().join("scheduler.log"),
    );

    // `corral dashboard` prints the page's URL with a read-only token and writes the CA.
    let ca_file = work.path().join("ca.crt");
    let mut cli = Command::new(target_dir().join("corral"));
    cli.args(["dashboard", "--ttl", "10m", "--ca-file"])
        .arg(&ca_file)
        .env("CORRAL_CONFIG", &admin)
        .env("HOME", work.path());
    let out = output_within(cli, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "corral dashboard: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = stdout
        .split_whitespace()
        .find(|w| w.contains("/dashboard/#token="))
        .unwrap_or_else(|| panic!("no URL in {stdout}"))
        .to_string();
    assert!(
        page.starts_with(&format!("{server}/dashboard/#token=")),
        "{page}"
    );
    assert!(std::fs::read_to_string(&ca_file)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));

    let pin = spki_pin(&data.join("tls/serving.crt"));
    let mut b = Chromium::launch(&bin, &[pin])
        .await
        .expect("chromium starts");
    println!("chromium profile and log: {}", b.profile().display());
    b.navigate(&page).await.expect("navigate");
    // Screenshots go to the test's temp dir, or to $CORRAL_DASHBOARD_SHOTS to keep them.
    let shots_dir = std::env::var_os("CORRAL_DASHBOARD_SHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| work.path().to_path_buf());
    std::fs::create_dir_all(&shots_dir).expect("screenshot directory");
    let mut shots = Shots {
        dir: shots_dir,
        last: Vec::new(),
        n: 0,
    };

    // Three Ready nodes, and the token is gone from the address bar.
    wait_for(&mut b, "three Ready nodes", |p| {
        p.len() == 3
            && p.values()
                .all(|c| c.state == "Ready" && c.class.contains("up"))
    })
    .await;
    // All three watches are streaming.
    let deadline = Instant::now() + Duration::from_secs(30);
    while b
        .eval("document.getElementById('status').textContent")
        .await
        .unwrap()
        != "live"
    {
        assert!(
            Instant::now() < deadline,
            "the page's watches did not start within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.eval("location.hash").await.unwrap(), "");
    shots.take(&mut b, "nodes").await;

    // A DaemonSet: one Ready pod in each node's column.
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agents", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "agents"}},
            "template": {"metadata": {"labels": {"app": "agents"}},
                "spec": {"containers": [{"name": "a", "image": "agent:1"}]}}}});
    client
        .create_value(&kinds::DAEMONSETS, "default", &ds, false)
        .await
        .expect("daemonset");
    wait_for(&mut b, "one DaemonSet pod per node", |p| {
        p.values().all(|c| {
            c.groups
                .get("DaemonSet/default/agents")
                .is_some_and(|t| t == &["ready"])
        })
    })
    .await;
    let db = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "db:1"}]}}}});
    client
        .create_value(&kinds::STATEFULSETS, "default", &db, false)
        .await
        .expect("statefulset");
    wait_for(&mut b, "two StatefulSet pods", |p| {
        count(p, "", "StatefulSet/default/db", "ready") == 2
    })
    .await;
    shots.take(&mut b, "daemonset").await;

    // A Deployment of 5: revision 1's group holds 5 Ready tiles.
    client
        .create_value(&kinds::DEPLOYMENTS, "default", &web("web:1"), false)
        .await
        .expect("deployment");
    let rev1 = "Deployment/default/web/1";
    let p = wait_for(&mut b, "5 Ready pods of web revision 1", |p| {
        count(p, "", rev1, "ready") == 5
    })
    .await;
    let on_b = count(&p, "node-b-", rev1, "");
    assert!(on_b > 0, "the scheduler put no web pod on node-b-0: {p:#?}");
    shots.take(&mut b, "deployment").await;

    // A rolling update: revision 2 takes over; revision 1's group empties.
    // The controllers write the Deployment's status meanwhile: retry on a conflict.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut d = client
            .get_value(&kinds::DEPLOYMENTS, "default", "web")
            .await
            .expect("web");
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "web:2".into();
        match client
            .update_value(&kinds::DEPLOYMENTS, "default", &d, false)
            .await
        {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => eprintln!("update web, again: {e}"),
            Err(e) => panic!("updating web: {e}"),
        }
    }
    let rev2 = "Deployment/default/web/2";
    let mut both = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = picture(&mut b).await;
        both |= count(&p, "", rev1, "") > 0 && count(&p, "", rev2, "") > 0;
        if count(&p, "", rev2, "ready") == 5 && count(&p, "", rev1, "") == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not show within 30 s: {p:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("the page showed both revisions at once during the rollout: {both}");
    shots.take(&mut b, "rolled").await;

    // A stopped node: marked down, its pods Terminating, their replacements Ready elsewhere.
    let on_b = count(&picture(&mut b).await, "node-b-", rev2, "");
    assert!(on_b > 0, "no web pod on node-b-0 after the rollout");
    b_node.take();
    wait_for(&mut b, "node-b-0 marked down", |p| {
        p.get("node-b-0").is_some_and(|c| c.class.contains("down"))
    })
    .await;
    shots.take(&mut b, "node-down").await;
    let p = wait_for(&mut b, "web's pods Ready on the other nodes", |p| {
        count(p, "node-a-", rev2, "ready") == 5
            && count(p, "node-b-", rev2, "") == count(p, "node-b-", rev2, "terminating")
    })
    .await;
    assert_eq!(count(&p, "node-b-", rev2, "terminating"), on_b, "{p:#?}");
    shots.take(&mut b, "moved").await;

    // The delay from a write to the page drawing it: bare pods created one by one.
    let mut delays = Vec::new();
    for i in 0..8 {
        let name = format!("probe-{i}");
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "node-a-0", "containers": [{"name": "c", "image": "probe:1"}]}});
        let sent = epoch_ms();
        let created = client
            .create_value(&kinds::PODS, "default", &pod, false)
            .await
            .expect("pod");
        let rv: u64 = created["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let probe = format!(
            "(() => {{ const d = window.corralDashboard.drawn.find((d) => d.kind === 'pods' && d.rv >= {rv}); \
             return d && document.querySelector('[data-pod=\"default/{name}\"]') ? d.t : null; }})()"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let drawn = loop {
            if let Some(t) = b.eval(&probe).await.expect("probe").as_f64() {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not drawn within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        delays.push((drawn - sent).max(0.0));
    }
    shots.take(&mut b, "probes").await;

    // Every colour: statuses as an agent would report them, and a pod no node can take.
    for (name, phase, ready) in [
        ("probe-1", "Running", "False"),
        ("probe-2", "Failed", "False"),
        ("probe-3", "Succeeded", "False"),
    ] {
        set_status(&client, name, phase, ready).await;
    }
    let waiting = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "waiting", "namespace": "default"},
        "spec": {"nodeSelector": {"disk": "none-has-it"},
            "containers": [{"name": "c", "image": "probe:1"}]}});
    client
        .create_value(&kinds::PODS, "default", &waiting, false)
        .await
        .expect("pod");
    wait_for(&mut b, "every state's colour", |p| {
        let bare = |state| count(p, "node-a-0", "~bare", state);
        bare("notready") == 1
            && bare("failed") == 1
            && bare("succeeded") == 1
            && p.get("")
                .is_some_and(|c| c.groups.get("~bare").is_some_and(|t| t == &["pending"]))
    })
    .await;
    shots.take(&mut b, "colours").await;

    // The control plane restarts: the page's watches break and resume from where they were;
    // the first pods watch after the break is told its history is gone (the server's 410 in
    // an ERROR event, injected through DevTools' Fetch), so the page lists pods again.
    b.call(
        "Fetch.enable",
        json!({"patterns": [{"urlPattern": "*/api/v1/pods?watch=1*", "requestStage": "Request"}]}),
    )
    .await
    .expect("Fetch.enable");
    cp.take();
    cp = Some(control_plane("controlplane-2.log"));
    let client: Client = serving("the control plane to serve again").await;
    let paused = b
        .event("Fetch.requestPaused", Duration::from_secs(30))
        .await
        .expect("devtools")
        .expect("the page to watch pods again");
    let expired = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
        "status": "Failure", "reason": "Expired", "code": 410,
        "message": "too old resource version"}});
    b.call(
        "Fetch.fulfillRequest",
        json!({"requestId": paused["requestId"], "responseCode": 200,
            "responseHeaders": [{"name": "Content-Type", "value": "application/json"}],
            "body": base64::engine::general_purpose::STANDARD.encode(format!("{expired}\n"))}),
    )
    .await
    .expect("Fetch.fulfillRequest");
    b.call("Fetch.disable", json!({}))
        .await
        .expect("Fetch.disable");
    client
        .delete_value(&kinds::PODS, "default", "probe-0", DeleteOptions::grace(0))
        .await
        .expect("deleting probe-0");
    wait_for(&mut b, "probe-0 gone after the restart", |p| {
        count(p, "node-a-0", "~bare", "") == 7
    })
    .await;
    shots.take(&mut b, "after-restart").await;
    let lists = b.eval("corralDashboard.lists").await.unwrap();
    let watches = b.eval("corralDashboard.watches").await.unwrap();
    println!("the page listed {lists} and watched {watches} times (3 of each at the start)");
    assert_eq!(lists, 4, "only pods, told 410, list again");
    assert!(
        watches.as_u64() >= Some(6),
        "every watch resumed: {watches}"
    );
    drop(cp);
    delays.sort_by(f64::total_cmp);
    let p50 = delays[delays.len() / 2];
    let max = delays[delays.len() - 1];
    println!(
        "FIGURE dashboard write-to-page delay over {} pod creations: p50 {p50:.0} ms, max {max:.0} ms",
        delays.len()
    );
    assert!(
        max < 1000.0,
        "a change took {max:.0} ms to reach the page: {delays:?}"
    );
    println!(
        "dashboard test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
