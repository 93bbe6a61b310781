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
use corral_api::runtime::{reflector, revision, watcher, Change, Store, WatcherConfig};
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
    /// Who Endpoints route to, kept by the store's change handler (not read from the store,
    /// whose content changes before its handlers run).
    index: Arc<Mutex<Index>>,
    changed: watch::Sender<u64>,
    max_hold: Duration,
}

/// Which pods Endpoints route to and when each stopped, updated together from each change.
#[derive(Debug, Default)]
pub struct Index {
    /// Ready addresses per pod uid, over every Endpoints.
    listed: HashMap<String, usize>,
    /// The newest Endpoints revision that dropped each pod, and when that was seen.
    removed: HashMap<String, (i64, Instant)>,
}

impl Index {
    /// Follows one change; `store_revision` is the store's revision once it applied it (a
    /// deletion's own revision: the cached object carries its last update's).
    pub fn apply(&mut self, c: &Change<Endpoints>, store_revision: i64) {
        let (old, new, dropped_at) = match c {
            Change::Added(new) => (BTreeSet::new(), ready_uids(new), 0),
            Change::Updated { old, new } => {
                (ready_uids(old), ready_uids(new), revision(&new.metadata))
            }
            Change::Deleted(old) => (
                ready_uids(old),
                BTreeSet::new(),
                revision(&old.metadata).max(store_revision),
            ),
        };
        for uid in new.difference(&old) {
            *self.listed.entry(uid.clone()).or_default() += 1;
        }
        let gone: Vec<&String> = old.difference(&new).collect();
        if gone.is_empty() {
            return;
        }
        self.removed.retain(|_, (_, at)| at.elapsed() < REMEMBER);
        for uid in gone {
            if let Some(n) = self.listed.get_mut(uid) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.listed.remove(uid);
                }
            }
            let entry = self
                .removed
                .entry(uid.clone())
                .or_insert((dropped_at, Instant::now()));
            *entry = (entry.0.max(dropped_at), Instant::now());
        }
    }

    pub fn listed(&self, uid: &str) -> bool {
        self.listed.contains_key(uid)
    }

    pub fn removed_at(&self, uid: &str) -> Option<i64> {
        self.removed.get(uid).map(|(r, _)| *r)
    }
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
        let index: Arc<Mutex<Index>> = Arc::default();
        {
            let (index, changed) = (index.clone(), changed.clone());
            let store = Arc::downgrade(&endpoints);
            endpoints.on_change(move |c| {
                let store_revision = store.upgrade().map_or(0, |s| s.resource_version());
                index.lock().apply(c, store_revision);
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
            index,
            changed,
            max_hold,
        })
    }

    fn decide(&self, uid: &str) -> Verdict {
        let (listed, removed_at) = {
            let index = self.index.lock();
            (index.listed(uid), index.removed_at(uid))
        };
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
    fn the_index_follows_each_change_and_dates_each_drop() {
        // (case, change, store revision after it, listed after, removed_at of "a")
        type Case = (
            &'static str,
            Change<Endpoints>,
            i64,
            Vec<&'static str>,
            Option<i64>,
        );
        let cases: Vec<Case> = vec![
            (
                "added",
                Change::Added(endpoints(5, &["a", "b"], &[])),
                5,
                vec!["a", "b"],
                None,
            ),
            (
                "a ready pod dropped, another kept",
                Change::Updated {
                    old: endpoints(5, &["a", "b"], &[]),
                    new: endpoints(9, &["b"], &[]),
                },
                9,
                vec!["b"],
                Some(9),
            ),
            (
                "not ready leaving drops nothing routed",
                Change::Updated {
                    old: endpoints(9, &["b"], &["a"]),
                    new: endpoints(10, &["b"], &[]),
                },
                10,
                vec!["b"],
                Some(9),
            ),
            (
                "back, then ready to not ready is a drop",
                Change::Updated {
                    old: endpoints(10, &["b"], &[]),
                    new: endpoints(11, &["a", "b"], &[]),
                },
                11,
                vec!["a", "b"],
                Some(9),
            ),
            (
                "the Endpoints deleted: dated by the store, not the cached object",
                Change::Deleted(endpoints(11, &["a", "b"], &[])),
                14,
                vec![],
                Some(14),
            ),
        ];
        let mut index = Index::default();
        for (name, change, store_revision, listed, removed_at) in cases {
            index.apply(&change, store_revision);
            let mut now: Vec<&str> = index.listed.keys().map(String::as_str).collect();
            now.sort();
            assert_eq!(now, listed, "{name}");
            assert_eq!(index.removed_at("a"), removed_at, "{name}");
        }
        // One pod behind two Services stays listed until both drop it.
        let mut index = Index::default();
        index.apply(&Change::Added(endpoints(1, &["a"], &[])), 1);
        index.apply(&Change::Added(endpoints(2, &["a"], &[])), 2);
        index.apply(&Change::Deleted(endpoints(2, &["a"], &[])), 3);
        assert!(index.listed("a"));
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
