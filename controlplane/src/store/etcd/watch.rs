//! Watches that survive a hung member: opened on a member that answers, and ended (for the
//! caller to resume from its last revision) when their member falls silent.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::WatchOptions;

use super::members::{self, Members, REQUEST_TIMEOUT};
use super::{etcd_err, EtcdStore};
use crate::store::{Result, StoreError};

impl EtcdStore {
    /// Opens a watch on a member that answers (a hung one is skipped, as for a read).
    pub(super) async fn open_watch(
        &self,
        prefix: &str,
        opts: WatchOptions,
    ) -> Result<(usize, etcd_client::WatchStream)> {
        let mut last = StoreError::Closed;
        for attempt in 0..self.members.len() * 2 {
            let i = self.members.pick();
            let mut watch_client = self.members.get(i).client.watch_client();
            let opened = tokio::time::timeout(
                REQUEST_TIMEOUT,
                watch_client.watch(prefix, Some(opts.clone())),
            )
            .await;
            last = match opened {
                Ok(Ok(stream)) => return Ok((i, stream)),
                Ok(Err(e)) if members::member_failed(&e) => {
                    self.members.suspect(i, &e);
                    etcd_err(e)
                }
                Ok(Err(e)) => return Err(etcd_err(e)),
                Err(_) => {
                    let e = self.members.unanswered(i, "watch", prefix, false);
                    self.members.suspect(i, &e);
                    e
                }
            };
            tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
        }
        Err(last)
    }
}

/// After this long without a message, a watch asks its member for a progress notification.
const WATCH_QUIET: Duration = Duration::from_secs(3);

/// The watch's responses, ended with an error when its member stops answering: a watch that
/// is quiet for [`WATCH_QUIET`] asks for progress, and one that gets no answer in
/// [`REQUEST_TIMEOUT`] more is on a hung member (which is then suspect, so the caller's next
/// watch, from its last revision, goes to another).
pub(super) fn silent_ends(
    stream: etcd_client::WatchStream,
    members: Arc<Members>,
    member: usize,
    prefix: String,
) -> impl futures::Stream<Item = Result<etcd_client::WatchResponse>> {
    futures::stream::unfold(Some(stream), move |state| {
        let (members, prefix) = (members.clone(), prefix.clone());
        async move {
            let mut stream = state?;
            let mut asked = false;
            loop {
                let wait = if asked { REQUEST_TIMEOUT } else { WATCH_QUIET };
                match tokio::time::timeout(wait, stream.message()).await {
                    Ok(Ok(Some(resp))) => return Some((Ok(resp), Some(stream))),
                    Ok(Ok(None)) => return None,
                    Ok(Err(e)) => {
                        if members::member_failed(&e) {
                            members.suspect(member, &e);
                        }
                        return Some((Err(etcd_err(e)), None));
                    }
                    Err(_) if !asked => {
                        asked = true;
                        if let Err(e) = stream.request_progress().await {
                            return Some((Err(etcd_err(e)), None));
                        }
                    }
                    Err(_) => {
                        let e = members.unanswered(member, "watch", &prefix, false);
                        members.suspect(member, &e);
                        return Some((Err(e), None));
                    }
                }
            }
        }
    })
}
