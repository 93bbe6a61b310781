//! Which cluster this node belongs to: the ID of the first control plane it joined is kept in
//! `<data-dir>/cluster-id`, and a control plane serving another ID (one restarted on the wrong,
//! or an empty, `--data-dir`) is refused: the agent then removes, adopts and registers nothing.
//! `decide` is the pure rule; `ClusterGuard` asks the control plane and keeps the verdict.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};

/// The file in the agent's data directory that records the cluster joined.
pub const FILE: &str = "cluster-id";

/// What to do with the cluster ID a control plane serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The cluster this node joined.
    Same,
    /// No cluster recorded yet: join this one (and record it).
    Join,
    /// Another cluster, and the agent was started with `--rejoin-cluster`: record this one.
    Rejoin { previous: String },
    /// Another cluster: refuse it.
    Mismatch { recorded: String, served: String },
    /// The control plane reports no ID: refuse it, as it cannot be told apart.
    Unidentified,
}

/// The rule, given the recorded ID, the served one and whether a rejoin was asked for.
pub fn decide(recorded: Option<&str>, served: &str, rejoin: bool) -> Verdict {
    if served.is_empty() {
        return Verdict::Unidentified;
    }
    match recorded {
        None => Verdict::Join,
        Some(r) if r == served => Verdict::Same,
        Some(r) if rejoin => Verdict::Rejoin {
            previous: r.to_string(),
        },
        Some(r) => Verdict::Mismatch {
            recorded: r.to_string(),
            served: served.to_string(),
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterIdError {
    #[error("asking the control plane at {server} for its cluster ID: {source}")]
    Unreachable {
        server: String,
        #[source]
        source: corral_api::client::Error,
    },
    #[error("asking the control plane at {server} for its cluster ID: no answer within 10s")]
    Timeout { server: String },
    #[error(
        "the control plane at {server} serves cluster {served}, but this node joined cluster \
         {recorded} (recorded in {file}): refusing to start, remove or adopt any container \
         until they match. If the control plane was restarted with the wrong --data-dir (or \
         none), restart it with the cluster's data directory; if the cluster was rebuilt on \
         purpose, restart this agent once with --rejoin-cluster (or remove {file}): it then \
         removes every container of the old cluster"
    )]
    Mismatch {
        server: String,
        recorded: String,
        served: String,
        file: PathBuf,
    },
    #[error(
        "the control plane at {server} reports no cluster ID, so this node cannot tell whether \
         it is its cluster: refusing to act until it does (upgrade the control plane)"
    )]
    Unidentified { server: String },
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ClusterIdError {
    /// A verdict against the control plane (not a passing failure to ask it).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Mismatch { .. } | Self::Unidentified { .. })
    }
}

/// Where the guard stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardState {
    /// Not asked yet.
    Unverified,
    /// The last answer was this node's cluster.
    Verified,
    /// The last answer was another cluster (or none).
    Refused,
}

/// Asks the control plane for its cluster ID and compares it with the recorded one.
pub struct ClusterGuard {
    client: corral_api::Client,
    server: String,
    file: PathBuf,
    /// Honoured once, by the first answer: a rejoin is a decision about one control plane.
    rejoin: AtomicBool,
    state: watch::Sender<GuardState>,
}

impl ClusterGuard {
    pub fn new(client: corral_api::Client, server: &str, data_dir: &Path, rejoin: bool) -> Self {
        Self {
            client,
            server: server.to_string(),
            file: data_dir.join(FILE),
            rejoin: AtomicBool::new(rejoin),
            state: watch::Sender::new(GuardState::Unverified),
        }
    }

    pub fn state(&self) -> GuardState {
        *self.state.borrow()
    }

    /// The last answer was another cluster: act on nothing from the API.
    pub fn refused(&self) -> bool {
        self.state() == GuardState::Refused
    }

    fn recorded(&self) -> Result<Option<String>, ClusterIdError> {
        match std::fs::read_to_string(&self.file) {
            Ok(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ClusterIdError::File {
                what: "reading",
                path: self.file.clone(),
                source,
            }),
        }
    }

    /// Writes the ID through a temporary file and a rename, so a crash leaves the old one or
    /// the new one, never a torn file.
    fn record(&self, id: &str) -> Result<(), ClusterIdError> {
        let err = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| ClusterIdError::File { what, path, source }
        };
        let tmp = self.file.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(err("creating", &tmp))?;
        std::io::Write::write_all(&mut f, format!("{id}\n").as_bytes())
            .map_err(err("writing", &tmp))?;
        f.sync_all().map_err(err("syncing", &tmp))?;
        std::fs::rename(&tmp, &self.file).map_err(err("renaming onto", &self.file))
    }

    /// Asks the control plane now. Records the ID on a first join or a rejoin; a refusal is
    /// logged and kept until an answer matches; a failure to ask changes nothing.
    pub async fn check(&self) -> Result<(), ClusterIdError> {
        let server = self.server.clone();
        let served =
            match tokio::time::timeout(Duration::from_secs(10), self.client.version()).await {
                Ok(Ok(v)) => v.cluster_id,
                Ok(Err(source)) => return Err(ClusterIdError::Unreachable { server, source }),
                Err(_) => return Err(ClusterIdError::Timeout { server }),
            };
        let recorded = self.recorded()?;
        let rejoin = self.rejoin.load(Ordering::SeqCst);
        let result = match decide(recorded.as_deref(), &served, rejoin) {
            Verdict::Same => Ok(()),
            Verdict::Join => {
                self.record(&served)?;
                info!(cluster_id = %served, file = %self.file.display(), "joined cluster");
                Ok(())
            }
            Verdict::Rejoin { previous } => {
                self.record(&served)?;
                warn!(cluster_id = %served, previous = %previous, file = %self.file.display(), "rejoined a rebuilt cluster (--rejoin-cluster): containers of the old cluster will be removed");
                Ok(())
            }
            Verdict::Mismatch { recorded, served } => Err(ClusterIdError::Mismatch {
                server,
                recorded,
                served,
                file: self.file.clone(),
            }),
            Verdict::Unidentified => Err(ClusterIdError::Unidentified { server }),
        };
        match &result {
            Ok(()) => {
                self.rejoin.store(false, Ordering::SeqCst);
                self.state.send_replace(GuardState::Verified);
            }
            Err(e) if e.is_refusal() => {
                self.rejoin.store(false, Ordering::SeqCst);
                self.state.send_replace(GuardState::Refused);
            }
            Err(_) => {}
        }
        result
    }

    /// Asks once a second until the answer is this node's cluster. A refused agent waits (it
    /// does not exit and crash-loop), saying why at once and again every 30 s; the checks are
    /// frequent so that once the right control plane is back, the node renews its Lease well
    /// within the node grace period and nothing of it is evicted.
    pub async fn wait_verified(&self) {
        const EVERY: Duration = Duration::from_secs(1);
        const REPEAT_LOG: Duration = Duration::from_secs(30);
        let mut logged: Option<(tokio::time::Instant, String)> = None;
        loop {
            let e = match self.check().await {
                Ok(()) => return,
                Err(e) => e,
            };
            let text = e.to_string();
            let now = tokio::time::Instant::now();
            let repeat = logged
                .as_ref()
                .is_none_or(|(at, last)| *last != text || now >= *at + REPEAT_LOG);
            if repeat {
                if e.is_refusal() {
                    error!(error = %text, "refusing the control plane; checking again every second");
                } else {
                    warn!(error = %text, "cannot check the cluster ID; retrying every second");
                }
                logged = Some((now, text));
            }
            tokio::time::sleep(EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_acts_only_for_the_cluster_it_joined_unless_told_to_rejoin() {
        let mismatch = || Verdict::Mismatch {
            recorded: "old".into(),
            served: "new".into(),
        };
        for (what, recorded, served, rejoin, want) in [
            ("first start", None, "new", false, Verdict::Join),
            (
                "first start, rejoin asked",
                None,
                "new",
                true,
                Verdict::Join,
            ),
            ("same cluster", Some("new"), "new", false, Verdict::Same),
            (
                "same cluster, rejoin asked",
                Some("new"),
                "new",
                true,
                Verdict::Same,
            ),
            ("another cluster", Some("old"), "new", false, mismatch()),
            (
                "another cluster, rejoin asked",
                Some("old"),
                "new",
                true,
                Verdict::Rejoin {
                    previous: "old".into(),
                },
            ),
            (
                "no ID served",
                Some("old"),
                "",
                false,
                Verdict::Unidentified,
            ),
            (
                "no ID served, none recorded",
                None,
                "",
                true,
                Verdict::Unidentified,
            ),
        ] {
            assert_eq!(decide(recorded, served, rejoin), want, "{what}");
        }
    }

    #[test]
    fn the_refusal_says_what_happened_and_how_to_fix_it() {
        let e = ClusterIdError::Mismatch {
            server: "http://10.0.0.1:7443".into(),
            recorded: "aaa".into(),
            served: "bbb".into(),
            file: PathBuf::from("/var/lib/corral/agent/cluster-id"),
        }
        .to_string();
        for part in [
            "serves cluster bbb",
            "joined cluster aaa",
            "--data-dir",
            "--rejoin-cluster",
            "remove /var/lib/corral/agent/cluster-id",
        ] {
            assert!(e.contains(part), "{part:?} missing from: {e}");
        }
    }
}
