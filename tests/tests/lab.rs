//! Issue 14's tests on `corral lab` machines booting real systemd: the installer brings up a
//! server and agents as on real hosts; the workshop app spreads over the machines, pods reach
//! each other across them, Services and the Ingress answer from every machine; agent restarts,
//! kills and stops leave pods alone; a powered-off machine's pods move and it comes back;
//! wrong tokens fail clearly; uninstall leaves every host as it was.
//!
//! Installed servers wait 40 s before a silent node is NotReady and 300 s more before
//! evicting its pods; these labs install with 15 s and 5 s, still longer than systemd's 5 s
//! restart of a killed agent.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use corral_api::k8s::api::core::v1::{Node, Pod, Service};
use corral_api::{Client, ListParams};
use corral_lab::layout::Role;
use corral_lab::{CreateRequest, Options, State};
use corral_tests::{eventually, pods, running, target_dir, workspace_dir};

const WAIT: Duration = Duration::from_secs(120);

/// A lab for one test, deleted on drop (its services' journals printed if the test failed).
struct Lab {
    opts: Options,
    state: State,
}

impl Lab {
    /// A lab of `machines` machines; the test images are copied in before boot unless
    /// `images` is false (then [`Lab::copy_images`] does it later).
    async fn create(test: &str, machines: usize, install: bool, images: bool) -> Self {
        let mut opts = Options::beside(&target_dir().join("corral"));
        // The machines' /opt/corral/bin: this build's binaries, or CORRAL_LAB_BIN_DIR's.
        opts.bin_dir = std::env::var_os("CORRAL_LAB_BIN_DIR")
            .map(Into::into)
            .unwrap_or_else(target_dir);
        // Installed servers use Kubernetes' node grace (40 s) and eviction (300 s) times;
        // drills need shorter ones, but longer than systemd's 5 s restart of a killed agent.
        opts.server_exec =
            Some("--node-monitor-grace-seconds 15 --pod-eviction-seconds 5".to_string());
        let name = format!("e{}-{test}", std::process::id() % 100_000);
        let req = CreateRequest {
            name: name.clone(),
            machines,
            images: if images {
                corral_tests::test_images()
            } else {
                vec![]
            },
            install,
            timeout: WAIT,
        };
        let t = Instant::now();
        let result = corral_lab::create(&opts, &req, &|m| eprintln!("[lab {name}] {m}")).await;
        let state = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = corral_lab::delete(&opts, &name, &|_| {}).await;
                panic!("creating lab {name}: {e}");
            }
        };
        eprintln!(
            "lab {name}: {machines} machines created in {:.1}s (install: {install})",
            t.elapsed().as_secs_f64()
        );
        Self { opts, state }
    }

    /// Copies the test images into machine `i`'s agent images directory, as a user drops
    /// air-gap archives there.
    fn copy_images(&self, i: usize) {
        let st = State::load(&self.opts.base, &self.state.layout.name)
            .unwrap()
            .unwrap();
        let leader = corral_lab::machine::leader(st.machines[i].pid.unwrap()).unwrap();
        let dir = std::path::PathBuf::from(format!("/proc/{leader}/root"))
            .join(corral_lab::layout::IMAGES_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        for src in corral_tests::test_images() {
            std::fs::copy(&src, dir.join(src.file_name().unwrap())).unwrap();
        }
    }

    fn machine(&self, i: usize) -> &corral_lab::MachineLayout {
        &self.state.layout.machines[i]
    }

    /// Runs a shell script inside machine `i`: (exit code, stdout, stderr).
    fn sh(&self, i: usize, script: &str) -> (i32, String, String) {
        let out = corral_lab::exec_output(&self.opts, &self.machine(i).name, &["sh", "-c", script])
            .expect("exec in machine");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    }

    fn ok(&self, i: usize, script: &str) -> String {
        let (code, out, err) = self.sh(i, script);
        assert_eq!(
            code,
            0,
            "on {}: {script}\n{out}\n{err}",
            self.machine(i).name
        );
        out
    }

    /// The real `corral` CLI with the lab's admin kubeconfig, from the workspace directory.
    fn corral(&self, args: &[&str]) -> String {
        let out = Command::new(target_dir().join("corral"))
            .args(args)
            .env("CORRAL_CONFIG", self.state.layout.kubeconfig())
            .current_dir(workspace_dir())
            .output()
            .expect("run corral");
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "corral {}:\n{o}\n{e}", args.join(" "));
        o
    }

    async fn client(&self) -> Client {
        let (server, creds) =
            corral_api::kubeconfig::load(&self.state.layout.kubeconfig()).expect("kubeconfig");
        Client::connect_with(&server, &creds)
            .await
            .expect("connect")
    }

    /// The Corral containers running in machine `i` (containerd tasks).
    fn tasks(&self, i: usize) -> BTreeSet<String> {
        self.ok(
            i,
            "ctr --address /run/corral/containerd/containerd.sock -n corral tasks ls",
        )
        .lines()
        .skip(1)
        .filter(|l| l.contains("RUNNING"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
    }

    fn agent_pid(&self, i: usize) -> String {
        self.ok(i, "systemctl show -p MainPID --value corral-agent")
    }

    async fn wait_active(&self, i: usize, units: &str) {
        let script = format!("systemctl is-active {units}");
        eventually(&format!("{units} active on machine {i}"), WAIT, || async {
            (self.sh(i, &script).0 == 0).then_some(())
        })
        .await;
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        corral_tests::finish_lab(&self.opts, &self.state);
    }
}

fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn internal_ip(n: &Node) -> Option<String> {
    n.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
}

fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn pod_ip(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

/// Each pod's uid -> (container ID, restart count): what a restarted agent must not change.
fn containers(pods: &[Pod]) -> BTreeMap<String, (String, i32)> {
    pods.iter()
        .map(|p| {
            let cs = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first().cloned())
                .unwrap_or_default();
            (
                p.metadata.uid.clone().unwrap_or_default(),
                (cs.container_id.unwrap_or_default(), cs.restart_count),
            )
        })
        .collect()
}

async fn wait_running(client: &Client, selector: &str, n: usize) -> Vec<Pod> {
    eventually(&format!("{n} running pods {selector}"), WAIT, || async {
        let all = pods(client, selector).await;
        (all.len() == n && all.iter().all(running)).then_some(all)
    })
    .await
}

/// Checks `same` over `window` (the damage of a restarted agent shows within seconds).
async fn stays(what: &str, window: Duration, mut same: impl FnMut() -> bool) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert!(same(), "{what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_machines_run_the_workshop_app_across_hosts_and_survive_agent_and_machine_drills() {
    corral_tests::skip_unless_e2e!();
    let lab = Lab::create("drills", 3, true, true).await;
    let client = lab.client().await;
    let names: Vec<String> = (0..3).map(|i| lab.machine(i).name.clone()).collect();

    // Nodes Ready, each with its machine's own address.
    let (nodes, _) = client
        .list::<Node>("", &ListParams::default())
        .await
        .unwrap();
    let mut seen: Vec<(String, Option<String>, bool)> = nodes
        .iter()
        .map(|n| (n.metadata.name.clone().unwrap(), internal_ip(n), ready(n)))
        .collect();
    seen.sort();
    let want: Vec<(String, Option<String>, bool)> = (0..3)
        .map(|i| (names[i].clone(), Some(lab.machine(i).ip.clone()), true))
        .collect();
    assert_eq!(seen, want);
    let wide = lab.corral(&["get", "nodes", "-o", "wide"]);
    for i in 0..3 {
        assert!(wide.contains(&lab.machine(i).ip), "{wide}");
    }

    // The workshop Deployment spreads over the machines.
    lab.corral(&["apply", "-f", "examples/workshop/deploy-05/mi-deploy.yaml"]);
    let web = wait_running(&client, "app=mi-deploy", 3).await;
    let on: BTreeSet<String> = web.iter().map(node_of).collect();
    assert_eq!(on.len(), 3, "one pod per machine: {on:?}");

    // A pod on machine 1 reaches a pod on machine 2 by IP (from inside the pod's netns).
    let a = web.iter().find(|p| node_of(p) == names[1]).unwrap();
    let b = web.iter().find(|p| node_of(p) == names[2]).unwrap();
    let (a_uid, b_ip, b_name) = (
        a.metadata.uid.clone().unwrap(),
        pod_ip(b),
        b.metadata.name.clone().unwrap(),
    );
    let script =
        format!("ip netns exec corral-{a_uid} timeout 5 busybox wget -q -O- http://{b_ip}:80/");
    eventually(
        "pod on machine 1 to reach pod on machine 2",
        WAIT,
        || async {
            let (code, body, _) = lab.sh(1, &script);
            (code == 0 && body.contains(&b_name)).then_some(())
        },
    )
    .await;

    // ClusterIP, NodePort and Ingress answer from every machine.
    lab.corral(&[
        "apply",
        "-f",
        "examples/workshop/deploy-05/mi-deploy-svc.yaml",
    ]);
    lab.corral(&[
        "apply",
        "-f",
        "examples/workshop/deploy-05/mi-deploy-ingress.yaml",
    ]);
    let np = std::env::temp_dir().join(format!("lab-np-{}.yaml", std::process::id()));
    std::fs::write(
        &np,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: mi-deploy-np\nspec:\n  type: NodePort\n  \
         selector:\n    app: mi-deploy\n  ports:\n  - port: 80\n    targetPort: 80\n",
    )
    .unwrap();
    lab.corral(&["apply", "-f", np.to_str().unwrap()]);
    let svc: Service = client.get("default", "mi-deploy-svc").await.unwrap();
    let cluster_ip = svc.spec.unwrap().cluster_ip.unwrap();
    let npsvc: Service = client.get("default", "mi-deploy-np").await.unwrap();
    let node_port = npsvc.spec.unwrap().ports.unwrap()[0].node_port.unwrap();
    for i in 0..3 {
        let ip = lab.machine(i).ip.clone();
        for (what, script) in [
            (
                "ClusterIP",
                format!("timeout 5 busybox wget -q -O- http://{cluster_ip}:80/"),
            ),
            (
                "NodePort",
                format!("timeout 5 busybox wget -q -O- http://{ip}:{node_port}/"),
            ),
            (
                "Ingress",
                format!(
                    "timeout 5 busybox wget -q -O- --header 'Host: mi-app.com' http://{ip}:80/"
                ),
            ),
        ] {
            eventually(&format!("{what} from machine {i}"), WAIT, || async {
                let (code, body, _) = lab.sh(i, &script);
                (code == 0 && body.contains("workshop-uns")).then_some(())
            })
            .await;
        }
    }

    // `systemctl restart corral-agent` with 10 pods: no restarts, no duplicates.
    lab.corral(&["scale", "deployment", "mi-deploy", "--replicas=10"]);
    let before = containers(&wait_running(&client, "app=mi-deploy", 10).await);
    let tasks: Vec<BTreeSet<String>> = (0..3).map(|i| lab.tasks(i)).collect();
    for i in 0..3 {
        lab.ok(i, "systemctl restart corral-agent");
        lab.wait_active(i, "corral-agent").await;
    }
    stays(
        "containers unchanged after agent restarts",
        Duration::from_secs(5),
        || (0..3).all(|i| lab.tasks(i) == tasks[i]),
    )
    .await;
    let after = containers(&wait_running(&client, "app=mi-deploy", 10).await);
    assert_eq!(after, before, "same pods, same containers, 0 restarts");
    assert!(after.values().all(|(_, restarts)| *restarts == 0));

    // kill -9 of the agent: systemd restarts it and it adopts its pods.
    let old = lab.agent_pid(1);
    lab.ok(1, &format!("kill -9 {old}"));
    eventually("systemd to restart the killed agent", WAIT, || async {
        let pid = lab.agent_pid(1);
        (pid != old && pid != "0" && lab.sh(1, "systemctl is-active corral-agent").0 == 0)
            .then_some(())
    })
    .await;
    stays(
        "containers adopted after kill -9",
        Duration::from_secs(5),
        || lab.tasks(1) == tasks[1],
    )
    .await;
    assert_eq!(
        containers(&wait_running(&client, "app=mi-deploy", 10).await),
        before
    );

    // `systemctl stop corral-agent`: containers keep running and serving.
    lab.ok(2, "systemctl stop corral-agent");
    assert_eq!(lab.tasks(2), tasks[2]);
    let (code, body, _) = lab.sh(
        0,
        &format!("timeout 5 busybox wget -q -O- http://{b_ip}:80/"),
    );
    assert!(code == 0 && body.contains(&b_name), "{body}");
    lab.ok(2, "systemctl start corral-agent");
    lab.wait_active(2, "corral-agent").await;

    // Poweroff: machine 2's pods run elsewhere; boot: Ready again, its services started.
    corral_lab::poweroff(&lab.opts, &names[2]).await.unwrap();
    eventually(
        "10 running pods, none on the powered-off machine",
        WAIT,
        || async {
            let all = pods(&client, "app=mi-deploy").await;
            let live: Vec<&Pod> = all.iter().filter(|p| running(p)).collect();
            (live.len() == 10 && live.iter().all(|p| node_of(p) != names[2])).then_some(())
        },
    )
    .await;
    let took = corral_lab::boot(&lab.opts, &names[2]).await.unwrap();
    eprintln!("machine booted again in {:.1}s", took.as_secs_f64());
    eventually("the booted machine's node Ready", WAIT, || async {
        let n: Option<Node> = client.get("", &names[2]).await.ok();
        n.as_ref().is_some_and(ready).then_some(())
    })
    .await;
    lab.wait_active(2, "corral-containerd corral-agent corral-proxy")
        .await;
}

/// Machine 0's agent token with its secret or its CA hash changed, and the words its error
/// must have.
fn spoiled(token: &str) -> [(&'static str, String, [&'static str; 2]); 2] {
    let (ca, rest) = token.split_once("::").expect("K10<hash>::<id>.<secret>");
    let flip = |s: &str| {
        let last = s.chars().last().unwrap();
        format!(
            "{}{}",
            &s[..s.len() - 1],
            if last == '0' { '1' } else { '0' }
        )
    };
    [
        (
            "secret",
            format!("{ca}::{}", flip(rest)),
            ["token", "not valid"],
        ),
        (
            "CA hash",
            format!("{}::{rest}", flip(ca)),
            ["hash", "refusing"],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_a_wrong_token_fails_clearly_and_creates_no_node() {
    corral_tests::skip_unless_e2e!();
    let lab = Lab::create("token", 2, false, true).await;
    let l = lab.state.layout.clone();
    let leader = |i: usize| {
        let st = State::load(&lab.opts.base, &l.name).unwrap().unwrap();
        corral_lab::machine::leader(st.machines[i].pid.unwrap()).unwrap()
    };
    corral_lab::install::run_installer(
        &l,
        &l.machines[0],
        leader(0),
        Role::Server,
        None,
        None,
        WAIT,
    )
    .await
    .expect("server install");
    let token = corral_lab::install::agent_token(&l.machines[0], leader(0), WAIT)
        .await
        .unwrap();
    let (kubeconfig, _) = corral_lab::install::copy_kubeconfig(&l, leader(0), WAIT)
        .await
        .unwrap();
    let (server, creds) = corral_api::kubeconfig::load(&kubeconfig).unwrap();
    let client = Client::connect_with(&server, &creds).await.unwrap();
    for (what, bad, words) in spoiled(&token) {
        let m1 = &l.machines[1];
        let _ = std::fs::remove_file(m1.install_log());
        let since = lab.ok(1, "date +%s");
        let installed = corral_lab::install::run_installer(
            &l,
            m1,
            leader(1),
            Role::Agent,
            Some(&bad),
            None,
            WAIT,
        )
        .await;
        // The error is clear wherever it shows: the installer's output or the agent's journal.
        let text = eventually(
            &format!("an error about the wrong {what}"),
            WAIT,
            || async {
                let log = std::fs::read_to_string(m1.install_log()).unwrap_or_default();
                let journal = format!("journalctl -u corral-agent --no-pager --since @{since}");
                let (_, journal, _) = lab.sh(1, &journal);
                let text = format!("{log}\n{journal}").to_lowercase();
                words.iter().all(|w| text.contains(w)).then_some(text)
            },
        )
        .await;
        eprintln!("wrong {what} (installer ok: {}): {text}", installed.is_ok());
        let (nodes, _) = client
            .list::<Node>("", &ListParams::default())
            .await
            .unwrap();
        let names: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        assert_eq!(
            names,
            [l.machines[0].name.clone()],
            "no node for a wrong {what}"
        );
        let _ = lab.sh(
            1,
            "[ -x /usr/local/bin/corral-uninstall.sh ] && /usr/local/bin/corral-uninstall.sh",
        );
    }
}

/// The machine's state as `scripts/host-state.sh` (bound at /opt/corral) prints it:
/// processes, mounts, netns, links, routes, files, iptables rules; normalised.
fn host_state(lab: &Lab, i: usize) -> String {
    lab.ok(i, "bash /opt/corral/host-state.sh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_on_every_machine_leaves_each_host_as_it_was() {
    corral_tests::skip_unless_e2e!();
    let lab = Lab::create("uninstall", 2, false, false).await;
    let before: Vec<String> = (0..2).map(|i| host_state(&lab, i)).collect();
    for i in 0..2 {
        lab.copy_images(i);
    }
    corral_lab::install_lab(&lab.opts, &lab.state.layout.name, WAIT, &|m| {
        eprintln!("{m}")
    })
    .await
    .expect("install");
    // Pods on both machines: containers, netns, veths, routes, iptables rules to remove.
    let client = lab.client().await;
    lab.corral(&["apply", "-f", "examples/workshop/deploy-05/mi-deploy.yaml"]);
    lab.corral(&[
        "apply",
        "-f",
        "examples/workshop/deploy-05/mi-deploy-svc.yaml",
    ]);
    let web = wait_running(&client, "app=mi-deploy", 3).await;
    assert_eq!(web.iter().map(node_of).collect::<BTreeSet<_>>().len(), 2);
    for i in [1, 0] {
        lab.ok(i, "/usr/local/bin/corral-uninstall.sh");
    }
    for (i, want) in before.iter().enumerate() {
        let after = host_state(&lab, i);
        let gone: Vec<&str> = want
            .lines()
            .filter(|l| !after.lines().any(|a| a == *l))
            .collect();
        let left: Vec<&str> = after
            .lines()
            .filter(|l| !want.lines().any(|b| b == *l))
            .collect();
        assert!(
            gone.is_empty() && left.is_empty(),
            "machine {i} differs after uninstall\nleft behind: {left:#?}\ngone: {gone:#?}"
        );
    }
}
