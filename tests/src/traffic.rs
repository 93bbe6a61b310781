//! Clients of the workshop's app (`mi-deploy` behind `mi-deploy-svc` and the `mi-app.com`
//! Ingress) for the Service and rolling-update tests: one request as `curl` would send it, a
//! client looping through an update, the app's pods and endpoints, a component's /metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corral_api::k8s::api::core::v1::{Endpoints, Pod};
use corral_api::{Client, ListParams};

use crate::{eventually, netns_http_get, netns_http_get_path, HttpGetError, TestCluster};

/// How long the app's pods, endpoints and answers are waited for.
pub const WAIT: Duration = Duration::from_secs(90);

/// Why one request to the app failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Http(#[from] HttpGetError),
    #[error("status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected page: {body}")]
    Page { body: String },
}

pub async fn pods(client: &Client) -> Vec<Pod> {
    client
        .list::<Pod>("default", &ListParams::labels("app=mi-deploy"))
        .await
        .map(|(p, _)| p)
        .unwrap_or_default()
}

pub fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_default()
}

/// Waits until exactly the Deployment's 3 pods run `version`, all Ready, none terminating.
pub async fn wait_replicas(client: &Client, version: &str, cluster: &TestCluster) -> Vec<Pod> {
    let want = format!("fedek3/workshop-uns:{version}");
    let what = format!("3 ready pods of mi-deploy on {version}");
    let found = tokio::time::timeout(
        WAIT,
        eventually(&what, WAIT, || async {
            let all: Vec<Pod> = pods(client)
                .await
                .into_iter()
                .filter(|p| p.metadata.name.as_deref() != Some("mi-deploy-canary"))
                .collect();
            (all.len() == 3 && all.iter().all(|p| ready(p) && image(p) == want)).then_some(all)
        }),
    )
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}\n{}", cluster.logs()))
}

/// Ready and not-ready addresses of an Endpoints object.
pub async fn endpoint_ips(client: &Client) -> (BTreeSet<String>, BTreeSet<String>) {
    let ep: Option<Endpoints> = client
        .get_opt("default", "mi-deploy-svc")
        .await
        .ok()
        .flatten();
    let subsets = ep.and_then(|e| e.subsets).unwrap_or_default();
    let ips = |f: fn(&_) -> Option<Vec<corral_api::k8s::api::core::v1::EndpointAddress>>| {
        subsets
            .iter()
            .flat_map(|s| f(s).unwrap_or_default())
            .map(|a| a.ip)
            .collect::<BTreeSet<String>>()
    };
    (
        ips(|s| s.addresses.clone()),
        ips(|s| s.not_ready_addresses.clone()),
    )
}

pub fn pod_ips(ps: &[Pod]) -> BTreeSet<String> {
    ps.iter()
        .filter_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
        .collect()
}

/// Where a client stands and what it dials.
#[derive(Clone, Debug)]
pub struct Route {
    pub label: String,
    /// Network namespace to send from (None: the host).
    pub netns: Option<String>,
    pub addr: String,
    pub host: &'static str,
}

/// The page names the pod's hostname (its name) and the app version.
pub fn answered_by(body: &str) -> Option<(String, String)> {
    let host = body.split("Hello from ").nth(1)?.split('<').next()?.trim();
    let version = body.split("version: ").nth(1)?.split('<').next()?.trim();
    Some((host.to_string(), version.to_string()))
}

/// One request; Ok((pod, version)) or a description of the failure.
pub fn request(p: &Route) -> Result<(String, String), RequestError> {
    match netns_http_get(p.netns.as_deref(), &p.addr, p.host, Duration::from_secs(3))? {
        (200, body) => answered_by(&body).ok_or(RequestError::Page { body }),
        (status, body) => Err(RequestError::Status { status, body }),
    }
}

/// Sends requests until every one of `names` has answered on `path`.
pub async fn reaches_all(path: &Route, names: &BTreeSet<String>) {
    let (p, names) = (path.clone(), names.clone());
    let what = format!("{} to reach {names:?}", p.label);
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + WAIT;
        let mut seen = BTreeSet::new();
        let mut last = String::new();
        while !names.is_subset(&seen) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out: {what}; seen {seen:?}, last {last}"
            );
            match request(&p) {
                Ok((pod, _)) => {
                    seen.insert(pod);
                }
                Err(e) => {
                    last = e.to_string();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })
    .await
    .unwrap();
}

/// A client looping on one path until told to stop: answers per version, and failures.
pub fn spawn_loop(
    p: Route,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(BTreeMap<String, usize>, Vec<String>)> {
    std::thread::spawn(move || {
        let mut versions = BTreeMap::new();
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            match request(&p) {
                Ok((_, v)) => *versions.entry(v).or_default() += 1,
                Err(e) => failures.push(format!("{} at {at}: {e}", p.label)),
            }
        }
        (versions, failures)
    })
}

/// The samples of a component's /metrics inside a node's network namespace.
pub fn scrape(netns: &str, addr: &str) -> BTreeMap<String, f64> {
    let (code, body) = netns_http_get_path(
        Some(netns),
        addr,
        "metrics",
        "/metrics",
        Duration::from_secs(3),
    )
    .unwrap_or_else(|e| panic!("/metrics at {addr} in {netns}: {e}"));
    assert_eq!(code, 200, "{body}");
    corral_api::runtime::metrics::samples(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}
