//! Records core/v1 Events about the objects controllers act on, aggregating repeats into one
//! Event with a count, as client-go's recorder does. Recording never blocks a reconcile.

use std::collections::HashMap;
use std::sync::Arc;

use corral_api::client::Object;
use corral_api::Client;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use parking_lot::Mutex;

use crate::util;

type Key = (String, String, String);

/// client-go's spam filter: per involved object, a burst of 25 events, then one per 5 minutes.
const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL_PER_SEC: f64 = 1.0 / 300.0;
/// Event namespace/name, count, first timestamp.
type Seen = (String, i32, Time);

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
    /// (involved uid, reason, message) → (event namespace/name, count, first timestamp)
    seen: Arc<Mutex<HashMap<Key, Seen>>>,
    /// Token buckets per involved object uid: (tokens, last refill).
    buckets: Arc<Mutex<HashMap<String, (f64, std::time::Instant)>>>,
}

/// Takes a token from `bucket` (refilled since `last`); false when the object is spamming.
pub fn spam_allows(bucket: &mut (f64, std::time::Instant), now: std::time::Instant) -> bool {
    let elapsed = now.duration_since(bucket.1).as_secs_f64();
    bucket.0 = (bucket.0 + elapsed * SPAM_REFILL_PER_SEC).min(SPAM_BURST);
    bucket.1 = now;
    if bucket.0 >= 1.0 {
        bucket.0 -= 1.0;
        true
    } else {
        false
    }
}

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// The Event object recorded for the first occurrence.
pub fn new_event<K: Object>(
    object: &K,
    component: &str,
    type_: &str,
    reason: &str,
    message: &str,
    now: Time,
) -> Event {
    let meta = object.metadata();
    let ns = match util::namespace(meta) {
        "" => "default".to_string(),
        ns => ns.to_string(),
    };
    let nanos = now.0.as_nanosecond();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", util::name(meta), nanos)),
            namespace: Some(ns),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(K::API_VERSION.to_string()),
            kind: Some(K::KIND.to_string()),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(type_.to_string()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        reporting_component: Some(component.to_string()),
        ..Default::default()
    }
}

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Self {
            client,
            component,
            seen: Arc::new(Mutex::new(HashMap::new())),
            buckets: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn normal<K: Object>(&self, object: &K, reason: &str, message: String) {
        self.record(object, NORMAL, reason, message)
    }

    pub fn warning<K: Object>(&self, object: &K, reason: &str, message: String) {
        self.record(object, WARNING, reason, message)
    }

    pub fn record<K: Object>(&self, object: &K, type_: &str, reason: &str, message: String) {
        let now = corral_api::object::now();
        let key = (
            util::uid(object.metadata()).to_string(),
            reason.to_string(),
            message.clone(),
        );
        {
            let mut buckets = self.buckets.lock();
            if buckets.len() > 4096 {
                buckets.clear();
            }
            let instant = std::time::Instant::now();
            let bucket = buckets
                .entry(key.0.clone())
                .or_insert((SPAM_BURST, instant));
            if !spam_allows(bucket, instant) {
                tracing::trace!(reason, %message, "event dropped by the spam filter");
                return;
            }
        }
        let event = new_event(object, self.component, type_, reason, &message, now.clone());
        let repeat = {
            let mut seen = self.seen.lock();
            if seen.len() > 4096 {
                seen.clear();
            }
            match seen.get_mut(&key) {
                Some((name, count, first)) => {
                    *count += 1;
                    Some((name.clone(), *count, first.clone()))
                }
                None => {
                    seen.insert(
                        key,
                        (
                            event.metadata.name.clone().unwrap_or_default(),
                            1,
                            now.clone(),
                        ),
                    );
                    None
                }
            }
        };
        let client = self.client.clone();
        tracing::debug!(reason, %message, "event");
        tokio::spawn(async move {
            let ns = event.metadata.namespace.clone().unwrap_or_default();
            if let Some((name, count, first)) = repeat {
                match client.get_opt::<Event>(&ns, &name).await {
                    Ok(Some(mut existing)) => {
                        existing.count = Some(count);
                        existing.first_timestamp = Some(first);
                        existing.last_timestamp = Some(now);
                        existing.metadata.resource_version = None;
                        if let Err(e) = client.update(&existing).await {
                            tracing::debug!(error = %e, "cannot update event");
                        }
                        return;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read event");
                        return;
                    }
                }
            }
            if let Err(e) = client.create(&event).await {
                tracing::debug!(error = %e, "cannot record event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn spam_filter_allows_a_burst_then_one_per_five_minutes() {
        let t0 = Instant::now();
        let mut bucket = (SPAM_BURST, t0);
        let allowed = (0..100).filter(|_| spam_allows(&mut bucket, t0)).count();
        assert_eq!(allowed, 25);
        assert!(!spam_allows(&mut bucket, t0 + Duration::from_secs(100)));
        assert!(spam_allows(&mut bucket, t0 + Duration::from_secs(301)));
    }
}
