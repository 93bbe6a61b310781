//! Endpoints controller behaviour over the real API server: pods get IPs and readiness by hand
//! (no simulated node is registered, so nothing else touches them).

mod common;

use common::*;
use corral_api::k8s::api::core::v1::{
    Container, ContainerPort, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod,
    PodCondition, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use corral_api::k8s::apimachinery::pkg::util::intstr::IntOrString;
use corral_api::{Client, DeleteOptions, WatchEvent};
use futures::StreamExt;

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const FRONTEND: &[(&str, &str)] = &[("app", "mi-app"), ("tier", "frontend")];

fn service() -> Service {
    let mut m = meta("default", "mi-app-svc");
    m.labels = Some(labels(&[("app", "mi-app")]));
    Service {
        metadata: m,
        spec: Some(ServiceSpec {
            selector: Some(labels(FRONTEND)),
            ports: Some(vec![ServicePort {
                name: Some("web".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn pod(client: &Client, name: &str, labels_: &[(&str, &str)], ip: &str, ready: bool) -> Pod {
    let mut m = meta("default", name);
    m.labels = Some(labels(labels_));
    let created = client
        .create(&Pod {
            metadata: m,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("fedek3/workshop-uns:v0.2.0".into()),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    set_status(client, &created, ip, ready).await
}

async fn set_status(client: &Client, pod: &Pod, ip: &str, ready: bool) -> Pod {
    let mut p = pod.clone();
    p.metadata.resource_version = None;
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some(ip.into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    client.update_status(&p).await.unwrap()
}

/// `ready ips | not-ready ips | ports` of the stored Endpoints, when it exists.
async fn summary(client: &Client) -> Option<(Vec<String>, Vec<String>, Vec<String>, String)> {
    let ep = client
        .get_opt::<Endpoints>("default", "mi-app-svc")
        .await
        .unwrap()?;
    let mut ready = vec![];
    let mut not_ready = vec![];
    let mut ports = vec![];
    for s in ep.subsets.iter().flatten() {
        ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
        ports.extend(
            s.ports
                .iter()
                .flatten()
                .map(|p| format!("{}:{}", p.name.as_deref().unwrap_or(""), p.port)),
        );
    }
    Some((
        ready,
        not_ready,
        ports,
        ep.metadata.resource_version.unwrap_or_default(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_matching_pods_and_their_readiness() {
    let c = start(Default::default()).await;
    let client = c.client.clone();
    let a = pod(&client, "front-a", FRONTEND, "10.42.0.2", true).await;
    pod(&client, "front-b", FRONTEND, "10.42.0.3", false).await;
    pod(
        &client,
        "back",
        &[("app", "mi-app"), ("tier", "backend")],
        "10.42.0.4",
        true,
    )
    .await;
    client.create(&service()).await.unwrap();

    let want = |r: &[&str], n: &[&str]| {
        let r: Vec<String> = r.iter().map(|s| s.to_string()).collect();
        let n: Vec<String> = n.iter().map(|s| s.to_string()).collect();
        move |s: &(Vec<String>, Vec<String>, Vec<String>, String)| s.0 == r && s.1 == n
    };
    let first = eventually(10, "endpoints with one ready and one not-ready pod", || {
        let client = client.clone();
        let ok = want(&["10.42.0.2"], &["10.42.0.3"]);
        async move { summary(&client).await.filter(|s| ok(s)) }
    })
    .await;
    assert_eq!(first.2, vec!["web:8080"], "named targetPort resolved");

    // A change to a pod no service selects does not rewrite the Endpoints.
    let back = client.get::<Pod>("default", "back").await.unwrap();
    set_status(&client, &back, "10.42.0.9", false).await;
    // Readiness flips move addresses between the lists.
    set_status(&client, &a, "10.42.0.2", false).await;
    let b = client.get::<Pod>("default", "front-b").await.unwrap();
    set_status(&client, &b, "10.42.0.3", true).await;
    eventually(10, "readiness swapped", || {
        let client = client.clone();
        let ok = want(&["10.42.0.3"], &["10.42.0.2"]);
        async move { summary(&client).await.filter(|s| ok(s)) }
    })
    .await;

    // Deleting a pod (unbound, so removed at once) drops it.
    client
        .delete::<Pod>("default", "front-a", DeleteOptions::default())
        .await
        .unwrap();
    let settled = eventually(10, "deleted pod gone", || {
        let client = client.clone();
        let ok = want(&["10.42.0.3"], &[]);
        async move { summary(&client).await.filter(|s| ok(s)) }
    })
    .await;

    // A change that alters nothing listed (a pod no service selects) writes nothing: watching
    // from here, the only event is the one for the selected pod's change that follows it.
    let watch = client
        .watch::<Endpoints>(
            "default",
            &Default::default(),
            settled.3.parse::<i64>().unwrap(),
        )
        .await
        .unwrap();
    let back = client.get::<Pod>("default", "back").await.unwrap();
    set_status(&client, &back, "10.42.0.10", true).await;
    let b = client.get::<Pod>("default", "front-b").await.unwrap();
    set_status(&client, &b, "10.42.0.3", false).await;
    let mut watch = Box::pin(watch);
    let mut writes = 0;
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(ev) = watch.next().await {
            match ev.unwrap() {
                WatchEvent::Modified(ep) => {
                    writes += 1;
                    let nr = ep.subsets.iter().flatten().any(|s| {
                        s.not_ready_addresses
                            .iter()
                            .flatten()
                            .any(|a| a.ip == "10.42.0.3")
                    });
                    if nr {
                        break;
                    }
                }
                WatchEvent::Bookmark(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("front-b reported not ready");
    assert_eq!(writes, 1, "only the selected pod's change was written");

    // A deleted service takes its Endpoints along.
    client
        .delete::<Service>("default", "mi-app-svc", DeleteOptions::default())
        .await
        .unwrap();
    eventually(10, "endpoints deleted with the service", || {
        let client = client.clone();
        async move { summary(&client).await.is_none().then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_removed_by_hand_are_recreated_and_hand_written_ones_left_alone() {
    let c = start(Default::default()).await;
    let client = c.client.clone();
    pod(&client, "front-a", FRONTEND, "10.42.0.2", true).await;
    client.create(&service()).await.unwrap();
    let first = eventually(10, "endpoints created", || {
        let client = client.clone();
        async move { summary(&client).await.filter(|s| s.0 == ["10.42.0.2"]) }
    })
    .await;
    client
        .delete::<Endpoints>("default", "mi-app-svc", DeleteOptions::default())
        .await
        .unwrap();
    let again = eventually(10, "endpoints recreated", || {
        let client = client.clone();
        async move { summary(&client).await.filter(|s| s.0 == ["10.42.0.2"]) }
    })
    .await;
    let (r1, r2): (i64, i64) = (first.3.parse().unwrap(), again.3.parse().unwrap());
    assert!(r2 > r1, "a recreated object has a newer revision");

    // Endpoints written by hand without a Service are left alone, and so are those of a
    // Service without selector.
    let mut manual = Endpoints {
        metadata: meta("default", "external-db"),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: "192.168.1.10".into(),
                ..Default::default()
            }]),
            ports: Some(vec![EndpointPort {
                port: 5432,
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    };
    manual = client.create(&manual).await.unwrap();
    let mut no_selector = service();
    no_selector.metadata = meta("default", "external-db");
    no_selector.spec.as_mut().unwrap().selector = None;
    client.create(&no_selector).await.unwrap();
    // A later change the controller does make proves it has processed the events above.
    client
        .delete::<Pod>("default", "front-a", DeleteOptions::default())
        .await
        .unwrap();
    eventually(10, "front-a removed", || {
        let client = client.clone();
        async move { summary(&client).await.filter(|s| s.0.is_empty()) }
    })
    .await;
    let still = client
        .get::<Endpoints>("default", "external-db")
        .await
        .unwrap();
    assert_eq!(
        still.metadata.resource_version,
        manual.metadata.resource_version
    );
}
