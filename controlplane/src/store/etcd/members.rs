//! Which etcd member a request goes to: one client per member, requests pinned to one member
//! (as etcd's own client does) until it fails or does not answer in time; then it is suspect
//! for a while and the next member takes over. A member that hangs (SIGSTOP, a partition)
//! accepts connections and never answers, so only a deadline tells it from a slow one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_client::Client;
use tracing::{debug, warn};

use crate::store::StoreError;

/// How long one request to a member may take before the member is deemed hung.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a member that failed is skipped (unless every member is).
pub const SUSPECT_FOR: Duration = Duration::from_secs(10);

pub struct Member {
    pub endpoint: String,
    pub client: Client,
    suspect_until: Mutex<Option<Instant>>,
}

pub struct Members {
    list: Vec<Member>,
    pinned: AtomicUsize,
}

/// The member to use: the pinned one unless it is suspect, else the next that is not; the
/// pinned one when all are. Pure.
pub fn choose(pinned: usize, suspect: &[bool]) -> usize {
    let n = suspect.len();
    (0..n)
        .map(|k| (pinned + k) % n)
        .find(|&i| !suspect[i])
        .unwrap_or(pinned % n.max(1))
}

/// Whether a failed request says its member is unreachable or hung (another may answer),
/// rather than refusing the request (which any member would).
pub fn member_failed(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
        ),
        _ => false,
    }
}

impl Members {
    pub fn new(list: Vec<(String, Client)>) -> Self {
        Self {
            list: list
                .into_iter()
                .map(|(endpoint, client)| Member {
                    endpoint,
                    client,
                    suspect_until: Mutex::new(None),
                })
                .collect(),
            pinned: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn get(&self, i: usize) -> &Member {
        &self.list[i]
    }

    pub fn pick(&self) -> usize {
        let now = Instant::now();
        let suspect: Vec<bool> = self
            .list
            .iter()
            .map(|m| {
                m.suspect_until
                    .lock()
                    .expect("suspect lock")
                    .is_some_and(|t| t > now)
            })
            .collect();
        choose(self.pinned.load(Ordering::Relaxed), &suspect)
    }

    /// Member `i` failed or hung: skip it for a while, and move the pin off it.
    pub fn suspect(&self, i: usize, why: &dyn std::fmt::Display) {
        *self.list[i].suspect_until.lock().expect("suspect lock") =
            Some(Instant::now() + SUSPECT_FOR);
        let n = self.list.len();
        if self
            .pinned
            .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            warn!(endpoint = %self.list[i].endpoint, error = %why, "etcd member failed; using another");
        }
    }

    /// Runs an idempotent request, on another member when one fails or hangs (each member
    /// at most twice); `refused` maps an error etcd answered with.
    pub async fn read<T, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        mut call: F,
        refused: impl Fn(etcd_client::Error) -> StoreError,
    ) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = None;
        for attempt in 0..self.len() * 2 {
            let i = self.pick();
            let member = &self.list[i];
            match tokio::time::timeout(REQUEST_TIMEOUT, call(member.client.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if member_failed(&e) => {
                    debug!(attempt, endpoint = %member.endpoint, error = %e, "etcd read tried again on another member");
                    self.suspect(i, &e);
                    last = Some(StoreError::Etcd(e.to_string()));
                }
                Ok(Err(e)) => return Err(refused(e)),
                Err(_) => {
                    let e = self.unanswered(i, op, key, false);
                    self.suspect(i, &e);
                    last = Some(e);
                }
            }
            tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
        }
        Err(last.unwrap_or(StoreError::Closed))
    }

    /// Runs a write once: one that failed or hung may have been applied, so it is not sent
    /// again (the caller reads and decides). The member is left for the next requests.
    pub async fn write<T, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        call: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let i = self.pick();
        match tokio::time::timeout(REQUEST_TIMEOUT, call(self.list[i].client.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if member_failed(&e) {
                    self.suspect(i, &e);
                }
                Err(StoreError::Etcd(e.to_string()))
            }
            Err(_) => {
                let e = self.unanswered(i, op, key, true);
                self.suspect(i, &e);
                Err(e)
            }
        }
    }

    pub fn unanswered(&self, i: usize, op: &'static str, key: &str, write: bool) -> StoreError {
        StoreError::Unanswered {
            endpoint: self.list[i].endpoint.clone(),
            op,
            key: key.to_string(),
            after: REQUEST_TIMEOUT,
            write,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn requests_stay_on_the_pinned_member_and_skip_suspect_ones() {
        let cases: [(usize, &[bool], usize); 6] = [
            (0, &[false, false, false], 0),
            (1, &[false, false, false], 1),
            (0, &[true, false, false], 1),
            (2, &[false, false, true], 0),
            (1, &[true, true, false], 2),
            // Every member suspect: the pinned one still gets the request.
            (1, &[true, true, true], 1),
        ];
        for (pinned, suspect, want) in cases {
            assert_eq!(choose(pinned, suspect), want, "{pinned} {suspect:?}");
        }
    }
}
