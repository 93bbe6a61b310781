//! The per-zone eviction rate limiters, as Kubernetes' node lifecycle controller keeps them: a
//! token bucket of burst 1 per zone (so the first eviction in a calm zone goes at once), its
//! rate swapped as the zone's health changes. Pure: the caller passes the time in.

use std::collections::HashMap;

use jiff::Timestamp;

/// One zone's bucket. A rate of 0 (or less) refuses every request.
#[derive(Debug, Clone, PartialEq)]
struct Bucket {
    qps: f64,
    tokens: f64,
    last: Timestamp,
}

impl Bucket {
    fn full(qps: f64, now: Timestamp) -> Self {
        Self {
            qps,
            tokens: 1.0,
            last: now,
        }
    }

    fn refill(&mut self, now: Timestamp) {
        let elapsed = (now.as_millisecond() - self.last.as_millisecond()).max(0) as f64 / 1000.0;
        if self.qps > 0.0 {
            self.tokens = (self.tokens + elapsed * self.qps).min(1.0);
        }
        self.last = self.last.max(now);
    }

    fn has_token(&mut self, now: Timestamp) -> bool {
        self.refill(now);
        self.qps > 0.0 && self.tokens >= 1.0
    }
}

/// Token buckets by zone key.
#[derive(Debug, Default)]
pub struct ZoneLimiters {
    zones: HashMap<String, Bucket>,
}

impl ZoneLimiters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the zone's rate (client-go's `SwapLimiter`): a new rate starts a new bucket, full
    /// unless the old one was empty, so swapping rates never grants an extra eviction. A zone
    /// coming back from rate 0 starts full: it evicted nothing, so it spent no token. (client-go
    /// drains it, an artefact of its never-limiter: at a cluster's start, when every node is
    /// briefly not ready, that held the first real eviction back a whole period.)
    pub fn set_rate(&mut self, zone: &str, qps: f64, now: Timestamp) {
        match self.zones.get_mut(zone) {
            None => {
                self.zones.insert(zone.to_string(), Bucket::full(qps, now));
            }
            Some(b) if b.qps == qps => {}
            Some(b) => {
                let had_token = b.qps <= 0.0 || b.has_token(now);
                let mut fresh = Bucket::full(qps, now);
                if !had_token {
                    fresh.tokens = 0.0;
                }
                *b = fresh;
            }
        }
    }

    /// Takes a token from the zone's bucket if it has one (a zone never rated: refused).
    pub fn try_accept(&mut self, zone: &str, now: Timestamp) -> bool {
        let Some(b) = self.zones.get_mut(zone) else {
            return false;
        };
        if b.has_token(now) {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets zones that have no nodes any more.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.zones.retain(|z, _| keep(z));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::t;

    fn ms(millis: i64) -> Timestamp {
        Timestamp::from_millisecond(t(0).as_millisecond() + millis).unwrap()
    }

    #[test]
    fn a_zone_bucket_grants_at_its_rate_after_a_first_eviction_at_once() {
        // (step at ms, rate to set (None: unchanged), want accepted)
        struct Step(i64, Option<f64>, bool);
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "0.1/s: one at once, the next 10 s later",
                vec![
                    Step(0, Some(0.1), true),
                    Step(0, None, false),
                    Step(9_900, None, false),
                    Step(10_000, None, true),
                    Step(10_001, None, false),
                ],
            ),
            (
                "a long quiet spell saves one token, not many (burst 1)",
                vec![
                    Step(0, Some(1.0), true),
                    Step(60_000, None, true),
                    Step(60_000, None, false),
                ],
            ),
            (
                "rate 0 refuses everything, from the start",
                vec![Step(0, Some(0.0), false), Step(100_000, None, false)],
            ),
            (
                "swapping rates does not grant an extra token",
                vec![
                    Step(0, Some(0.1), true),
                    Step(1_000, Some(0.01), false),
                    Step(2_000, Some(0.1), false),
                    Step(12_000, None, true),
                ],
            ),
            (
                "a zone back from rate 0 evicts at once: stopping spent no token",
                vec![
                    Step(0, Some(0.0), false),
                    Step(5_000, Some(0.1), true),
                    Step(5_000, None, false),
                    Step(15_000, None, true),
                ],
            ),
        ];
        for (name, steps) in cases {
            let mut l = ZoneLimiters::new();
            for (i, Step(at, rate, want)) in steps.into_iter().enumerate() {
                if let Some(q) = rate {
                    l.set_rate("z", q, ms(at));
                }
                assert_eq!(l.try_accept("z", ms(at)), want, "{name}: step {i}");
            }
        }
    }

    #[test]
    fn zones_have_separate_buckets_and_an_unrated_zone_is_refused() {
        let mut l = ZoneLimiters::new();
        assert!(!l.try_accept("a", ms(0)));
        l.set_rate("a", 0.1, ms(0));
        l.set_rate("b", 0.1, ms(0));
        assert!(l.try_accept("a", ms(0)));
        assert!(l.try_accept("b", ms(0)));
        assert!(!l.try_accept("a", ms(1)));
        l.retain(|z| z == "b");
        assert!(!l.try_accept("a", ms(20_000)));
    }
}
