//! `corral logs` through the real Logs RPC and agent tunnel (a test agent answers), and the
//! workshop objects still listed after the control plane restarts on the same data directory.

mod common;

use common::{cells, manifest, Cluster};
use corral_api::k8s::api::core::v1::{Node, Pod};
use corral_proto as pb;
use futures::{SinkExt, StreamExt};
use serde_json::json;

/// Connects as the agent of `node` and answers every log request with one line describing it.
async fn fake_agent(api: &corral_api::Client, node: &str) -> tokio::task::JoinHandle<()> {
    let mut client = pb::agent_tunnel_client::AgentTunnelClient::new(api.transport());
    let (mut up, rx) = futures::channel::mpsc::channel::<pb::AgentUp>(16);
    up.send(pb::AgentUp {
        msg: Some(pb::agent_up::Msg::Hello(pb::AgentHello {
            node_name: node.to_string(),
        })),
    })
    .await
    .unwrap();
    let mut down = client.open(rx).await.unwrap().into_inner();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = down.next().await {
            let Some(pb::agent_down::Msg::Open(open)) = msg.msg else {
                continue;
            };
            let r = open.request.unwrap_or_default();
            let line = format!(
                "{}/{}/{} follow={} previous={} tail={}\n",
                r.namespace, r.pod, r.container, r.follow, r.previous, r.tail_lines
            );
            for (data, eof) in [(line.into_bytes(), false), (b"bye\n".to_vec(), true)] {
                let _ = up
                    .send(pb::AgentUp {
                        msg: Some(pb::agent_up::Msg::Log(pb::LogData {
                            request_id: open.request_id,
                            data,
                            eof,
                            error: String::new(),
                        })),
                    })
                    .await;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_come_from_the_pods_node_through_the_tunnel() {
    let c = Cluster::start().await;
    let n: Node = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
    )
    .unwrap();
    c.client.create(&n).await.unwrap();
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mi-pod", "namespace": "default"},
        "spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "side", "image": "busybox"}]}
    }))
    .unwrap();
    let p = c.client.create(&p).await.unwrap();
    c.client
        .bind(
            "default",
            "mi-pod",
            p.metadata.uid.as_deref().unwrap(),
            "n1",
        )
        .await
        .unwrap();
    let _agent = fake_agent(&c.client, "n1").await;

    let out = common::eventually(20, "the agent tunnel to be registered", || async {
        let out = c.corral(&["logs", "mi-pod"]).await;
        (out.code == 0).then_some(out)
    })
    .await;
    assert_eq!(
        out.stdout,
        "default/mi-pod/web follow=false previous=false tail=-1\nbye\n"
    );
    assert_eq!(
        out.stderr,
        "Defaulted container \"web\" out of: web, side\n"
    );
    let out = c
        .corral(&["logs", "mi-pod", "-c", "side", "--tail", "5", "-p"])
        .await;
    assert_eq!(
        out.ok(),
        "default/mi-pod/side follow=false previous=true tail=5\nbye\n"
    );
    let out = c.corral(&["logs", "-f", "pod/mi-pod", "-c", "web"]).await;
    assert_eq!(
        out.ok(),
        "default/mi-pod/web follow=true previous=false tail=-1\nbye\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_objects_are_listed_after_a_control_plane_restart() {
    let c = Cluster::start().await;
    for f in [
        "replicaSet-mi-app.yaml",
        "mi-deploy.yaml",
        "mi-deploy-svc.yaml",
        "mi-deploy-ingress.yaml",
    ] {
        c.corral(&["apply", "-f", &manifest(f)]).await.ok();
    }
    c.corral(&["scale", "--replicas=5", "rs/mi-app"]).await.ok();
    let data_dir = c.dir.path().join("data");
    let Cluster { cp, dir, .. } = c;
    cp.shutdown().await;
    let cp = corral_controlplane::start(corral_controlplane::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir,
        controllers: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = cp.client().await.unwrap();
    let c = Cluster { cp, client, dir };
    let out = c.corral(&["get", "rs,deploy,svc,ing", "-o", "name"]).await;
    assert_eq!(
        out.ok(),
        // `kubernetes` is the API server's own Service, as in every Kubernetes cluster.
        "replicaset.apps/mi-app\ndeployment.apps/mi-deploy\nservice/kubernetes\nservice/mi-deploy-svc\ningress.networking.k8s.io/mi-deploy-ingress\n"
    );
    let out = c.corral(&["get", "rs", "mi-app"]).await;
    assert_eq!(
        cells(out.ok().lines().nth(1).unwrap())[..2],
        ["mi-app", "5"]
    );
    assert_eq!(
        c.corral(&["apply", "-f", &manifest("mi-deploy.yaml")])
            .await
            .ok(),
        "deployment.apps/mi-deploy unchanged\n"
    );
}
