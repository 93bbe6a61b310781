//! `corral cluster` lifecycle on this machine: nodes come up Ready, and delete leaves nothing.

use std::time::Duration;

use corral_api::k8s::api::core::v1::Node;
use corral_api::ListParams;
use corral_tests::{skip_unless_e2e, HostSnapshot, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_comes_up_ready_and_delete_leaves_nothing_behind() {
    skip_unless_e2e!();
    let before = HostSnapshot::take();
    {
        let cluster = TestCluster::create("lifecycle", 1).await;
        let client = cluster.client().await;
        let (nodes, _) = client
            .list::<Node>("", &ListParams::default())
            .await
            .unwrap();
        let mut names: Vec<_> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["corral-lifecycle-agent-0", "corral-lifecycle-server-0"],
            "{}",
            cluster.logs()
        );
        // Pod routes are the agents' (corral-podnet, host-gw, route protocol 77), and the
        // host's own routes to the pod CIDRs come from the same planner.
        let l = &cluster.state.layout;
        let (server, agent) = (&l.nodes[0], &l.nodes[1]);
        let want = format!("{} via {} dev eth0", agent.pod_cidr, agent.ip);
        let routes_77 = |args: Vec<String>| async move {
            let out = std::process::Command::new("ip").args(&args).output().ok()?;
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        corral_tests::eventually(
            "the server's route to the agent's pods",
            Duration::from_secs(30),
            || {
                let args: Vec<String> = ["-n", &server.netns, "route", "show", "proto", "77"]
                    .map(String::from)
                    .into();
                let want = want.clone();
                async move {
                    routes_77(args)
                        .await
                        .filter(|r| r.contains(&want))
                        .map(drop)
                }
            },
        )
        .await;
        let host = routes_77(["route", "show", "proto", "77"].map(String::from).into())
            .await
            .unwrap_or_default();
        for n in &l.nodes {
            assert!(
                host.contains(&format!("{} via {}", n.pod_cidr, n.ip)),
                "{host}"
            );
        }
        let after_create = HostSnapshot::take();
        assert!(after_create
            .netns
            .iter()
            .any(|n| n.starts_with("corral-lifecycle-server-0")));
        // Node failure drill: the node's processes die and its link goes down, then it returns.
        corral_cluster::node_stop(&cluster.opts, "corral-lifecycle-agent-0")
            .await
            .unwrap();
        corral_cluster::node_start(
            &cluster.opts,
            "corral-lifecycle-agent-0",
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
        // Stop and start: the objects come back from the store and the pods run again.
        let pod: corral_api::k8s::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "survivor", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "fedek3/workshop-uns:v0.2.0"}]}
        }))
        .unwrap();
        client.create(&pod).await.unwrap();
        let running = || async {
            let c = cluster.client().await;
            let p: Option<corral_api::k8s::api::core::v1::Pod> =
                c.get_opt("default", "survivor").await.ok().flatten();
            (p?.status?.phase.as_deref() == Some("Running")).then_some(())
        };
        corral_tests::eventually("the pod running", Duration::from_secs(60), running).await;
        corral_cluster::stop(&cluster.opts, "lifecycle", &|_| {})
            .await
            .unwrap();
        corral_cluster::start(&cluster.opts, "lifecycle", Duration::from_secs(60), &|_| {})
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
        corral_tests::eventually(
            "the pod running after a restart",
            Duration::from_secs(60),
            running,
        )
        .await;
    }
    let after = HostSnapshot::take();
    assert_eq!(before.netns, after.netns, "network namespaces left behind");
    assert_eq!(before.links, after.links, "links left behind");
    assert_eq!(before.mounts, after.mounts, "mounts left behind");
    assert_eq!(before.routes, after.routes, "routes left behind");
    assert_eq!(
        before.iptables, after.iptables,
        "host iptables rules left behind"
    );
    assert_eq!(before.processes, after.processes, "processes left behind");
}
