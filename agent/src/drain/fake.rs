//! A drain the test opens by hand: holds end when `release` is called, or at their bound.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{EndpointDrain, Outcome, Verdict};

pub struct FakeDrain {
    open: watch::Sender<bool>,
    /// The uid and grace of every hold asked for.
    pub asked: Mutex<Vec<(String, Duration)>>,
}

impl Default for FakeDrain {
    fn default() -> Self {
        Self {
            open: watch::channel(false).0,
            asked: Mutex::default(),
        }
    }
}

impl FakeDrain {
    /// Every proxy has dropped every pod from now on.
    pub fn release(&self) {
        self.open.send_replace(true);
    }
}

impl EndpointDrain for FakeDrain {
    fn dropped(&self, uid: &str, grace: Duration) -> BoxFuture<'static, Outcome> {
        self.asked.lock().push((uid.to_string(), grace));
        let mut open = self.open.subscribe();
        async move {
            match tokio::time::timeout(grace, open.wait_for(|o| *o)).await {
                Ok(_) => Outcome::Released(Verdict::Dropped { proxies: 1 }),
                Err(_) => Outcome::TimedOut(Verdict::WaitProxies {
                    behind: vec!["fake".into()],
                }),
            }
        }
        .boxed()
    }
}
