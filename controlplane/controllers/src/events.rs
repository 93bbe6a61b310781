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
/// Event namespace/name, count, first timestamp.
type Seen = (String, i32, Time);

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
    /// (involved uid, reason, message) → (event namespace/name, count, first timestamp)
    seen: Arc<Mutex<HashMap<Key, Seen>>>,
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
