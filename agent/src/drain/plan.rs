//! When a terminating pod's containers may get SIGTERM: once no Endpoints routes to the pod
//! and every live proxy reports having programmed the Endpoints revision that dropped it.
//! Pure: the executor (`drain.rs`) gathers the view and waits for the next change.

use corral_api::rules::programmed::Report;
use jiff::Timestamp;

/// What the agent knows about one terminating pod.
#[derive(Debug, Clone)]
pub struct View<'a> {
    /// Some Endpoints still lists the pod among its ready addresses.
    pub listed: bool,
    /// The newest Endpoints revision that dropped the pod, if one did while the agent watched.
    pub removed_at: Option<i64>,
    pub reports: &'a [Report],
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No Service routes to the pod (and none did while the agent watched): nothing to wait for.
    NotServed,
    /// Every live proxy has programmed the pod's removal.
    Dropped { proxies: usize },
    /// The endpoints controller has not dropped the pod yet.
    WaitEndpoints,
    /// These nodes' proxies are still behind the removal.
    WaitProxies { behind: Vec<String> },
}

impl Verdict {
    pub fn released(&self) -> bool {
        matches!(self, Verdict::NotServed | Verdict::Dropped { .. })
    }
}

pub fn decide(v: &View) -> Verdict {
    if v.listed {
        return Verdict::WaitEndpoints;
    }
    let Some(removed) = v.removed_at else {
        return Verdict::NotServed;
    };
    let live: Vec<&Report> = v.reports.iter().filter(|r| r.live(v.now)).collect();
    let mut behind: Vec<String> = live
        .iter()
        .filter(|r| r.programmed < removed)
        .map(|r| r.node.clone())
        .collect();
    if behind.is_empty() {
        return Verdict::Dropped {
            proxies: live.len(),
        };
    }
    behind.sort();
    Verdict::WaitProxies { behind }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn report(node: &str, programmed: i64, expires: i64) -> Report {
        Report {
            node: node.into(),
            programmed,
            expires: at(expires),
        }
    }

    #[test]
    fn the_verdict_follows_endpoints_then_every_live_proxy() {
        let reports = [
            report("a", 10, 15),
            report("b", 7, 15),
            report("dead", 1, -1),
        ];
        let behind_both = [report("z", 0, 15), report("a", 10, 15)];
        // (case, listed, removed_at, reports, verdict)
        type Case<'a> = (&'a str, bool, Option<i64>, &'a [Report], Verdict);
        let cases: Vec<Case> = vec![
            (
                "still listed",
                true,
                Some(9),
                &reports,
                Verdict::WaitEndpoints,
            ),
            ("never served", false, None, &reports, Verdict::NotServed),
            (
                "one proxy behind, the dead one ignored",
                false,
                Some(9),
                &reports,
                Verdict::WaitProxies {
                    behind: vec!["b".into()],
                },
            ),
            (
                "both live proxies past the removal",
                false,
                Some(7),
                &reports,
                Verdict::Dropped { proxies: 2 },
            ),
            (
                "both behind, sorted",
                false,
                Some(11),
                &behind_both,
                Verdict::WaitProxies {
                    behind: vec!["a".into(), "z".into()],
                },
            ),
            (
                "no proxy reports at all",
                false,
                Some(11),
                &[],
                Verdict::Dropped { proxies: 0 },
            ),
        ];
        for (name, listed, removed_at, reports, want) in cases {
            let v = View {
                listed,
                removed_at,
                reports,
                now: at(0),
            };
            assert_eq!(decide(&v), want, "{name}");
        }
    }
}
