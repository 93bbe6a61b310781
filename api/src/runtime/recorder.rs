//! Records core/v1 Events, as client-go's recorder does: repeats of the same event on the same
//! object bump one Event's count, a spam filter caps each object's events (a burst of 25, then
//! one per 5 minutes), and writing happens on one background task so recording never blocks
//! the caller (a full queue drops the event). [`Aggregator`] is the pure part.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use futures::future::BoxFuture;

use crate::client::{Error, Object};
use crate::Client;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL_PER_SEC: f64 = 1.0 / 300.0;
/// Past this many remembered keys the memory is cleared (a new Event starts over).
const MAX_REMEMBERED: usize = 4096;
const QUEUE: usize = 1024;

/// Who reports: `source.component`, `source.host`, `reportingInstance`.
#[derive(Debug, Clone, Default)]
pub struct Reporter {
    pub component: String,
    pub host: Option<String>,
    pub instance: Option<String>,
}

impl Reporter {
    pub fn new(component: impl Into<String>) -> Self {
        Reporter {
            component: component.into(),
            ..Default::default()
        }
    }
}

/// One occurrence to record.
#[derive(Debug, Clone)]
pub struct Occurrence<'a> {
    pub regarding: &'a ObjectReference,
    pub type_: &'a str,
    pub reason: &'a str,
    pub message: &'a str,
    pub action: Option<&'a str>,
}

/// The write to make for an occurrence.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Create(Event),
    /// The same Event again, with its count and last timestamp moved on.
    Update(Event),
}

/// fieldPath, type, reason, message: what makes two occurrences the same Event.
type Key = (String, String, String, String);

struct PerObject {
    /// Token bucket: (tokens, last refill).
    bucket: (f64, Instant),
    events: HashMap<Key, Event>,
}

/// The pure bookkeeping: which Event an occurrence becomes, or none when the object spams.
#[derive(Default)]
pub struct Aggregator {
    /// By involved object (its uid, or namespace/name when it has none).
    objects: HashMap<String, PerObject>,
}

/// Takes a token from `bucket` (refilled since its last use); false when the object spams.
pub fn spam_allows(bucket: &mut (f64, Instant), now: Instant) -> bool {
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

fn object_key(r: &ObjectReference) -> String {
    match r.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => format!(
            "{}/{}",
            r.namespace.as_deref().unwrap_or(""),
            r.name.as_deref().unwrap_or("")
        ),
    }
}

impl Aggregator {
    pub fn observe(
        &mut self,
        reporter: &Reporter,
        o: &Occurrence<'_>,
        now: Time,
        instant: Instant,
    ) -> Option<Write> {
        if self.objects.len() > MAX_REMEMBERED {
            self.objects.clear();
        }
        let per = self
            .objects
            .entry(object_key(o.regarding))
            .or_insert_with(|| PerObject {
                bucket: (SPAM_BURST, instant),
                events: HashMap::new(),
            });
        if !spam_allows(&mut per.bucket, instant) {
            return None;
        }
        let key = (
            o.regarding.field_path.clone().unwrap_or_default(),
            o.type_.to_string(),
            o.reason.to_string(),
            o.message.to_string(),
        );
        if let Some(ev) = per.events.get_mut(&key) {
            ev.count = Some(ev.count.unwrap_or(1) + 1);
            ev.last_timestamp = Some(now);
            ev.metadata.resource_version = None;
            return Some(Write::Update(ev.clone()));
        }
        let ev = new_event(reporter, o, now);
        per.events.insert(key, ev.clone());
        Some(Write::Create(ev))
    }

    /// Forgets an object (by uid) that is done with: its next Event starts afresh.
    pub fn forget(&mut self, uid: &str) {
        self.objects.remove(uid);
    }
}

/// The Event object of a first occurrence.
pub fn new_event(reporter: &Reporter, o: &Occurrence<'_>, now: Time) -> Event {
    let r = o.regarding;
    let ns = match r.namespace.as_deref() {
        None | Some("") => "default".to_string(),
        Some(ns) => ns.to_string(),
    };
    let name = r.name.as_deref().unwrap_or("");
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.0.as_nanosecond() as u64)),
            namespace: Some(ns),
            ..Default::default()
        },
        involved_object: r.clone(),
        reason: Some(o.reason.to_string()),
        message: Some(o.message.to_string()),
        type_: Some(o.type_.to_string()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now.clone()),
        event_time: Some(MicroTime(now.0)),
        source: Some(EventSource {
            component: Some(reporter.component.clone()),
            host: reporter.host.clone(),
        }),
        reporting_component: Some(reporter.component.clone()),
        reporting_instance: reporter.instance.clone(),
        action: o.action.map(str::to_string),
        ..Default::default()
    }
}

/// A reference to `object` for an Event's `involvedObject`.
pub fn reference<K: Object>(object: &K) -> ObjectReference {
    let m = object.metadata();
    ObjectReference {
        api_version: Some(K::API_VERSION.to_string()),
        kind: Some(K::KIND.to_string()),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        ..Default::default()
    }
}

/// Where Events are written: the API server, or a test's fake.
pub trait EventSink: Send + Sync + 'static {
    fn create<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), Error>>;
    /// Replaces the Event of that name unconditionally.
    fn replace<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), Error>>;
}

impl EventSink for Client {
    fn create<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { Client::create(self, event).await.map(drop) })
    }
    fn replace<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { Client::update(self, event).await.map(drop) })
    }
}

/// The writer task's inputs.
type Writer = (Arc<dyn EventSink>, mpsc::Receiver<Write>);

/// Records Events through one background writer. Clones share it.
#[derive(Clone)]
pub struct Recorder {
    reporter: Arc<Reporter>,
    aggregator: Arc<Mutex<Aggregator>>,
    queue: mpsc::Sender<Write>,
    /// The writer's end until the first event starts it (inside the caller's runtime); it
    /// ends when the last clone is dropped.
    writer: Arc<Mutex<Option<Writer>>>,
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self::with_sink(Arc::new(client), reporter)
    }

    pub fn with_sink(sink: Arc<dyn EventSink>, reporter: Reporter) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        Recorder {
            reporter: Arc::new(reporter),
            aggregator: Arc::new(Mutex::new(Aggregator::default())),
            queue,
            writer: Arc::new(Mutex::new(Some((sink, rx)))),
        }
    }

    /// Forgets an object (by uid) that is done with, so its memory goes.
    pub fn forget(&self, uid: &str) {
        self.aggregator.lock().forget(uid);
    }

    pub fn normal<K: Object>(&self, object: &K, reason: &str, message: impl AsRef<str>) {
        self.record(&reference(object), NORMAL, reason, message.as_ref(), None)
    }

    pub fn warning<K: Object>(&self, object: &K, reason: &str, message: impl AsRef<str>) {
        self.record(&reference(object), WARNING, reason, message.as_ref(), None)
    }

    /// Records an occurrence about `regarding` (which may name a part, in `fieldPath`).
    pub fn record(
        &self,
        regarding: &ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
        action: Option<&str>,
    ) {
        self.record_at(
            regarding,
            type_,
            reason,
            message,
            action,
            crate::object::now(),
        )
    }

    /// [`Recorder::record`] of something that happened at `at` (earlier than now): the event
    /// keeps its place among others, as the scheduler's assignment before the node's pull.
    pub fn record_at(
        &self,
        regarding: &ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
        action: Option<&str>,
        at: Time,
    ) {
        let occurrence = Occurrence {
            regarding,
            type_,
            reason,
            message,
            action,
        };
        let write = self
            .aggregator
            .lock()
            .observe(&self.reporter, &occurrence, at, Instant::now());
        let Some(write) = write else {
            tracing::trace!(reason, message, "event dropped by the spam filter");
            return;
        };
        tracing::debug!(reason, message, "event");
        if let Some((sink, rx)) = self.writer.lock().take() {
            tokio::spawn(write_events(sink, rx));
        }
        if self.queue.try_send(write).is_err() {
            tracing::debug!(reason, "event queue full: event dropped");
        }
    }
}

async fn write_events(sink: Arc<dyn EventSink>, mut rx: mpsc::Receiver<Write>) {
    while let Some(write) = rx.recv().await {
        let result = match write {
            Write::Create(ev) => sink.create(&ev).await,
            Write::Update(ev) => match sink.replace(&ev).await {
                // Gone (an Event's TTL, a cleared namespace): start it again.
                Err(e) if e.is_not_found() => sink.create(&ev).await,
                other => other,
            },
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "recording an event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn regarding(uid: &str, field: Option<&str>) -> ObjectReference {
        ObjectReference {
            kind: Some("Pod".into()),
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            field_path: field.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn repeats_bump_one_event_and_differences_make_new_ones() {
        let reporter = Reporter {
            component: "kubelet".into(),
            host: Some("node-1".into()),
            instance: Some("node-1".into()),
        };
        let mut agg = Aggregator::default();
        let t0 = Instant::now();
        let now = crate::object::now();
        let app = regarding("u1", Some("spec.containers{app}"));
        let side = regarding("u1", Some("spec.containers{side}"));
        let other = regarding("u2", None);
        // (regarding, reason, message) → (a new Event?, its count)
        let cases = [
            (&app, "BackOff", "back-off", Some((true, 1))),
            (&app, "BackOff", "back-off", Some((false, 2))),
            (&app, "BackOff", "back-off", Some((false, 3))),
            (&app, "BackOff", "other message", Some((true, 1))),
            (&side, "BackOff", "back-off", Some((true, 1))),
            (&other, "BackOff", "back-off", Some((true, 1))),
        ];
        for (r, reason, message, want) in cases {
            let o = Occurrence {
                regarding: r,
                type_: WARNING,
                reason,
                message,
                action: None,
            };
            let got = agg
                .observe(&reporter, &o, now.clone(), t0)
                .map(|w| match w {
                    Write::Create(ev) => (true, ev.count.unwrap()),
                    Write::Update(ev) => (false, ev.count.unwrap()),
                });
            assert_eq!(got, want, "{reason} {message} on {:?}", r.field_path);
        }
        let first = agg
            .observe(
                &reporter,
                &Occurrence {
                    regarding: &app,
                    type_: NORMAL,
                    reason: "Pulled",
                    message: "m",
                    action: Some("Pulling"),
                },
                now,
                t0,
            )
            .unwrap();
        let Write::Create(ev) = first else {
            panic!("a new event")
        };
        assert!(ev.metadata.name.unwrap().starts_with("web."));
        assert_eq!(ev.source.unwrap().host.as_deref(), Some("node-1"));
        assert_eq!(ev.reporting_instance.as_deref(), Some("node-1"));
        assert_eq!(ev.action.as_deref(), Some("Pulling"));
        assert_eq!(
            ev.involved_object.field_path.as_deref(),
            Some("spec.containers{app}")
        );
    }

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
