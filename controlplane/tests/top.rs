//! The `Metrics` RPC (metrics.k8s.io) against a fake agent on the tunnel: NodeMetrics and
//! PodMetrics from its summary, a node without an agent left out and warned about, label
//! selectors, and NotFound for a named object without figures.

mod common;

use std::time::Duration;

use common::boot;
use corral_api::kinds;
use corral_api::Client;
use corral_proto as pb;
use serde_json::{json, Value};

async fn create(client: &Client, plural: &str, ns: &str, obj: Value) {
    client
        .create_value(kinds::by_plural(plural).unwrap(), ns, &obj, false)
        .await
        .unwrap();
}

fn usage(cpu: u64, mem: u64) -> Option<pb::Usage> {
    Some(pb::Usage {
        cpu_nanocores: cpu,
        memory_working_set_bytes: mem,
    })
}

/// A fake agent for node `n1` answering every stats request with one fixed summary.
async fn fake_agent(api: &Client) {
    let (up, mut down) = common::tunnel::open(api, "n1").await;
    tokio::spawn(async move {
        while let Ok(Some(m)) = down.message().await {
            if let Some(pb::agent_down::Msg::Stats(r)) = m.msg {
                let summary = pb::StatsSummary {
                    request_id: r.request_id,
                    ready: true,
                    timestamp_ms: 1_700_000_000_000,
                    window_ms: 5_000,
                    node: usage(1_500_000_000, 2 << 30),
                    pods: vec![pb::PodUsage {
                        namespace: "default".into(),
                        name: "web".into(),
                        containers: vec![pb::ContainerUsage {
                            name: "app".into(),
                            usage: usage(250_000_000, 64 << 20),
                        }],
                    }],
                    ..Default::default()
                };
                let msg = pb::agent_up::Msg::Stats(summary);
                if up.send(pb::AgentUp { msg: Some(msg) }).await.is_err() {
                    return;
                }
            }
        }
    });
}

fn request(resource: &str, ns: &str, name: &str, selector: &str) -> pb::MetricsRequest {
    pb::MetricsRequest {
        resource: resource.into(),
        namespace: ns.into(),
        name: name.into(),
        label_selector: selector.into(),
    }
}

fn items(r: &pb::MetricsResponse) -> Vec<Value> {
    r.items
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect()
}

#[tokio::test]
async fn metrics_come_from_the_agents_that_answer_and_name_the_nodes_that_do_not() {
    let (_dir, _running, client) = boot().await;
    for (name, role) in [("n1", "web"), ("n2", "db")] {
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"role": role}}});
        create(&client, "nodes", "", node).await;
    }
    for (name, node) in [("web", "n1"), ("db", "n2")] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox:1"}]}});
        create(&client, "pods", "default", pod).await;
    }
    fake_agent(&client).await;

    // The fake agent's tunnel may take a moment to register.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let nodes = loop {
        let r = client
            .raw()
            .metrics(request("nodes", "", "", ""))
            .await
            .unwrap();
        if !r.get_ref().items.is_empty() {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "n1 never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let warning = nodes
        .metadata()
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        warning.contains("n2") && warning.contains("1 of 2"),
        "{warning:?}"
    );
    let nodes = nodes.into_inner();
    assert_eq!(nodes.unavailable, ["n2"]);
    let got = items(&nodes);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["kind"], "NodeMetrics");
    assert_eq!(got[0]["metadata"]["name"], "n1");
    assert_eq!(got[0]["usage"], json!({"cpu": "1500m", "memory": "2Gi"}));
    assert_eq!(got[0]["window"], "5s");

    let pods = client
        .raw()
        .metrics(request("pods", "default", "", ""))
        .await
        .unwrap()
        .into_inner();
    let got = items(&pods);
    assert_eq!(got.len(), 1, "db's node has no agent: {got:?}");
    assert_eq!(got[0]["metadata"]["name"], "web");
    assert_eq!(
        got[0]["containers"],
        json!([{"name": "app", "usage": {"cpu": "250m", "memory": "64Mi"}}])
    );

    // Selectors: only n2's pod is asked for, and n2 answers nothing.
    let only_db = client
        .raw()
        .metrics(request("pods", "default", "", "app=db"))
        .await
        .unwrap()
        .into_inner();
    assert!(only_db.items.is_empty());
    assert_eq!(only_db.unavailable, ["n2"]);
    let web_nodes = client
        .raw()
        .metrics(request("nodes", "", "", "role=web"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(items(&web_nodes).len(), 1);
    assert!(web_nodes.unavailable.is_empty());

    // Named objects without figures are NotFound, in metrics-server's words.
    let one = client
        .raw()
        .metrics(request("pods", "default", "web", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(items(&one)[0]["metadata"]["name"], "web");
    for (resource, name) in [("pods", "db"), ("pods", "nope"), ("nodes", "n2")] {
        let err = client
            .raw()
            .metrics(request(resource, "default", name, ""))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::NotFound,
            "{resource}/{name}: {err}"
        );
        assert!(err.message().contains("metrics.k8s.io"), "{err}");
    }
    let err = client
        .raw()
        .metrics(request("services", "", "", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
}

mod authorization {
    use std::sync::Arc;

    use corral_controlplane::auth::{UserInfo, AUTHENTICATED};
    use corral_controlplane::registry::{Registry, ServiceAllocator};
    use corral_controlplane::server::ApiService;
    use corral_controlplane::store::sqlite::SqliteStore;
    use corral_controlplane::tunnel::Tunnels;
    use corral_proto as pb;
    use pb::api_server::Api;
    use serde_json::json;
    use tonic::{Code, Request};

    use super::request;

    fn as_user<T>(user: &UserInfo, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.extensions_mut().insert(user.clone());
        req
    }

    /// As kube-apiserver authorizes the aggregated group: `list` on `pods`/`nodes` of
    /// `metrics.k8s.io`, which a namespace's `view` binding grants for its pods only.
    #[tokio::test]
    async fn metrics_are_authorized_as_the_metrics_k8s_io_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("db")).unwrap();
        let services = ServiceAllocator::new("10.43.0.0/16").unwrap();
        let registry = Arc::new(Registry::new(Arc::new(store), Default::default(), services));
        registry.bootstrap().await.unwrap();
        let api = ApiService::new(registry.clone(), Tunnels::default());
        let pat = UserInfo::new("pat", [AUTHENTICATED]);
        let err = api
            .metrics(as_user(&pat, request("pods", "default", "", "")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        assert!(
            err.message().contains(
                "cannot list resource \"pods\" in API group \"metrics.k8s.io\" in the namespace \"default\""
            ),
            "{err}"
        );
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "pat-view", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "pat"}]});
        registry
            .create(
                corral_api::kinds::by_plural("rolebindings").unwrap(),
                "default",
                binding,
                false,
            )
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match api
                .metrics(as_user(&pat, request("pods", "default", "", "")))
                .await
            {
                Ok(r) => {
                    assert!(r.into_inner().items.is_empty());
                    break;
                }
                // The policy is re-read when bindings change.
                Err(e) if e.code() == Code::PermissionDenied => {
                    assert!(tokio::time::Instant::now() < deadline, "{e}");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        for (resource, ns) in [("pods", "other"), ("pods", ""), ("nodes", "")] {
            let err = api
                .metrics(as_user(&pat, request(resource, ns, "", "")))
                .await
                .unwrap_err();
            assert_eq!(
                err.code(),
                Code::PermissionDenied,
                "{resource} in {ns:?}: {err}"
            );
        }
    }
}
