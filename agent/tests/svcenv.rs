//! End to end: a container started after a Service exists gets the Service's environment
//! variables (`<NAME>_SERVICE_HOST`, `_SERVICE_PORT`, docker-link `_PORT*`), and none of
//! them with `enableServiceLinks: false`.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, DEADLINE};
use corral_api::k8s::api::core::v1::{Container, Pod, PodSpec, Service, ServicePort, ServiceSpec};

async fn read_logs(c: &Cluster, pod: &str) -> Result<String, tonic::Status> {
    let req = corral_proto::LogsRequest {
        namespace: "default".into(),
        pod: pod.into(),
        container: String::new(),
        follow: false,
        previous: false,
        tail_lines: -1,
        ..Default::default()
    };
    let mut stream = c.client.raw().logs(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        out.extend(chunk.data);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn env_of(c: &Cluster, name: &str, links: Option<bool>) -> Vec<String> {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    p.spec = Some(PodSpec {
        containers: vec![Container {
            name: "app".into(),
            image: Some("corral-test/sleeper:v1".into()),
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                "env; echo END; sleep 3600".into(),
            ]),
            ..Default::default()
        }],
        enable_service_links: links,
        termination_grace_period_seconds: Some(1),
        ..Default::default()
    });
    let p = c.client.create(&p).await.unwrap();
    let uid = p.metadata.uid.clone().unwrap();
    c.client.bind("default", name, &uid, &c.name).await.unwrap();
    let start = Instant::now();
    loop {
        match read_logs(c, name).await {
            Ok(s) if s.contains("END\n") => return s.lines().map(String::from).collect(),
            other => {
                assert!(
                    start.elapsed() < DEADLINE,
                    "logs of {name}: {other:?}\n{}",
                    c.agent_log()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_get_variables_of_services_that_existed_when_they_started() {
    skip_unless_runnable!();
    let c = Cluster::start().await;
    c.wait_node_ready().await;
    let mut s = Service::default();
    s.metadata.name = Some("mi-app-svc".into());
    s.metadata.namespace = Some("default".into());
    s.spec = Some(ServiceSpec {
        selector: Some([("app".to_string(), "mi-app".to_string())].into()),
        ports: Some(vec![ServicePort {
            name: Some("http".into()),
            port: 80,
            ..Default::default()
        }]),
        ..Default::default()
    });
    let s = c.client.create(&s).await.unwrap();
    let ip = s
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("the API server allocates a cluster IP");

    let env = env_of(&c, "linked", None).await;
    for want in [
        format!("MI_APP_SVC_SERVICE_HOST={ip}"),
        "MI_APP_SVC_SERVICE_PORT=80".to_string(),
        "MI_APP_SVC_SERVICE_PORT_HTTP=80".to_string(),
        format!("MI_APP_SVC_PORT=tcp://{ip}:80"),
        format!("MI_APP_SVC_PORT_80_TCP=tcp://{ip}:80"),
        "MI_APP_SVC_PORT_80_TCP_PROTO=tcp".to_string(),
        "MI_APP_SVC_PORT_80_TCP_PORT=80".to_string(),
        format!("MI_APP_SVC_PORT_80_TCP_ADDR={ip}"),
    ] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }

    let env = env_of(&c, "unlinked", Some(false)).await;
    assert!(
        !env.iter().any(|e| e.starts_with("MI_APP_SVC_")),
        "enableServiceLinks=false: {env:?}"
    );
}
