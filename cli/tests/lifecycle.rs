//! Commands that wait or follow: `get -w`, `delete` (waits for graceful deletion), `drain`,
//! `cordon`, and `rollout status|history|undo|restart|pause|resume`.

mod common;

use common::{cells, confirm_pod_deletions, Cluster};
use corral_api::k8s::api::apps::v1::Deployment;
use corral_api::k8s::api::core::v1::{Node, Pod};
use corral_api::kinds;
use serde_json::{json, Value};

fn pod(name: &str, owner: Option<(&str, &str)>) -> Pod {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "mi-app"}},
        "spec": {"containers": [{"name": "mi-pod", "image": "fedek3/workshop-uns:v0.2.0"}]}
    });
    if let Some((kind, owner_name)) = owner {
        let api = if kind == "Node" { "v1" } else { "apps/v1" };
        v["metadata"]["ownerReferences"] = json!([{"apiVersion": api, "kind": kind, "name": owner_name,
                                                   "uid": format!("uid-{owner_name}"), "controller": true}]);
    }
    serde_json::from_value(v).unwrap()
}

async fn node(c: &Cluster, name: &str) {
    let n: Node = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}),
    )
    .unwrap();
    let mut n = c.client.create(&n).await.unwrap();
    n.status = serde_json::from_value(json!({"conditions": [{"type": "Ready", "status": "True"}],
        "nodeInfo": {"kubeletVersion": "v0.1.0", "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "containerd://2.0",
                     "kernelVersion": "6.1", "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux",
                     "osImage": "Debian", "systemUUID": ""}})).unwrap();
    // Last writer wins, as kubelets write status: node IPAM may have set the spec already.
    n.metadata.resource_version = None;
    c.client.update_status(&n).await.unwrap();
}

async fn running_pod_on(c: &Cluster, name: &str, node_name: &str, owner: Option<(&str, &str)>) {
    let p = c.client.create(&pod(name, owner)).await.unwrap();
    c.client
        .bind(
            "default",
            name,
            p.metadata.uid.as_deref().unwrap(),
            node_name,
        )
        .await
        .unwrap();
    let mut p: Pod = c.client.get("default", name).await.unwrap();
    p.status = serde_json::from_value(json!({
        "phase": "Running", "podIP": "10.42.0.9", "podIPs": [{"ip": "10.42.0.9"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "mi-pod", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                               "state": {"running": {}}}]
    }))
    .unwrap();
    c.client.update_status(&p).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_watch_prints_the_table_then_a_line_per_change() {
    let c = Cluster::start().await;
    node(&c, "n1").await;
    running_pod_on(&c, "mi-deploy-5575f4ff46-xhv9r", "n1", None).await;

    let mut w = c.spawn(&["get", "pods", "-w"]);
    assert_eq!(
        w.line(20).await,
        "NAME                         READY   STATUS    RESTARTS   AGE"
    );
    let first = w.line(20).await;
    assert_eq!(
        cells(&first)[..4],
        ["mi-deploy-5575f4ff46-xhv9r", "1/1", "Running", "0"]
    );

    // A new pod appears as Pending, lined up with the table printed first.
    c.client
        .create(&pod("mi-deploy-f4cf76bd9-79h4h", None))
        .await
        .unwrap();
    let line = w.line_with(&["mi-deploy-f4cf76bd9-79h4h"], 20).await;
    assert!(
        line.starts_with("mi-deploy-f4cf76bd9-79h4h    0/1     Pending   0          "),
        "{line:?}"
    );

    // Deleting the bound pod shows it Terminating.
    c.client
        .delete::<Pod>("default", "mi-deploy-5575f4ff46-xhv9r", Default::default())
        .await
        .unwrap();
    let line = w
        .line_with(&["mi-deploy-5575f4ff46-xhv9r", "Terminating"], 20)
        .await;
    assert_eq!(cells(&line)[1..3], ["1/1", "Terminating"]);
    w.child.start_kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_waits_until_the_agent_confirms_a_bound_pod_is_gone() {
    let c = Cluster::start().await;
    node(&c, "n1").await;
    running_pod_on(&c, "mi-pod", "n1", None).await;

    let mut del = c.spawn(&["delete", "pod", "mi-pod"]);
    assert_eq!(del.line(20).await, "pod \"mi-pod\" deleted");
    // Still waiting: the pod is only marked, and shows Terminating.
    let out = c.corral(&["get", "pods"]).await;
    assert_eq!(
        cells(out.ok().lines().nth(1).unwrap())[..3],
        ["mi-pod", "1/1", "Terminating"]
    );
    assert!(
        del.child.try_wait().unwrap().is_none(),
        "delete returned before the pod was gone"
    );

    let agent = confirm_pod_deletions(c.client.clone());
    assert_eq!(del.exit(20).await, 0);
    let out = c.corral(&["get", "pods"]).await;
    assert_eq!(out.ok(), "");
    assert_eq!(out.stderr, "No resources found in default namespace.\n");

    // --wait=false returns at once, with the pod still terminating.
    agent.abort();
    running_pod_on(&c, "other", "n1", None).await;
    assert_eq!(
        c.corral(&["delete", "pod", "other", "--wait=false"])
            .await
            .ok(),
        "pod \"other\" deleted\n"
    );
    let p: Pod = c.client.get("default", "other").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_some());
    // And a short --timeout gives up with kubectl's message.
    let out = c.corral(&["delete", "pod", "other", "--timeout=1s"]).await;
    assert!(
        out.failed()
            .contains("timed out waiting for the condition on pods/other"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_drain_and_uncordon_a_node() {
    let c = Cluster::start().await;
    node(&c, "agent-0").await;
    assert_eq!(
        c.corral(&["cordon", "agent-0"]).await.ok(),
        "node/agent-0 cordoned\n"
    );
    assert_eq!(
        c.corral(&["cordon", "agent-0"]).await.ok(),
        "node/agent-0 already cordoned\n"
    );
    let out = c.corral(&["get", "no"]).await;
    assert_eq!(
        cells(out.ok().lines().nth(1).unwrap())[..3],
        ["agent-0", "Ready,SchedulingDisabled", "<none>"]
    );
    assert_eq!(
        c.corral(&["uncordon", "agent-0"]).await.ok(),
        "node/agent-0 uncordoned\n"
    );

    running_pod_on(&c, "mi-app-xsl79", "agent-0", Some(("DaemonSet", "mi-app"))).await;
    running_pod_on(
        &c,
        "mi-deploy-1-abcde",
        "agent-0",
        Some(("ReplicaSet", "mi-deploy-1")),
    )
    .await;
    running_pod_on(&c, "mi-pod", "agent-0", None).await;

    // Refused: a DaemonSet pod and a bare pod, and nothing is deleted.
    let out = c.corral(&["drain", "agent-0"]).await;
    let err = out.failed();
    assert!(err.contains("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/mi-app-xsl79"), "{err}");
    assert!(err.contains("cannot delete Pods that declare no controller (use --force to override): default/mi-pod"), "{err}");
    assert_eq!(out.stdout, "node/agent-0 cordoned\n");
    assert_eq!(
        c.client
            .list::<Pod>("default", &Default::default())
            .await
            .unwrap()
            .0
            .len(),
        3
    );

    let _agent = confirm_pod_deletions(c.client.clone());
    let out = c
        .corral(&["drain", "agent-0", "--ignore-daemonsets", "--force"])
        .await;
    let stdout = out.ok();
    assert!(
        out.stderr
            .contains("Warning: ignoring DaemonSet-managed Pods: default/mi-app-xsl79"),
        "{out:?}"
    );
    assert!(
        stdout.starts_with("node/agent-0 already cordoned\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("evicting pod default/mi-deploy-1-abcde\n"),
        "{stdout}"
    );
    assert!(stdout.contains("pod/mi-pod evicted\n"), "{stdout}");
    assert!(stdout.ends_with("node/agent-0 drained\n"), "{stdout}");
    let left: Vec<String> = c
        .client
        .list::<Pod>("default", &Default::default())
        .await
        .unwrap()
        .0
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(left, ["mi-app-xsl79"]);
    let n: Node = c.client.get("", "agent-0").await.unwrap();
    assert_eq!(n.spec.unwrap().unschedulable, Some(true));
}

/// A Deployment with two ReplicaSets (revisions 1 and 2), as the deployment controller leaves it.
async fn deployment_with_history(c: &Cluster) -> Deployment {
    let out = c
        .corral(&["apply", "-f", &common::manifest("mi-deploy-v0.3.0.yaml")])
        .await;
    out.ok();
    let d: Deployment = c.client.get("default", "mi-deploy").await.unwrap();
    let uid = d.metadata.uid.clone().unwrap();
    for (rev, hash, image, cause) in [
        (1, "5575f4ff46", "fedek3/workshop-uns:v0.2.0", None),
        (
            2,
            "f4cf76bd9",
            "fedek3/workshop-uns:v0.3.0",
            Some("corral apply -f mi-deploy.yaml"),
        ),
    ] {
        let mut annotations = json!({"deployment.kubernetes.io/revision": rev.to_string()});
        if let Some(cause) = cause {
            annotations["kubernetes.io/change-cause"] = json!(cause);
        }
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("mi-deploy-{hash}"), "annotations": annotations,
                         "labels": {"app": "mi-deploy", "pod-template-hash": hash},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "mi-deploy",
                                              "uid": uid, "controller": true}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "mi-deploy", "pod-template-hash": hash}},
                     "template": {"metadata": {"labels": {"app": "mi-deploy", "pod-template-hash": hash}},
                                  "spec": {"containers": [{"name": "workshop-uns", "image": image,
                                                           "ports": [{"containerPort": 80}], "resources": {}}]}}}
        });
        c.client
            .create_value(&kinds::REPLICASETS, "default", &rs, false)
            .await
            .unwrap();
    }
    d
}

fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_history_undo_restart_pause_and_resume() {
    let c = Cluster::start().await;
    deployment_with_history(&c).await;
    assert_eq!(
        c.corral(&["rollout", "history", "deployment/mi-deploy"]).await.ok(),
        "deployment.apps/mi-deploy \nREVISION  CHANGE-CAUSE\n1         <none>\n2         corral apply -f mi-deploy.yaml\n\n"
    );
    let out = c
        .corral(&["rollout", "history", "deploy/mi-deploy", "--revision=1"])
        .await;
    assert!(
        out.ok().contains("image: fedek3/workshop-uns:v0.2.0"),
        "{out:?}"
    );

    assert_eq!(
        c.corral(&["rollout", "undo", "deployment/mi-deploy"])
            .await
            .ok(),
        "deployment.apps/mi-deploy rolled back\n"
    );
    let d: Deployment = c.client.get("default", "mi-deploy").await.unwrap();
    assert_eq!(image_of(&d), "fedek3/workshop-uns:v0.2.0");
    let labels = d
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert!(!labels.contains_key("pod-template-hash"), "{labels:?}");
    assert_eq!(
        c.corral(&["rollout", "undo", "deployment/mi-deploy", "--to-revision=1"]).await.ok(),
        "deployment.apps/mi-deploy skipped rollback (current template already matches revision 1)\n"
    );
    let out = c
        .corral(&["rollout", "undo", "deployment/mi-deploy", "--to-revision=9"])
        .await;
    assert_eq!(
        out.failed(),
        "error: unable to find specified revision 9 in history\n"
    );

    assert_eq!(
        c.corral(&["rollout", "pause", "deployment/mi-deploy"])
            .await
            .ok(),
        "deployment.apps/mi-deploy paused\n"
    );
    let out = c
        .corral(&["rollout", "pause", "deployment/mi-deploy"])
        .await;
    assert_eq!(
        out.failed(),
        "error: deployments.apps \"mi-deploy\" is already paused\n"
    );
    let out = c
        .corral(&["rollout", "restart", "deployment/mi-deploy"])
        .await;
    assert!(
        out.failed().contains("can't restart paused deployment"),
        "{out:?}"
    );
    assert_eq!(
        c.corral(&["rollout", "resume", "deployment/mi-deploy"])
            .await
            .ok(),
        "deployment.apps/mi-deploy resumed\n"
    );
    assert_eq!(
        c.corral(&["rollout", "restart", "deployment/mi-deploy"])
            .await
            .ok(),
        "deployment.apps/mi-deploy restarted\n"
    );
    let d: Value = c
        .client
        .get_value(&kinds::DEPLOYMENTS, "default", "mi-deploy")
        .await
        .unwrap();
    let at = d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .unwrap();
    assert!(at.parse::<jiff::Timestamp>().is_ok(), "{at}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_follows_the_deployment_until_it_is_rolled_out() {
    let c = Cluster::start().await;
    let d = deployment_with_history(&c).await;
    let mut status = c.spawn(&["rollout", "status", "deployment/mi-deploy"]);
    let first = status.line(20).await;
    assert!(first.starts_with("Waiting for deployment"), "{first}");

    // Play the deployment controller: report progress step by step.
    let generation = d.metadata.generation.unwrap_or(1);
    for (updated, replicas, available) in [(1, 3, 0), (3, 3, 1), (3, 3, 3)] {
        let mut cur: Deployment = c.client.get("default", "mi-deploy").await.unwrap();
        cur.status = serde_json::from_value(json!({
            "observedGeneration": generation, "replicas": replicas, "updatedReplicas": updated,
            "readyReplicas": available, "availableReplicas": available
        }))
        .unwrap();
        c.client.update_status(&cur).await.unwrap();
    }
    status
        .line_with(&["1 of 3 updated replicas are available..."], 20)
        .await;
    assert_eq!(
        status.line_with(&["successfully rolled out"], 20).await,
        "deployment \"mi-deploy\" successfully rolled out"
    );
    assert_eq!(status.exit(20).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_when_the_condition_is_met_or_times_out() {
    let c = Cluster::start().await;
    let p = c.client.create(&pod("web", None)).await.unwrap();
    let mut w = c.spawn(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"]);
    let mut jp = c.spawn(&[
        "wait",
        "--for=jsonpath={.status.phase}=Running",
        "pods",
        "--all",
    ]);
    let mut p: Pod = c.client.get("default", "web").await.unwrap_or(p);
    p.status = serde_json::from_value(
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
    )
    .unwrap();
    c.client.update_status(&p).await.unwrap();
    assert_eq!(w.line(20).await, "pod/web condition met");
    assert_eq!(w.exit(20).await, 0);
    assert_eq!(jp.line(20).await, "pod/web condition met");

    let out = c
        .corral(&["wait", "--for=delete", "pod/web", "--timeout=1s"])
        .await;
    assert_eq!(
        out.failed(),
        "error: timed out waiting for the condition on pods/web\n"
    );
    let mut gone = c.spawn(&["wait", "--for=delete", "pod/web"]);
    c.client
        .delete::<Pod>("default", "web", Default::default())
        .await
        .unwrap();
    assert_eq!(gone.line(20).await, "pod/web deleted");
    let out = c
        .corral(&["wait", "--for=condition=Ready", "pod/nope", "--timeout=1s"])
        .await;
    assert_eq!(
        out.failed(),
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_and_set_image_change_the_stored_deployment() {
    let c = Cluster::start().await;
    c.corral(&["apply", "-f", &common::manifest("mi-deploy.yaml")])
        .await
        .ok();
    assert_eq!(
        c.corral(&[
            "set",
            "image",
            "deployment/mi-deploy",
            "workshop-uns=fedek3/workshop-uns:v0.3.0"
        ])
        .await
        .ok(),
        "deployment.apps/mi-deploy image updated\n"
    );
    let d: Deployment = c.client.get("default", "mi-deploy").await.unwrap();
    assert_eq!(image_of(&d), "fedek3/workshop-uns:v0.3.0");
    let out = c
        .corral(&["set", "image", "deployment/mi-deploy", "nope=x"])
        .await;
    assert_eq!(
        out.failed(),
        "error: unable to find container named \"nope\"\n"
    );

    let patch = r#"{"spec":{"replicas":2}}"#;
    assert_eq!(
        c.corral(&["patch", "deploy", "mi-deploy", "-p", patch])
            .await
            .ok(),
        "deployment.apps/mi-deploy patched\n"
    );
    assert_eq!(
        c.corral(&["patch", "deploy/mi-deploy", "-p", patch])
            .await
            .ok(),
        "deployment.apps/mi-deploy patched (no change)\n"
    );
    let d: Deployment = c.client.get("default", "mi-deploy").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2));
    let out = c
        .corral(&["patch", "deploy/mi-deploy", "-p", "{not json"])
        .await;
    assert!(
        out.failed().starts_with("error: unable to parse"),
        "{out:?}"
    );
    let out = c
        .corral(&[
            "patch",
            "deploy/mi-deploy",
            "-p",
            r#"{"spec":{"replicas":-3}}"#,
        ])
        .await;
    assert!(out.failed().contains("spec.replicas"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_saves_what_the_editor_changed_and_rejects_typos() {
    let c = Cluster::start().await;
    c.corral(&["apply", "-f", &common::manifest("mi-deploy.yaml")])
        .await
        .ok();
    let edit = |editor: &str| {
        let mut cmd = c.command(&["edit", "deployment/mi-deploy"]);
        cmd.env("CORRAL_EDITOR", editor);
        common::run(cmd, None)
    };
    let out = edit("sed -i 's/replicas: 3/replicas: 4/'").await;
    assert_eq!(out.ok(), "deployment.apps/mi-deploy edited\n");
    let d: Deployment = c.client.get("default", "mi-deploy").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(4));

    let out = edit("true").await;
    assert_eq!(out.ok(), "");
    assert_eq!(out.stderr, "Edit cancelled, no changes made.\n");

    let out = edit("sed -i 's/replicas: 4/replicaz: 5/'").await;
    let err = out.failed();
    assert!(err.contains("unknown field spec.replicaz"), "{err}");
    let d: Deployment = c.client.get("default", "mi-deploy").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(4));
    let out = edit("false").await;
    assert!(out.failed().contains("exited with"), "{out:?}");
}
