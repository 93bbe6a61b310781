//! The Endpoints controller: for every Service with a selector, an Endpoints object of the same
//! name listing the matching pods' IP:port, ready ones in `addresses` and the rest in
//! `notReadyAddresses`, grouped into subsets by port set as Kubernetes' `RepackSubsets` does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::DeleteOptions;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::task::JoinHandle;

use crate::queue::WorkQueue;
use crate::{ops, util, wiring, Context, Error};
use corral_api::runtime::{reflector, watcher, Change, ObjectKey, Store, WatcherConfig};

const NAME: &str = "endpoints";

/// Registers the handlers, starts the Service and Endpoints informers (pods come from the
/// shared cache) and returns the tasks.
pub fn start(ctx: Arc<Context>) -> Vec<JoinHandle<()>> {
    let services = Store::<Service>::new();
    let endpoints = Store::<Endpoints>::new();
    let queue = WorkQueue::<ObjectKey>::new();
    wiring::enqueue_changes(&services, &queue);
    {
        // Someone else editing or deleting an Endpoints of a Service gets it repaired; an
        // Endpoints without a Service (written by hand, maybe before its selector-less
        // Service) is not ours to delete. Deleted Services are queued by their own event.
        let q = queue.clone();
        let svcs = services.clone();
        endpoints.on_change(move |c| {
            let key = ObjectKey::of(c.object().as_ref());
            if svcs.get(&key).is_some() {
                q.add(key);
            }
        });
    }
    {
        let q = queue.clone();
        let svcs = services.clone();
        ctx.pods.on_change(move |c| {
            for key in services_of_pod_change(c, |ns| svcs.list_ns(ns)) {
                q.add(key);
            }
        });
    }
    let mut handles = vec![
        tokio::spawn(reflector::reflect(
            services.clone(),
            watcher(ctx.client.clone(), WatcherConfig::all()),
        )),
        tokio::spawn(reflector::reflect(
            endpoints.clone(),
            watcher(ctx.client.clone(), WatcherConfig::all()),
        )),
    ];
    let (c, s, e) = (ctx.clone(), services.clone(), endpoints.clone());
    let synced = async move {
        s.wait_synced().await;
        e.wait_synced().await;
        c.pods.wait_synced().await;
    };
    let workers = ctx.config.workers;
    handles.push(wiring::spawn_workers(
        NAME,
        queue,
        workers,
        synced,
        move |key| {
            let (ctx, services, endpoints) = (ctx.clone(), services.clone(), endpoints.clone());
            async move { reconcile(&ctx, &services, &endpoints, &key).await }
        },
    ));
    handles
}

/// The Services a pod change concerns: those whose selector matches the old or new labels.
pub fn services_of_pod_change(
    change: &Change<Pod>,
    services_in: impl Fn(&str) -> Vec<Arc<Service>>,
) -> Vec<ObjectKey> {
    let mut versions: Vec<&Pod> = vec![change.object()];
    if let Change::Updated { old, .. } = change {
        versions.push(old);
    }
    let ns = util::namespace(&change.object().metadata);
    let mut keys: Vec<ObjectKey> = services_in(ns)
        .iter()
        .filter(|svc| selector(svc).is_some_and(|sel| versions.iter().any(|p| selects(sel, p))))
        .map(|svc| ObjectKey::of(svc.as_ref()))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

/// Every selector label must be on the pod (Kubernetes' set-based equality selector).
fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Resolves a service port's target on one pod: a number as is (the service port when unset),
/// a name through the pod's container ports with the same protocol.
pub fn target_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.as_ref()?.iter().find_map(|p| {
                    let proto = p.protocol.as_deref().unwrap_or("TCP");
                    (p.name.as_deref() == Some(name.as_str()) && proto == protocol)
                        .then_some(p.container_port)
                })
            })
        }
    }
}

/// The Endpoints the service should have, or `None` when the controller leaves it alone
/// (no selector, ExternalName). Pure.
pub fn plan(service: &Service, pods: &[Arc<Pod>]) -> Option<Endpoints> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let sel = selector(service)?;
    let ns = util::namespace(&service.metadata);
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.as_deref().unwrap_or_default();
    // Port set → (ready, not ready) addresses, keyed by IP for a stable order.
    type Addrs = (
        BTreeMap<String, EndpointAddress>,
        BTreeMap<String, EndpointAddress>,
    );
    let mut groups: BTreeMap<Vec<(String, i32, String)>, Addrs> = BTreeMap::new();
    for pod in pods {
        if util::namespace(&pod.metadata) != ns
            || pod.metadata.deletion_timestamp.is_some()
            || !selects(sel, pod)
        {
            continue;
        }
        let status = pod.status.as_ref();
        if matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        ) {
            continue;
        }
        let Some(ip) = status
            .and_then(|s| s.pod_ip.as_deref())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        let mut set: Vec<(String, i32, String)> = ports
            .iter()
            .filter_map(|p| {
                let target = target_port(pod, p)?;
                let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                Some((p.name.clone().unwrap_or_default(), target, proto))
            })
            .collect();
        if set.is_empty() && !ports.is_empty() {
            // No port resolves on this pod (a named targetPort it does not declare).
            continue;
        }
        set.sort();
        let addr = EndpointAddress {
            ip: ip.to_string(),
            // Kubernetes' rule: the pod's hostname names its address when its subdomain is
            // this Service (what `web-0.web.ns.svc.cluster.local` resolves through).
            hostname: pod
                .spec
                .as_ref()
                .filter(|s| s.subdomain.is_some() && s.subdomain == service.metadata.name)
                .and_then(|s| s.hostname.clone()),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some(ns.to_string()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let group = groups.entry(set).or_default();
        if publish_not_ready || is_ready(pod) {
            group.0.insert(ip.to_string(), addr);
        } else {
            group.1.insert(ip.to_string(), addr);
        }
    }
    let subsets: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: non_empty(ready.into_values().collect()),
            not_ready_addresses: non_empty(not_ready.into_values().collect()),
            ports: non_empty(
                ports
                    .into_iter()
                    .map(|(name, port, protocol)| EndpointPort {
                        name: Some(name).filter(|n| !n.is_empty()),
                        port,
                        protocol: Some(protocol),
                        ..Default::default()
                    })
                    .collect(),
            ),
        })
        .collect();
    Some(Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: Some(ns.to_string()),
            labels: service.metadata.labels.clone().filter(|l| !l.is_empty()),
            ..Default::default()
        },
        subsets: non_empty(subsets),
    })
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// What the executor does to make the stored Endpoints match the plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create(Endpoints),
    Update(Endpoints),
    Delete(Endpoints),
}

/// Compares desired and stored Endpoints: a write only when subsets or labels differ. Pure.
/// `service_exists` distinguishes "leave alone" (service without selector) from "gone".
pub fn diff(
    service_exists: bool,
    desired: Option<Endpoints>,
    current: Option<&Endpoints>,
) -> Option<Action> {
    match (desired, current) {
        (Some(d), None) => Some(Action::Create(d)),
        (Some(d), Some(c)) => {
            let same = normalized(&d.subsets) == normalized(&c.subsets)
                && d.metadata.labels.clone().unwrap_or_default()
                    == c.metadata.labels.clone().unwrap_or_default();
            if same {
                return None;
            }
            let mut updated = c.clone();
            updated.subsets = d.subsets;
            updated.metadata.labels = d.metadata.labels;
            Some(Action::Update(updated))
        }
        (None, Some(c)) if !service_exists => Some(Action::Delete(c.clone())),
        (None, _) => None,
    }
}

fn normalized(subsets: &Option<Vec<EndpointSubset>>) -> Vec<EndpointSubset> {
    subsets
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|mut s| {
            s.addresses = s.addresses.filter(|a| !a.is_empty());
            s.not_ready_addresses = s.not_ready_addresses.filter(|a| !a.is_empty());
            s.ports = s.ports.filter(|a| !a.is_empty());
            s
        })
        .collect()
}

#[tracing::instrument(skip(ctx, services, endpoints), fields(controller = NAME, key = %key))]
async fn reconcile(
    ctx: &Context,
    services: &Store<Service>,
    endpoints: &Store<Endpoints>,
    key: &ObjectKey,
) -> Result<Option<Duration>, Error> {
    let service = services.get(key);
    let current = endpoints.get(key);
    let desired = service
        .as_ref()
        .and_then(|svc| plan(svc, &ctx.pods.list_ns(&key.namespace)));
    match diff(service.is_some(), desired, current.as_deref()) {
        None => {}
        Some(Action::Create(ep)) => {
            tracing::debug!("creating endpoints");
            ops::create(&ctx.client, endpoints, ep, |e| e).await?;
        }
        Some(Action::Update(ep)) => {
            tracing::debug!("updating endpoints");
            ops::update(&ctx.client, endpoints, &ep).await?;
        }
        Some(Action::Delete(ep)) => {
            tracing::debug!("deleting endpoints of a deleted service");
            ops::delete(&ctx.client, endpoints, &ep, DeleteOptions::default()).await?;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn port(name: &str, port: i32, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            name: Some(name.into()).filter(|n: &String| !n.is_empty()),
            port,
            target_port: target,
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    fn service(selector: &[(&str, &str)], ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("mi-svc".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(labels(selector)),
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    struct P {
        name: &'static str,
        labels: &'static [(&'static str, &'static str)],
        ip: Option<&'static str>,
        ready: bool,
        terminating: bool,
        ports: &'static [(&'static str, i32)],
    }

    const APP: &[(&str, &str)] = &[("app", "mi-app"), ("tier", "frontend")];

    fn p(name: &'static str, ip: &'static str, ready: bool) -> P {
        P {
            name,
            labels: APP,
            ip: Some(ip),
            ready,
            terminating: false,
            ports: &[("http", 8080)],
        }
    }

    fn pod(p: &P) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(p.name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{}", p.name)),
                labels: Some(labels(p.labels)),
                deletion_timestamp: p.terminating.then_some(Time(jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                containers: vec![Container {
                    name: "app".into(),
                    ports: Some(
                        p.ports
                            .iter()
                            .map(|(n, port)| ContainerPort {
                                name: Some(n.to_string()),
                                container_port: *port,
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: p.ip.map(String::from),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if p.ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    /// Renders subsets as `ports | ready | not ready` lines for compact expectations.
    fn render(ep: &Endpoints) -> Vec<String> {
        let ips = |a: &Option<Vec<EndpointAddress>>| {
            a.iter()
                .flatten()
                .map(|a| {
                    format!(
                        "{}({})",
                        a.ip,
                        a.target_ref.as_ref().unwrap().name.as_ref().unwrap()
                    )
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        ep.subsets
            .iter()
            .flatten()
            .map(|s| {
                let ports = s
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| format!("{}:{}", p.name.as_deref().unwrap_or(""), p.port))
                    .collect::<Vec<_>>()
                    .join(",");
                format!(
                    "{ports} | {} | {}",
                    ips(&s.addresses),
                    ips(&s.not_ready_addresses)
                )
            })
            .collect()
    }

    #[test]
    fn plan_lists_matching_pods_by_readiness_and_resolves_ports() {
        let named = || vec![port("web", 80, Some(IntOrString::String("http".into())))];
        let cases: Vec<(&str, Service, Vec<P>, Vec<&str>)> = vec![
            (
                "ready and not-ready pods are split",
                service(APP, named()),
                vec![
                    p("a", "10.42.0.2", true),
                    p("b", "10.42.0.3", false),
                    p("c", "10.42.0.1", true),
                ],
                vec!["web:8080 | 10.42.0.1(c),10.42.0.2(a) | 10.42.0.3(b)"],
            ),
            (
                "pods without an IP or terminating are left out",
                service(APP, named()),
                vec![
                    P {
                        ip: None,
                        ..p("a", "", true)
                    },
                    P {
                        terminating: true,
                        ..p("b", "10.42.0.3", true)
                    },
                    p("c", "10.42.0.4", true),
                ],
                vec!["web:8080 | 10.42.0.4(c) | "],
            ),
            (
                "every selector label must match",
                service(APP, named()),
                vec![
                    P {
                        labels: &[("app", "mi-app"), ("tier", "backend")],
                        ..p("back", "10.42.0.5", true)
                    },
                    P {
                        labels: &[("app", "mi-app")],
                        ..p("bare", "10.42.0.6", true)
                    },
                    p("front", "10.42.0.7", true),
                ],
                vec!["web:8080 | 10.42.0.7(front) | "],
            ),
            (
                "a named target port resolves per pod into separate subsets",
                service(APP, named()),
                vec![
                    p("a", "10.42.0.2", true),
                    P {
                        ports: &[("http", 9090)],
                        ..p("b", "10.42.0.3", true)
                    },
                    P {
                        ports: &[("metrics", 9100)],
                        ..p("no-port", "10.42.0.4", true)
                    },
                ],
                vec!["web:8080 | 10.42.0.2(a) | ", "web:9090 | 10.42.0.3(b) | "],
            ),
            (
                "multi-port services list every port; unset targetPort is the port",
                service(
                    APP,
                    vec![
                        port("web", 80, Some(IntOrString::Int(8080))),
                        port("admin", 81, None),
                    ],
                ),
                vec![p("a", "10.42.0.2", true)],
                vec!["admin:81,web:8080 | 10.42.0.2(a) | "],
            ),
            (
                "no matching pod gives an empty Endpoints",
                service(&[("app", "other")], named()),
                vec![p("a", "10.42.0.2", true)],
                vec![],
            ),
        ];
        for (what, svc, pods, want) in cases {
            let pods: Vec<_> = pods.iter().map(pod).collect();
            let ep = plan(&svc, &pods).expect(what);
            assert_eq!(ep.metadata.name.as_deref(), Some("mi-svc"), "{what}");
            assert_eq!(render(&ep), want, "{what}");
        }
    }

    #[test]
    fn plan_fills_target_ref_and_node_name() {
        let svc = service(APP, vec![port("", 80, None)]);
        let ep = plan(&svc, &[pod(&p("a", "10.42.0.2", true))]).unwrap();
        let addr = &ep.subsets.unwrap()[0].addresses.clone().unwrap()[0];
        assert_eq!(addr.node_name.as_deref(), Some("node-1"));
        let r = addr.target_ref.as_ref().unwrap();
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("Pod"), Some("a"), Some("uid-a"))
        );
    }

    #[test]
    fn a_pod_whose_subdomain_is_the_service_is_listed_by_its_hostname() {
        let svc = service(APP, vec![port("", 80, None)]);
        let with = |hostname: &str, subdomain: &str| {
            let pod = pod(&p("a", "10.42.0.2", true));
            let mut pod = (*pod).clone();
            let spec = pod.spec.get_or_insert_with(Default::default);
            spec.hostname = Some(hostname.into());
            spec.subdomain = Some(subdomain.into());
            let ep = plan(&svc, &[Arc::new(pod)]).unwrap();
            ep.subsets.unwrap()[0].addresses.clone().unwrap()[0]
                .hostname
                .clone()
        };
        assert_eq!(with("web-0", "mi-svc").as_deref(), Some("web-0"));
        assert_eq!(with("web-0", "other"), None);
    }

    #[test]
    fn services_without_selector_or_external_name_are_left_alone() {
        let mut no_sel = service(APP, vec![]);
        no_sel.spec.as_mut().unwrap().selector = None;
        assert_eq!(plan(&no_sel, &[]), None);
        let mut ext = service(APP, vec![]);
        ext.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        assert_eq!(plan(&ext, &[]), None);
    }

    #[test]
    fn diff_writes_only_on_change() {
        let svc = service(APP, vec![port("web", 80, None)]);
        let one = plan(&svc, &[pod(&p("a", "10.42.0.2", true))]).unwrap();
        let two = plan(
            &svc,
            &[
                pod(&p("a", "10.42.0.2", true)),
                pod(&p("b", "10.42.0.3", true)),
            ],
        )
        .unwrap();
        let mut stored = one.clone();
        stored.metadata.resource_version = Some("7".into());
        // The server may hand back empty lists where the plan has none.
        let mut stored_empty = plan(&svc, &[]).unwrap();
        stored_empty.subsets = Some(vec![]);
        type Case<'a> = (
            &'a str,
            bool,
            Option<Endpoints>,
            Option<&'a Endpoints>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "missing is created",
                true,
                Some(one.clone()),
                None,
                Some("create"),
            ),
            (
                "unchanged is left",
                true,
                Some(one.clone()),
                Some(&stored),
                None,
            ),
            (
                "changed is updated",
                true,
                Some(two.clone()),
                Some(&stored),
                Some("update"),
            ),
            (
                "empty equals none",
                true,
                plan(&svc, &[]),
                Some(&stored_empty),
                None,
            ),
            ("no selector keeps it", true, None, Some(&stored), None),
            (
                "deleted service removes it",
                false,
                None,
                Some(&stored),
                Some("delete"),
            ),
            ("nothing to do", false, None, None, None),
        ];
        for (what, exists, desired, current, want) in cases {
            let got = diff(exists, desired, current).map(|a| match a {
                Action::Create(_) => "create",
                Action::Update(e) => {
                    // Updates keep the stored resourceVersion (compare-and-swap).
                    assert_eq!(e.metadata.resource_version.as_deref(), Some("7"));
                    "update"
                }
                Action::Delete(_) => "delete",
            });
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn pod_changes_queue_the_services_selecting_old_or_new_labels() {
        let svc = Arc::new(service(APP, vec![]));
        let mut other = service(&[("app", "other")], vec![]);
        other.metadata.name = Some("other".into());
        let other = Arc::new(other);
        let old = pod(&p("a", "10.42.0.2", true));
        let mut moved = (*old).clone();
        moved.metadata.labels = Some(labels(&[("app", "other")]));
        let change = Change::Updated {
            old,
            new: Arc::new(moved),
        };
        let keys = services_of_pod_change(&change, |_| vec![svc.clone(), other.clone()]);
        assert_eq!(
            keys,
            vec![
                ObjectKey::new("default", "mi-svc"),
                ObjectKey::new("default", "other")
            ]
        );
    }
}
