//! What the runtime reports about a pod's containers: the containers found when the worker
//! starts (an agent restart) rebuilt into records, and the periodic relist's diff against the
//! records (kubelet PLEG's `generateEvents(old, new)`), a pure function with table tests.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ContainerStatus;
use tracing::info;

use super::Worker;
use crate::pod::state::{self, on_exit, ContainerRecord, Current, RestartPolicy, Terminated};
use crate::runtime::{self as rt, ContainerInfo, TaskState};

pub(super) fn attempt_of(info: &ContainerInfo) -> u32 {
    info.labels
        .get(rt::LABEL_ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

fn label_time(info: &ContainerInfo, key: &str, now: Timestamp) -> Timestamp {
    info.labels
        .get(key)
        .and_then(|t| t.parse().ok())
        .unwrap_or(now)
}

/// The running attempts that `listed` (the runtime's containers of the pod, asked for at
/// `taken_at`) shows exited, or no longer has at all (exit 137 at `now`, as after a SIGKILL):
/// exits the waiters did not report. An attempt started after the list was taken may be
/// missing from it without having stopped.
pub(super) fn missed_exits(
    records: &BTreeMap<String, ContainerRecord>,
    listed: &[ContainerInfo],
    taken_at: Timestamp,
    now: Timestamp,
) -> Vec<(String, Terminated)> {
    let ids: HashMap<&str, &ContainerInfo> = listed.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut out = Vec::new();
    for (name, rec) in records {
        let Some(id) = rec.id.clone() else { continue };
        let Some(Current::Running { started_at }) = rec.current.clone() else {
            continue;
        };
        if started_at >= taken_at {
            // Started after the list was taken: its absence means nothing.
            continue;
        }
        let gone = match ids.get(id.as_str()) {
            None => Some((137, now)),
            Some(i) => match i.state {
                TaskState::Exited {
                    exit_code,
                    finished_at,
                } => Some((exit_code, finished_at)),
                _ => None,
            },
        };
        if let Some((exit_code, finished_at)) = gone {
            out.push((
                name.clone(),
                Terminated {
                    container_id: id,
                    exit_code,
                    reason: Terminated::reason_for(exit_code, false).into(),
                    started_at,
                    finished_at,
                },
            ));
        }
    }
    out
}

impl Worker {
    /// Rebuilds the records from containers found in the runtime (agent restart).
    pub(super) async fn adopt(&mut self, mut found: Vec<ContainerInfo>) {
        let now = self.now();
        found.sort_by_key(attempt_of);
        let mut by_name: BTreeMap<String, Vec<ContainerInfo>> = BTreeMap::new();
        for c in found {
            let name = c
                .labels
                .get(rt::LABEL_CONTAINER_NAME)
                .cloned()
                .unwrap_or_default();
            by_name.entry(name).or_default().push(c);
        }
        let policy = RestartPolicy::of(&self.pod);
        for (name, mut list) in by_name {
            let Some(newest) = list.pop() else { continue };
            let api_status = self.api_status(&name);
            let rec = self.records.entry(name.clone()).or_default();
            rec.attempt = attempt_of(&newest);
            // Keep the attempt before the newest (lastState, logs --previous), drop older ones.
            if let Some(prev) = list.pop() {
                if let TaskState::Exited {
                    exit_code,
                    finished_at,
                } = prev.state
                {
                    rec.last = Some(Terminated {
                        container_id: prev.id.clone(),
                        exit_code,
                        reason: Terminated::reason_for(exit_code, false).into(),
                        started_at: label_time(&prev, rt::LABEL_STARTED_AT, now),
                        finished_at,
                    });
                }
            }
            for old in list {
                let _ = self.ctx.runtime.remove(&old.id).await;
            }
            match newest.state {
                TaskState::Running { .. } => {
                    info!(container = %name, id = %newest.id, "adopted running container");
                    rec.id = Some(newest.id.clone());
                    rec.current = Some(Current::Running {
                        started_at: label_time(&newest, rt::LABEL_STARTED_AT, now),
                    });
                    self.spawn_waiter(name.clone(), newest.id.clone());
                    if let Some(c) = self.containers().into_iter().find(|c| c.name == name) {
                        self.start_probers(&c, &newest.id);
                    }
                }
                TaskState::Exited {
                    exit_code,
                    finished_at,
                } => {
                    rec.id = Some(newest.id.clone());
                    let t = Terminated {
                        container_id: newest.id.clone(),
                        exit_code,
                        reason: Terminated::reason_for(exit_code, false).into(),
                        started_at: label_time(&newest, rt::LABEL_STARTED_AT, now),
                        finished_at,
                    };
                    on_exit(rec, t, policy, &self.ctx.backoff);
                }
                TaskState::Created => {
                    let lost = api_status
                        .filter(|s| {
                            s.container_id.as_deref().map(state::strip_runtime)
                                == Some(newest.id.as_str())
                        })
                        .and_then(|s| state::lost_attempt(&s, now));
                    if let Some(t) = lost {
                        // The API saw it start: its task was lost with containerd's state
                        // (node or containerd restart), which counts as an exit.
                        info!(container = %name, id = %newest.id, "container lost its task");
                        rec.id = Some(newest.id.clone());
                        on_exit(rec, t, policy, &self.ctx.backoff);
                    } else {
                        // Created but never started (crash in between): start it afresh.
                        let _ = self.ctx.runtime.remove(&newest.id).await;
                    }
                }
            }
        }
        // Containers the API saw start that the runtime no longer has at all: the restart
        // count goes on from the API status, as kubelet's does after a reboot.
        for c in self.containers() {
            if self.records.contains_key(&c.name) {
                continue;
            }
            let Some(status) = self.api_status(&c.name) else {
                continue;
            };
            if let Some(rec) = state::record_from_status(&status, policy, &self.ctx.backoff, now) {
                info!(container = %c.name, restarts = rec.attempt, "container lost with the runtime's state; restarting it");
                self.records.insert(c.name.clone(), rec);
            }
        }
    }

    /// The container's status as the API last showed it (before this worker started).
    fn api_status(&self, name: &str) -> Option<ContainerStatus> {
        self.pod
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use jiff::{SignedDuration, Timestamp};

    use super::missed_exits;
    use crate::pod::state::{ContainerRecord, Current, Terminated};
    use crate::runtime::{ContainerInfo, TaskState};

    fn at(secs: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_700_000_000 + secs)
    }

    fn running(id: &str, started: i64) -> ContainerRecord {
        ContainerRecord {
            id: Some(id.into()),
            current: Some(Current::Running {
                started_at: at(started),
            }),
            ..Default::default()
        }
    }

    fn listed(id: &str, state: TaskState) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            labels: HashMap::new(),
            state,
        }
    }

    fn exited(code: i32, finished: i64) -> TaskState {
        TaskState::Exited {
            exit_code: code,
            finished_at: at(finished),
        }
    }

    fn gone(id: &str, code: i32, reason: &str, started: i64, finished: i64) -> Terminated {
        Terminated {
            container_id: id.into(),
            exit_code: code,
            reason: reason.into(),
            started_at: at(started),
            finished_at: at(finished),
        }
    }

    #[test]
    fn relist_reports_the_running_attempts_that_exited_or_vanished_behind_the_agents_back() {
        let (taken_at, now) = (at(100), at(105));
        let stopped = ContainerRecord {
            id: Some("c-0".into()),
            current: Some(Current::Exited(gone("c-0", 1, "Error", 0, 50))),
            ..Default::default()
        };
        let never_started = ContainerRecord::default();
        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            &str,
            ContainerRecord,
            Vec<ContainerInfo>,
            Option<Terminated>,
        )> = vec![
            (
                "still running",
                running("c-0", 10),
                vec![listed("c-0", TaskState::Running { pid: 7 })],
                None,
            ),
            (
                "exited with its code and time",
                running("c-0", 10),
                vec![listed("c-0", exited(3, 90))],
                Some(gone("c-0", 3, "Error", 10, 90)),
            ),
            (
                "exited cleanly",
                running("c-0", 10),
                vec![listed("c-0", exited(0, 90))],
                Some(gone("c-0", 0, "Completed", 10, 90)),
            ),
            (
                "missing counts as killed now",
                running("c-0", 10),
                vec![listed("other", TaskState::Running { pid: 7 })],
                Some(gone("c-0", 137, "Error", 10, 105)),
            ),
            (
                "task lost but container kept",
                running("c-0", 10),
                vec![listed("c-0", TaskState::Created)],
                None,
            ),
            (
                "started after the list was taken",
                running("c-1", 100),
                vec![],
                None,
            ),
            ("already exited", stopped, vec![], None),
            ("never started", never_started, vec![], None),
        ];
        for (what, rec, list, want) in cases {
            let records = BTreeMap::from([("app".to_string(), rec)]);
            let got = missed_exits(&records, &list, taken_at, now);
            let want: Vec<_> = want.into_iter().map(|t| ("app".to_string(), t)).collect();
            assert_eq!(got, want, "{what}");
        }
    }
}
