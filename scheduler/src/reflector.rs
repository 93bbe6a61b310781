//! List-then-watch as a small state machine: list (a `Restarted` event carrying everything),
//! watch from the list's revision, follow bookmarks, and re-list when the watch says history
//! is gone. Callers apply events synchronously to their cache.

use std::pin::Pin;
use std::time::Duration;

use corral_api::client::{Object, Result as ApiResult};
use corral_api::{Client, ListParams, WatchEvent};
use futures::{Stream, StreamExt};

pub enum Event<K> {
    /// A fresh list: everything not in it is gone.
    Restarted(Vec<K>),
    /// Added or modified.
    Applied(K),
    Deleted(K),
}

type Watch<K> = Pin<Box<dyn Stream<Item = ApiResult<WatchEvent<K>>> + Send>>;

enum State<K> {
    Empty,
    InitWatch { rv: i64 },
    Watching { rv: i64, stream: Watch<K> },
}

pub struct Reflector<K> {
    client: Client,
    namespace: String,
    params: ListParams,
    state: State<K>,
    failures: u32,
}

impl<K: Object> Reflector<K> {
    pub fn new(client: Client, namespace: &str, params: ListParams) -> Self {
        Reflector {
            client,
            namespace: namespace.to_string(),
            params,
            state: State::Empty,
            failures: 0,
        }
    }

    async fn pause(&mut self) {
        self.failures += 1;
        let ms = (100u64 << self.failures.min(5)).min(3000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Advances the state machine; `None` when this step produced no event (reconnects).
    pub async fn step(&mut self) -> Option<Event<K>> {
        let kind = K::KIND;
        match std::mem::replace(&mut self.state, State::Empty) {
            State::Empty => match self.client.list::<K>(&self.namespace, &self.params).await {
                Ok((items, rv)) => {
                    tracing::debug!(kind, rv, items = items.len(), "listed");
                    self.state = State::InitWatch { rv };
                    Some(Event::Restarted(items))
                }
                Err(e) => {
                    tracing::warn!(kind, error = %e, "list failed");
                    self.pause().await;
                    None
                }
            },
            State::InitWatch { rv } => {
                match self
                    .client
                    .watch::<K>(&self.namespace, &self.params, rv)
                    .await
                {
                    Ok(stream) => {
                        self.state = State::Watching {
                            rv,
                            stream: Box::pin(stream),
                        }
                    }
                    Err(e) if e.is_gone() => {}
                    Err(e) => {
                        tracing::warn!(kind, error = %e, "watch failed");
                        self.state = State::InitWatch { rv };
                        self.pause().await;
                    }
                }
                None
            }
            State::Watching { mut rv, mut stream } => {
                let ev = stream.next().await;
                let rv_of = |o: &K| {
                    o.metadata()
                        .resource_version
                        .as_deref()
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0)
                };
                let out = match ev {
                    None => {
                        self.state = State::InitWatch { rv };
                        return None;
                    }
                    Some(Err(e)) if e.is_gone() => {
                        tracing::info!(kind, "watch history compacted: re-listing");
                        return None;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(kind, error = %e, "watch broke");
                        self.state = State::InitWatch { rv };
                        self.pause().await;
                        return None;
                    }
                    Some(Ok(WatchEvent::Bookmark(r))) => {
                        rv = rv.max(r);
                        None
                    }
                    Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                        rv = rv.max(rv_of(&o));
                        Some(Event::Applied(o))
                    }
                    Some(Ok(WatchEvent::Deleted(o))) => {
                        rv = rv.max(rv_of(&o));
                        Some(Event::Deleted(o))
                    }
                };
                self.failures = 0;
                self.state = State::Watching { rv, stream };
                out
            }
        }
    }

    /// Runs forever, handing every event to `sink`.
    pub async fn run(mut self, mut sink: impl FnMut(Event<K>) + Send) {
        loop {
            if let Some(ev) = self.step().await {
                sink(ev);
            }
        }
    }
}
