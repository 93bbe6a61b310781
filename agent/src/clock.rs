//! The agent's clock seam: what time it is and waiting until a given time, behind `Clock`, so
//! that a test can drive the pod workers' back-off and retries. `SystemClock` is the real one;
//! `FakeClock` stands still until a test advances it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

/// A wait that ends at a deadline on some clock.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// Ends once this clock reads `deadline` or later (at once if it already does).
    fn sleep_until(&self, deadline: Timestamp) -> Sleep;
}

/// The wall clock, with tokio's timer for the waits.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let left =
            Duration::try_from(deadline.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(left))
    }
}

/// A clock that only moves when `advance` is called; waits end as it passes their deadline.
pub struct FakeClock {
    now: watch::Sender<Timestamp>,
}

impl FakeClock {
    pub fn new(start: Timestamp) -> Self {
        FakeClock {
            now: watch::Sender::new(start),
        }
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|t| *t += by);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // A dropped clock never reaches the deadline.
            if rx.wait_for(|t| *t >= deadline).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;
    use jiff::Timestamp;

    use super::{Clock, FakeClock};

    #[tokio::test]
    async fn a_fake_sleep_ends_only_once_the_clock_is_advanced_past_its_deadline() {
        let start = Timestamp::UNIX_EPOCH;
        let clock = FakeClock::new(start);
        let mut sleep = clock.sleep_until(start + Duration::from_secs(10));
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(Duration::from_secs(9));
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleep)
            .await
            .expect("sleep ends at its deadline");
        assert_eq!(clock.now(), start + Duration::from_secs(10));
        assert!(clock.sleep_until(start).now_or_never().is_some());
    }
}
