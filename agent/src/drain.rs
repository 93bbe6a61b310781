//! Holding a terminating pod's SIGTERM until every node's proxy has stopped sending it
//! traffic. The agent follows Endpoints and the proxies' reports
//! (`corral_api::rules::programmed`); `lifecycle::stop` waits on `EndpointDrain::dropped`
//! beside the preStop hook. Kubernetes has no such wait: its users add a preStop sleep.

pub mod fake;
pub mod plan;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::k8s::api::coordination::v1::Lease;
use corral_api::k8s::api::core::v1::Endpoints;
use corral_api::rules::programmed::{self, Report};
use corral_api::runtime::{reflector, watcher, Change, Store, WatcherConfig};
use corral_api::{Client, ListParams};
use futures::future::{BoxFuture, FutureExt};
use parking_lot::Mutex;
use tokio::sync::watch;

pub use plan::Verdict;

/// How a hold ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing (more) to wait for.
    Released(Verdict),
    /// The bound passed first; the verdict says what was still awaited.
    TimedOut(Verdict),
    /// The feature is off.
    Off,
}

impl Outcome {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Released(Verdict::NotServed) => "not_served",
            Outcome::Released(_) => "dropped",
            Outcome::TimedOut(_) => "timed_out",
            Outcome::Off => "off",
        }
    }
}

/// The seam the pod worker waits on.
pub trait EndpointDrain: Send + Sync {
    /// Resolves once every live proxy has dropped pod `uid`, or after at most `grace` (and
    /// the implementation's own bound).
    fn dropped(&self, uid: &str, grace: Duration) -> BoxFuture<'static, Outcome>;
}

/// The feature turned off (`--endpoint-drain-timeout 0`): SIGTERM at once, as kubelet.
pub struct Off;

impl EndpointDrain for Off {
    fn dropped(&self, _uid: &str, _grace: Duration) -> BoxFuture<'static, Outcome> {
        futures::future::ready(Outcome::Off).boxed()
    }
}

/// Removals remembered this long (a pod's termination starts well within it).
const REMEMBER: Duration = Duration::from_secs(300);
/// Re-decided this often without a change, so a report that expires stops counting.
const RECHECK: Duration = Duration::from_secs(1);

/// The real thing: Endpoints and the proxies' reports, followed from the API server.
pub struct ProxyDrain {
    endpoints: Arc<Store<Endpoints>>,
    reports: Arc<Store<Lease>>,
    /// The newest Endpoints revision that dropped each pod, by uid.
    removed: Arc<Mutex<HashMap<String, (i64, Instant)>>>,
    changed: watch::Sender<u64>,
    max_hold: Duration,
}

impl ProxyDrain {
    /// Starts following Endpoints and reports; holds last at most `max_hold`.
    pub fn start(client: &Client, max_hold: Duration) -> Arc<Self> {
        let endpoints = Store::<Endpoints>::new();
        let reports = Store::<Lease>::new();
        tokio::spawn(reflector::reflect(
            endpoints.clone(),
            watcher::<Endpoints>(client.clone(), WatcherConfig::all()),
        ));
        let config = WatcherConfig {
            namespace: programmed::NAMESPACE.into(),
            params: ListParams::labels(programmed::selector()),
        };
        tokio::spawn(reflector::reflect(
            reports.clone(),
            watcher::<Lease>(client.clone(), config),
        ));
        Self::over(endpoints, reports, max_hold)
    }

    /// Waits on these stores, whoever feeds them.
    pub fn over(
        endpoints: Arc<Store<Endpoints>>,
        reports: Arc<Store<Lease>>,
        max_hold: Duration,
    ) -> Arc<Self> {
        let (changed, _) = watch::channel(0u64);
        let removed: Arc<Mutex<HashMap<String, (i64, Instant)>>> = Arc::default();
        {
            let (removed, changed) = (removed.clone(), changed.clone());
            endpoints.on_change(move |c| {
                let dropped = dropped_by(c);
                if !dropped.is_empty() {
                    let mut map = removed.lock();
                    map.retain(|_, (_, at)| at.elapsed() < REMEMBER);
                    for (uid, revision) in dropped {
                        let entry = map.entry(uid).or_insert((revision, Instant::now()));
                        *entry = (entry.0.max(revision), Instant::now());
                    }
                }
                changed.send_modify(|g| *g += 1);
            });
        }
        {
            let changed = changed.clone();
            reports.on_change(move |_| changed.send_modify(|g| *g += 1));
        }
        Arc::new(Self {
            endpoints,
            reports,
            removed,
            changed,
            max_hold,
        })
    }

    fn decide(&self, uid: &str) -> Verdict {
        let listed = self
            .endpoints
            .list()
            .iter()
            .any(|e| ready_uids(e).contains(uid));
        let removed_at = self.removed.lock().get(uid).map(|(r, _)| *r);
        let reports: Vec<Report> = self
            .reports
            .list()
            .iter()
            .filter_map(|l| Report::parse(l))
            .collect();
        plan::decide(&plan::View {
            listed,
            removed_at,
            reports: &reports,
            now: jiff::Timestamp::now(),
        })
    }
}

impl EndpointDrain for Arc<ProxyDrain> {
    fn dropped(&self, uid: &str, grace: Duration) -> BoxFuture<'static, Outcome> {
        let this = self.clone();
        let uid = uid.to_string();
        let deadline = tokio::time::Instant::now() + grace.min(self.max_hold);
        async move {
            let mut changes = this.changed.subscribe();
            let synced = async {
                this.endpoints.wait_synced().await;
                this.reports.wait_synced().await;
            };
            if tokio::time::timeout_at(deadline, synced).await.is_err() {
                return Outcome::TimedOut(Verdict::WaitEndpoints);
            }
            loop {
                changes.borrow_and_update();
                let verdict = this.decide(&uid);
                if verdict.released() {
                    return Outcome::Released(verdict);
                }
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(RECHECK) => {}
                    _ = tokio::time::sleep_until(deadline) => return Outcome::TimedOut(verdict),
                }
            }
        }
        .boxed()
    }
}

/// The uids of the pods an Endpoints routes to (its ready addresses).
fn ready_uids(e: &Endpoints) -> BTreeSet<String> {
    e.subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter_map(|a| a.target_ref.as_ref()?.uid.clone())
        .collect()
}

/// The pods a change stopped routing to, with the revision that did it.
fn dropped_by(c: &Change<Endpoints>) -> Vec<(String, i64)> {
    let revision = |e: &Endpoints| {
        e.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    match c {
        Change::Added(_) => vec![],
        Change::Updated { old, new } => {
            let now = ready_uids(new);
            ready_uids(old)
                .into_iter()
                .filter(|u| !now.contains(u))
                .map(|u| (u, revision(new)))
                .collect()
        }
        Change::Deleted(old) => ready_uids(old)
            .into_iter()
            .map(|u| (u, revision(old)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::k8s::api::core::v1::{EndpointAddress, EndpointSubset, ObjectReference};
    use corral_api::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn endpoints(rv: i64, ready: &[&str], not_ready: &[&str]) -> Arc<Endpoints> {
        let addr = |uid: &&str| EndpointAddress {
            ip: "10.42.0.9".into(),
            target_ref: Some(ObjectReference {
                uid: Some(uid.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        Arc::new(Endpoints {
            metadata: ObjectMeta {
                resource_version: Some(rv.to_string()),
                ..Default::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(ready.iter().map(addr).collect()),
                not_ready_addresses: Some(not_ready.iter().map(addr).collect()),
                ..Default::default()
            }]),
        })
    }

    #[test]
    fn a_change_drops_the_ready_pods_it_no_longer_lists() {
        type Case = (&'static str, Change<Endpoints>, Vec<(String, i64)>);
        let cases: Vec<Case> = vec![
            ("added", Change::Added(endpoints(5, &["a"], &[])), vec![]),
            (
                "a ready pod dropped, another kept",
                Change::Updated {
                    old: endpoints(5, &["a", "b"], &[]),
                    new: endpoints(9, &["b"], &[]),
                },
                vec![("a".into(), 9)],
            ),
            (
                "ready to not ready is a drop",
                Change::Updated {
                    old: endpoints(5, &["a"], &[]),
                    new: endpoints(9, &[], &["a"]),
                },
                vec![("a".into(), 9)],
            ),
            (
                "not ready leaving drops nothing routed",
                Change::Updated {
                    old: endpoints(5, &[], &["a"]),
                    new: endpoints(9, &[], &[]),
                },
                vec![],
            ),
            (
                "the Endpoints deleted",
                Change::Deleted(endpoints(12, &["a"], &[])),
                vec![("a".into(), 12)],
            ),
        ];
        for (name, change, want) in cases {
            assert_eq!(dropped_by(&change), want, "{name}");
        }
    }

    /// A proxy's report as the watch delivers it, at store revision `rv`.
    fn report(node: &str, programmed: i64, renewed: jiff::Timestamp, rv: i64) -> Lease {
        let mut l = programmed::report(node, programmed, renewed);
        l.metadata.resource_version = Some(rv.to_string());
        l
    }

    fn with_uid(rv: i64, ready: &[&str]) -> Endpoints {
        let mut e = (*endpoints(rv, ready, &[])).clone();
        e.metadata.name = Some("svc".into());
        e.metadata.namespace = Some("default".into());
        e
    }

    #[tokio::test]
    async fn a_hold_ends_once_every_live_proxy_is_past_the_revision_that_dropped_the_pod() {
        use corral_api::runtime::Event;
        let endpoints = Store::<Endpoints>::new();
        let reports = Store::<Lease>::new();
        let drain = ProxyDrain::over(endpoints.clone(), reports.clone(), Duration::from_secs(5));
        let now = jiff::Timestamp::now();
        endpoints.apply(Event::Restarted(vec![with_uid(10, &["old", "new"])], 10));
        reports.apply(Event::Restarted(
            vec![report("n1", 10, now, 3), report("n2", 10, now, 4)],
            10,
        ));
        let hold = tokio::spawn(drain.dropped("old", Duration::from_secs(30)));
        let step = || tokio::time::sleep(Duration::from_millis(50));
        // Pacing between steps: the hold must still be waiting after each.
        step().await;
        assert!(
            !hold.is_finished(),
            "released while Endpoints still route to it"
        );
        endpoints.apply(Event::Applied(with_uid(12, &["new"])));
        reports.apply(Event::Applied(report("n1", 12, now, 13)));
        step().await;
        assert!(!hold.is_finished(), "released with n2's proxy behind");
        reports.apply(Event::Applied(report("n2", 13, now, 14)));
        let outcome = tokio::time::timeout(Duration::from_secs(5), hold)
            .await
            .expect("released once both proxies passed revision 12")
            .unwrap();
        assert_eq!(outcome, Outcome::Released(Verdict::Dropped { proxies: 2 }));

        // A pod no Endpoints ever listed is not held; a dead proxy is not waited for.
        assert_eq!(
            drain.dropped("stranger", Duration::from_secs(30)).await,
            Outcome::Released(Verdict::NotServed)
        );
        let long_ago = now - jiff::SignedDuration::from_secs(60);
        reports.apply(Event::Applied(report("n2", 0, long_ago, 15)));
        endpoints.apply(Event::Applied(with_uid(16, &[])));
        reports.apply(Event::Applied(report("n1", 16, now, 17)));
        assert_eq!(
            drain.dropped("new", Duration::from_secs(30)).await,
            Outcome::Released(Verdict::Dropped { proxies: 1 })
        );
    }

    #[tokio::test]
    async fn a_hold_gives_up_at_its_bound_naming_who_is_behind() {
        use corral_api::runtime::Event;
        let endpoints = Store::<Endpoints>::new();
        let reports = Store::<Lease>::new();
        let drain = ProxyDrain::over(
            endpoints.clone(),
            reports.clone(),
            Duration::from_millis(200),
        );
        let now = jiff::Timestamp::now();
        endpoints.apply(Event::Restarted(vec![with_uid(10, &["old"])], 10));
        reports.apply(Event::Restarted(
            vec![programmed::report("n1", 10, now)],
            10,
        ));
        endpoints.apply(Event::Applied(with_uid(11, &[])));
        assert_eq!(
            drain.dropped("old", Duration::from_secs(30)).await,
            Outcome::TimedOut(Verdict::WaitProxies {
                behind: vec!["n1".into()]
            })
        );
    }

    #[tokio::test]
    async fn off_releases_at_once() {
        assert_eq!(
            Off.dropped("u", Duration::from_secs(30)).await,
            Outcome::Off
        );
    }
}
