//! What a failed attempt waits for: a missing claim, ConfigMap or Secret is retried soon (as
//! kubelet's volume manager retries a mount), never with the crash back-off; and when a
//! FailedMount event is due again for the same failure (kubelet's growing retry interval), so a
//! fast retry makes one aggregated event, not one per retry.

use std::time::Duration;

use jiff::Timestamp;

use crate::pod::state::ContainerRecord;

/// How often a container waiting for its volume sources or config objects looks again.
pub const SOURCE_RETRY: Duration = Duration::from_millis(300);
/// The first repeat of the same FailedMount, doubling up to `REPORT_MAX` (as kubelet's
/// exponential back-off of a failing mount operation: 500 ms to about 2 min).
const REPORT_FIRST: Duration = Duration::from_millis(500);
const REPORT_MAX: Duration = Duration::from_secs(122);

/// When a failed attempt of a container is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The container's restart back-off (10 s doubling): the failure is the container's own.
    Backoff,
    /// Soon (`SOURCE_RETRY`), back-off untouched: it waits for an object that may appear (a
    /// volume's claim, ConfigMap or Secret not there or not bound yet; an env source missing).
    Soon,
}

/// Records a failure that waits for objects to appear: retried at `now + SOURCE_RETRY`, the
/// restart back-off left as it was (a crash loop's delay is not reset, nor grown, by it).
pub fn wait_for_sources(rec: &mut ContainerRecord, reason: &str, message: String, now: Timestamp) {
    rec.not_before = Some(now + SOURCE_RETRY);
    rec.waiting = Some((reason.to_string(), message));
}

/// The last FailedMount recorded for the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct MountReport {
    pub message: String,
    pub at: Timestamp,
    /// The wait before the same message is reported again.
    pub interval: Duration,
}

/// The report to record now for a mount failure with `message`, or None when the last one
/// already says it and its interval has not passed.
pub fn mount_report(
    last: Option<&MountReport>,
    message: &str,
    now: Timestamp,
) -> Option<MountReport> {
    match last {
        Some(l) if l.message == message => (now >= l.at + l.interval).then(|| MountReport {
            message: message.to_string(),
            at: now,
            interval: (l.interval * 2).min(REPORT_MAX),
        }),
        _ => Some(MountReport {
            message: message.to_string(),
            at: now,
            interval: REPORT_FIRST,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_sources_retries_soon_and_leaves_the_back_off_alone() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut rec = ContainerRecord {
            backoff: Duration::from_secs(20),
            ..Default::default()
        };
        wait_for_sources(&mut rec, "ContainerCreating", "m".into(), now);
        assert_eq!(rec.not_before, Some(now + SOURCE_RETRY));
        assert_eq!(rec.backoff, Duration::from_secs(20));
        assert_eq!(rec.waiting, Some(("ContainerCreating".into(), "m".into())));
    }

    #[test]
    fn the_same_mount_failure_is_reported_at_growing_intervals() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let ms = |n: i64| t0 + Duration::from_millis(n as u64);
        let mut last: Option<MountReport> = None;
        // (ms since t0, message, reported?)
        let cases = [
            (0, "a", true),
            (300, "a", false),
            (600, "a", true),
            (900, "a", false),
            (1_500, "a", false),
            (1_600, "a", true),
            (1_700, "b", true),
            (1_900, "b", false),
            (2_300, "b", true),
        ];
        for (at, message, want) in cases {
            let got = mount_report(last.as_ref(), message, ms(at));
            assert_eq!(got.is_some(), want, "{message} at {at} ms");
            if let Some(r) = got {
                last = Some(r);
            }
        }
        let mut r = last.unwrap();
        for _ in 0..20 {
            r = mount_report(Some(&r), "b", r.at + r.interval).unwrap();
        }
        assert_eq!(r.interval, REPORT_MAX, "the interval is capped");
    }
}
