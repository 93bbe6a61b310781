//! The workshop chapter (shared/seed/04-hola-mundo-real.md), step by step, on a 4-node local
//! cluster with real containerd, runc and CNI, through the real `corral` CLI.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use corral_api::k8s::api::core::v1::{Endpoints, Pod};
use corral_api::Client;
use corral_tests::{
    corral, eventually, http_get, pods, rows, running, skip_unless_e2e, TestCluster,
};

const WAIT: Duration = Duration::from_secs(90);

fn ok(server: &str, args: &[&str]) -> String {
    let (out, err, success) = corral(server, args);
    assert!(success, "corral {} failed:\n{out}\n{err}", args.join(" "));
    out
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn node(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_default()
}

/// Waits until exactly `n` pods match `selector`, all Running and Ready, and none terminating.
async fn wait_running(
    client: &Client,
    selector: &str,
    n: usize,
    cluster: &TestCluster,
) -> Vec<Pod> {
    let what = format!("{n} running pods with {selector}");
    let result = tokio::time::timeout(
        WAIT,
        eventually(&what, WAIT, || async {
            let all = pods(client, selector).await;
            (all.len() == n && all.iter().all(running)).then_some(all)
        }),
    )
    .await;
    result.unwrap_or_else(|_| panic!("timed out waiting for {what}\n{}", cluster.logs()))
}

async fn wait_gone(client: &Client, selector: &str, cluster: &TestCluster) {
    let what = format!("no pods with {selector}");
    let done = tokio::time::timeout(
        WAIT,
        eventually(&what, WAIT + Duration::from_secs(5), || async {
            pods(client, selector).await.is_empty().then_some(())
        }),
    )
    .await;
    if done.is_err() {
        let left: Vec<String> = pods(client, selector)
            .await
            .iter()
            .map(|p| {
                format!(
                    "{} on {} deleting={:?}",
                    name(p),
                    node(p),
                    p.metadata.deletion_timestamp
                )
            })
            .collect();
        panic!("timed out waiting for {what}: {left:?}\n{}", cluster.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workshop_chapter_runs_step_by_step() {
    skip_unless_e2e!();
    let cluster = TestCluster::create("workshop", 3).await;
    let s = cluster.server();
    let client = cluster.client().await;

    // Self-healing: a bare pod is not recreated after delete.
    assert_eq!(
        ok(&s, &["apply", "-f", "examples/workshop/mi-pod.yaml"]).trim(),
        "pod/mi-pod created"
    );
    wait_running(&client, "app=mi-pod", 1, &cluster).await;
    let table = ok(&s, &["get", "pods"]);
    assert!(
        table.starts_with(
            "NAME     READY   STATUS    RESTARTS   AGE\nmi-pod   1/1     Running   0 "
        ),
        "{table}"
    );
    assert_eq!(
        ok(&s, &["delete", "pod", "mi-pod"]).trim(),
        "pod \"mi-pod\" deleted"
    );
    let (out, err, _) = corral(&s, &["get", "pods"]);
    assert_eq!(
        (out.as_str(), err.trim()),
        ("", "No resources found in default namespace.")
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        pods(&client, "app=mi-pod").await.is_empty(),
        "nothing brings a bare pod back"
    );

    // DaemonSet: one pod per node, on distinct nodes; a deleted one is replaced on its node.
    let ds = "examples/workshop/deploy-01/daemonSet-mi-app.yaml";
    assert_eq!(
        ok(&s, &["apply", "-f", ds]).trim(),
        "daemonset.apps/mi-app created"
    );
    let daemons = wait_running(&client, "app=mi-app", 4, &cluster).await;
    let wide = rows(&ok(&s, &["get", "pods", "-o", "wide"]));
    let nodes: BTreeSet<&str> = wide.iter().map(|r| r[6].as_str()).collect();
    assert_eq!(nodes.len(), 4, "one pod per node: {wide:?}");
    assert!(wide
        .iter()
        .all(|r| r[0].starts_with("mi-app-") && r[0].len() == "mi-app-".len() + 5));
    let victim = &daemons[0];
    ok(&s, &["delete", "pod", &name(victim)]);
    let after = wait_running(&client, "app=mi-app", 4, &cluster).await;
    let replacement = after
        .iter()
        .find(|p| node(p) == node(victim))
        .expect("a pod on the victim's node");
    assert_ne!(
        name(replacement),
        name(victim),
        "a new name on the same node"
    );
    ok(&s, &["delete", "-f", ds]);
    wait_gone(&client, "app=mi-app", &cluster).await;

    // ReplicaSet: keeps 3, scales to 5, a template change reaches only new pods.
    let rs = "examples/workshop/deploy-02/replicaSet-mi-app.yaml";
    assert_eq!(
        ok(&s, &["apply", "-f", rs]).trim(),
        "replicaset.apps/mi-app created"
    );
    wait_running(&client, "app=mi-app", 3, &cluster).await;
    assert_eq!(
        ok(&s, &["scale", "--replicas=5", "replicaset/mi-app"]).trim(),
        "replicaset.apps/mi-app scaled"
    );
    wait_running(&client, "app=mi-app", 5, &cluster).await;
    let v3 = "examples/workshop/deploy-03/replicaSet-mi-app.yaml";
    assert_eq!(
        ok(&s, &["apply", "-f", v3]).trim(),
        "replicaset.apps/mi-app configured"
    );
    let three = wait_running(&client, "app=mi-app", 3, &cluster).await;
    let described = ok(&s, &["describe", "pod"]);
    let images: Vec<&str> = described
        .lines()
        .filter(|l| l.trim_start().starts_with("Image:"))
        .collect();
    assert_eq!(images.len(), 3, "{described}");
    assert!(
        images
            .iter()
            .all(|l| l.ends_with("fedek3/workshop-uns:v0.2.0")),
        "{images:?}"
    );
    ok(&s, &["delete", "pod", &name(&three[0])]);
    let after = wait_running(&client, "app=mi-app", 3, &cluster).await;
    let by_image: BTreeMap<String, usize> = after.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(image(p)).or_default() += 1;
        m
    });
    assert_eq!(
        by_image.get("fedek3/workshop-uns:v0.3.0"),
        Some(&1),
        "{by_image:?}"
    );
    assert_eq!(
        by_image.get("fedek3/workshop-uns:v0.2.0"),
        Some(&2),
        "{by_image:?}"
    );
    assert_eq!(
        ok(&s, &["delete", "replicaSet", "mi-app"]).trim(),
        "replicaset.apps \"mi-app\" deleted"
    );
    wait_gone(&client, "app=mi-app", &cluster).await;

    // Deployment: kubectl's generated YAML, NAME-HASH-XXXXX pods, rolling update to v0.3.0.
    let generated = ok(
        &s,
        &[
            "create",
            "deployment",
            "mi-deploy",
            "--image=fedek3/workshop-uns:v0.2.0",
            "--replicas=3",
            "--port=80",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
    );
    let file = std::fs::read_to_string(
        corral_tests::workspace_dir().join("examples/workshop/deploy-04/mi-deploy.yaml"),
    )
    .unwrap();
    assert_eq!(
        generated, file,
        "create --dry-run=client -o yaml prints kubectl's manifest"
    );
    assert_eq!(
        ok(
            &s,
            &["apply", "-f", "examples/workshop/deploy-04/mi-deploy.yaml"]
        )
        .trim(),
        "deployment.apps/mi-deploy created"
    );
    let first = wait_running(&client, "app=mi-deploy", 3, &cluster).await;
    let hash = name(&first[0]).split('-').nth(2).unwrap().to_string();
    assert!(first.iter().all(|p| {
        let n = name(p);
        let parts: Vec<&str> = n.split('-').collect();
        parts.len() == 4 && parts[2] == hash && parts[3].len() == 5
    }));
    let want_row = vec![
        format!("mi-deploy-{hash}"),
        "3".to_string(),
        "3".to_string(),
        "3".to_string(),
    ];
    let rs_table = eventually("get replicaset to show 3 3 3", WAIT, || async {
        let table = ok(&s, &["get", "replicaset"]);
        (rows(&table).first().map(|r| r[..4].to_vec()) == Some(want_row.clone())).then_some(table)
    })
    .await;
    assert!(
        rs_table.starts_with("NAME                   DESIRED   CURRENT   READY   AGE\n"),
        "{rs_table}"
    );
    ok(
        &s,
        &["apply", "-f", "examples/workshop/deploy-05/mi-deploy.yaml"],
    );
    ok(
        &s,
        &["rollout", "status", "deployment/mi-deploy", "--timeout=90s"],
    );
    let second = wait_running(&client, "app=mi-deploy", 3, &cluster).await;
    assert!(second
        .iter()
        .all(|p| image(p) == "fedek3/workshop-uns:v0.3.0" && !name(p).contains(&hash)));
    eventually("the old replica set at 0 0 0", WAIT, || async {
        let rs_rows = rows(&ok(&s, &["get", "replicaset"]));
        let old = rs_rows
            .iter()
            .find(|r| r[0] == format!("mi-deploy-{hash}"))?
            .clone();
        (old[1..4] == ["0", "0", "0"]).then_some(())
    })
    .await;

    // Service: endpoints list the pods; the Ingress answers for mi-app.com from every pod.
    ok(
        &s,
        &[
            "apply",
            "-f",
            "examples/workshop/deploy-05/mi-deploy-svc.yaml",
        ],
    );
    let ips: BTreeSet<String> = second
        .iter()
        .filter_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
        .collect();
    let want: BTreeSet<String> = ips.iter().map(|ip| format!("{ip}:80")).collect();
    eventually("endpoints of mi-deploy-svc", WAIT, || async {
        // The endpoints controller makes the object shortly after the Service: until then,
        // NotFound (as with kubectl).
        let (ep, _, found) = corral(&s, &["get", "ep", "mi-deploy-svc"]);
        (found && corral_tests::endpoints_column(&ep).as_ref() == Some(&want)).then_some(())
    })
    .await;
    ok(
        &s,
        &[
            "apply",
            "-f",
            "examples/workshop/deploy-05/mi-deploy-ingress.yaml",
        ],
    );
    let ing = rows(&ok(&s, &["get", "ingress"]));
    assert_eq!(ing[0][..3], ["mi-deploy-ingress", "<none>", "mi-app.com"]);
    let node_ip = cluster.state.layout.nodes[1].ip.clone();
    let names: BTreeSet<String> = second.iter().map(name).collect();
    let seen = eventually("the ingress to answer from every pod", WAIT, || {
        let node_ip = node_ip.clone();
        let names = names.clone();
        async move {
            let mut seen = BTreeSet::new();
            for _ in 0..12 {
                if let Some((200, body)) = http_get(&format!("{node_ip}:80"), "mi-app.com").await {
                    if let Some(n) = names.iter().find(|n| body.contains(n.as_str())) {
                        seen.insert(n.clone());
                    }
                }
            }
            (seen == names).then_some(seen)
        }
    })
    .await;
    assert_eq!(seen.len(), 3);
    let (status, _) = http_get(&format!("{node_ip}:80"), "other.example")
        .await
        .expect("answer");
    assert_eq!(status, 404, "no rule for that host");

    // Two services with the same app label and different tiers reach only their own tier.
    ok(
        &s,
        &["apply", "-f", "examples/workshop/tiers/mi-app-tiers.yaml"],
    );
    let front = wait_running(&client, "app=mi-app,tier=frontend", 3, &cluster).await;
    let back = wait_running(&client, "app=mi-app,tier=backend", 1, &cluster).await;
    let ip_set = |ps: &[Pod]| -> BTreeSet<String> {
        ps.iter()
            .filter_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
            .collect()
    };
    for (svc, want) in [
        ("mi-app-frontend", ip_set(&front)),
        ("mi-app-backend", ip_set(&back)),
    ] {
        eventually(&format!("endpoints of {svc}"), WAIT, || {
            let want = want.clone();
            let client = client.clone();
            async move {
                let ep: Endpoints = client.get_opt("default", svc).await.ok().flatten()?;
                let got: BTreeSet<String> = ep
                    .subsets
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|s| s.addresses.clone().unwrap_or_default())
                    .map(|a| a.ip)
                    .collect();
                (got == want).then_some(())
            }
        })
        .await;
    }

    // Node failure: the Deployment's pods leave a dead node; the DaemonSet pod returns with it.
    ok(&s, &["apply", "-f", ds]);
    wait_running(&client, "app=mi-app,!tier", 4, &cluster).await;
    let victim_node = node(&second[0]);
    corral_cluster::node_stop(&cluster.opts, &victim_node)
        .await
        .unwrap();
    eventually(
        "the Deployment's pods to leave the dead node",
        WAIT,
        || async {
            let all = pods(&client, "app=mi-deploy").await;
            let live: Vec<&Pod> = all
                .iter()
                .filter(|p| running(p) && node(p) != victim_node)
                .collect();
            (live.len() == 3).then_some(())
        },
    )
    .await;
    corral_cluster::node_start(&cluster.opts, &victim_node, WAIT)
        .await
        .unwrap();
    eventually(
        "the DaemonSet pod back on the returned node",
        WAIT,
        || async {
            let all = pods(&client, "app=mi-app,!tier").await;
            all.iter()
                .any(|p| running(p) && node(p) == victim_node)
                .then_some(())
        },
    )
    .await;
}
