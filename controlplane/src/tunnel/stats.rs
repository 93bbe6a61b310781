//! Usage summaries down the agent tunnel: one `StatsRequest`, one `StatsSummary` back,
//! bounded by the caller's deadline. A tunnel that breaks drops its waiting requests, which
//! then fail at once rather than at their deadline.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use corral_proto as pb;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::{down_msg, Tunnels};
use crate::registry::ApiError;

pub(super) type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<pb::StatsSummary>>>>;

/// Hands an agent's answer to the request waiting for it (if it still waits).
pub(super) fn deliver(pending: &Pending, summary: pb::StatsSummary) {
    if let Some(tx) = pending.lock().remove(&summary.request_id) {
        let _ = tx.send(summary);
    }
}

/// Removes the entry of a request that ended, whichever way it ended.
struct Waiting {
    id: u64,
    pending: Pending,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

impl Tunnels {
    /// The latest usage summary of `node`'s agent, or an error when it is not connected, its
    /// tunnel breaks, or it does not answer within `deadline`.
    pub async fn stats(
        &self,
        node: &str,
        deadline: Duration,
    ) -> Result<pb::StatsSummary, ApiError> {
        let gone = || ApiError::Unavailable(format!("the agent of node {node:?} disconnected"));
        let (down, pending) = {
            let nodes = self.inner.nodes.lock();
            let conn = nodes.get(node).ok_or_else(|| {
                ApiError::Unavailable(format!("node {node:?} has no agent connected"))
            })?;
            (conn.down.clone(), conn.stats.clone())
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        pending.lock().insert(id, tx);
        let _waiting = Waiting {
            id,
            pending: pending.clone(),
        };
        let request = pb::StatsRequest { request_id: id };
        down.send(down_msg(pb::agent_down::Msg::Stats(request)))
            .map_err(|_| gone())?;
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(summary)) if summary.error.is_empty() => Ok(summary),
            Ok(Ok(summary)) => Err(ApiError::Unavailable(format!(
                "node {node:?}: {}",
                summary.error
            ))),
            Ok(Err(_)) => Err(gone()),
            Err(_) => Err(ApiError::Unavailable(format!(
                "the agent of node {node:?} did not answer within {deadline:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Conn;
    use super::*;

    /// Tunnels with node `n1` whose down messages go to the returned receiver.
    fn connected() -> (
        Tunnels,
        tokio::sync::mpsc::UnboundedReceiver<Result<pb::AgentDown, tonic::Status>>,
        Pending,
    ) {
        let tunnels = Tunnels::default();
        let (down, rx) = tokio::sync::mpsc::unbounded_channel();
        let pending: Pending = Default::default();
        tunnels.inner.nodes.lock().insert(
            "n1".into(),
            Conn {
                session: 1,
                down,
                pending: Default::default(),
                streams: Default::default(),
                stats: pending.clone(),
            },
        );
        (tunnels, rx, pending)
    }

    fn request_id(m: Result<pb::AgentDown, tonic::Status>) -> u64 {
        match m.unwrap().msg {
            Some(pb::agent_down::Msg::Stats(r)) => r.request_id,
            other => panic!("not a stats request: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_agents_answer_reaches_the_request_that_asked() {
        let (tunnels, mut rx, pending) = connected();
        let ask = tokio::spawn({
            let t = tunnels.clone();
            async move { t.stats("n1", Duration::from_secs(5)).await }
        });
        let id = request_id(rx.recv().await.unwrap());
        deliver(
            &pending,
            pb::StatsSummary {
                request_id: id,
                ready: true,
                window_ms: 42,
                ..Default::default()
            },
        );
        assert_eq!(ask.await.unwrap().unwrap().window_ms, 42);
        assert!(pending.lock().is_empty(), "the entry stays behind");
    }

    #[tokio::test]
    async fn a_silent_agent_fails_at_the_deadline_and_leaves_no_entry() {
        let (tunnels, _rx, pending) = connected();
        let err = tunnels
            .stats("n1", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("did not answer within 50ms"),
            "{err}"
        );
        assert!(pending.lock().is_empty());
    }

    #[tokio::test]
    async fn an_agent_error_or_a_broken_tunnel_is_unavailable() {
        let (tunnels, mut rx, pending) = connected();
        let ask = |t: &Tunnels| {
            let t = t.clone();
            tokio::spawn(async move { t.stats("n1", Duration::from_secs(5)).await })
        };
        let first = ask(&tunnels);
        let id = request_id(rx.recv().await.unwrap());
        deliver(
            &pending,
            pb::StatsSummary {
                request_id: id,
                error: "containerd down".into(),
                ..Default::default()
            },
        );
        let err = first.await.unwrap().unwrap_err();
        assert!(matches!(err, ApiError::Unavailable(ref m) if m.contains("containerd down")));
        let second = ask(&tunnels);
        let _ = rx.recv().await;
        // What the tunnel's reader does when the stream breaks.
        pending.lock().clear();
        let err = second.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("disconnected"), "{err}");
        let err = tunnels
            .stats("n2", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no agent connected"), "{err}");
    }
}
