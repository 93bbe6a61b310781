//! List-then-watch as a small state machine: list (a `Restarted` event carrying everything),
//! watch from the list's revision, follow bookmarks, and re-list when the watch says history
//! is gone. Callers apply events synchronously to their cache.
//!
//! Objects are decoded straight from the wire bytes into their type (no intermediate JSON
//! tree): at thousands of nodes and pods this halves the decoding work and the peak memory of
//! the initial list.

use std::time::Duration;

use corral_api::client::{Error as ApiError, Object};
use corral_api::{Client, ListParams};
use corral_proto as pb;

pub enum Event<K> {
    /// A fresh list: everything not in it is gone.
    Restarted(Vec<K>),
    /// Added or modified.
    Applied(K),
    Deleted(K),
}

enum State {
    Empty,
    InitWatch {
        rv: i64,
    },
    Watching {
        rv: i64,
        stream: Box<tonic::codec::Streaming<pb::WatchEvent>>,
    },
}

pub struct Reflector<K> {
    client: Client,
    namespace: String,
    params: ListParams,
    state: State,
    failures: u32,
    _kind: std::marker::PhantomData<fn() -> K>,
}

fn decode<K: Object>(bytes: &[u8]) -> Result<K, ApiError> {
    serde_json::from_slice(bytes).map_err(|source| ApiError::Decode {
        what: K::KIND.to_string(),
        source,
    })
}

impl<K: Object> Reflector<K> {
    pub fn new(client: Client, namespace: &str, params: ListParams) -> Self {
        Reflector {
            client,
            namespace: namespace.to_string(),
            params,
            state: State::Empty,
            failures: 0,
            _kind: std::marker::PhantomData,
        }
    }

    async fn pause(&mut self) {
        self.failures += 1;
        let ms = (100u64 << self.failures.min(5)).min(3000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn namespace(&self) -> String {
        if K::info().namespaced {
            self.namespace.clone()
        } else {
            String::new()
        }
    }

    async fn list(&self) -> Result<(Vec<K>, i64), ApiError> {
        let req = pb::ListRequest {
            resource: K::info().plural.to_string(),
            namespace: self.namespace(),
            label_selector: self.params.label_selector.clone(),
            field_selector: self.params.field_selector.clone(),
        };
        let resp = self.client.raw().list(req).await?.into_inner();
        let mut items = Vec::with_capacity(resp.items.len());
        for b in resp.items {
            items.push(decode::<K>(&b)?);
        }
        Ok((items, resp.resource_version))
    }

    async fn watch(&self, rv: i64) -> Result<tonic::codec::Streaming<pb::WatchEvent>, ApiError> {
        let req = pb::WatchRequest {
            resource: K::info().plural.to_string(),
            namespace: self.namespace(),
            label_selector: self.params.label_selector.clone(),
            field_selector: self.params.field_selector.clone(),
            resource_version: rv,
            allow_bookmarks: true,
        };
        Ok(self.client.raw().watch(req).await?.into_inner())
    }

    /// Advances the state machine; `None` when this step produced no event (reconnects).
    pub async fn step(&mut self) -> Option<Event<K>> {
        let kind = K::KIND;
        match std::mem::replace(&mut self.state, State::Empty) {
            State::Empty => match self.list().await {
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
                match self.watch(rv).await {
                    Ok(stream) => {
                        self.state = State::Watching {
                            rv,
                            stream: Box::new(stream),
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
                let ev = match stream.message().await {
                    Ok(Some(ev)) => ev,
                    Ok(None) => {
                        self.state = State::InitWatch { rv };
                        return None;
                    }
                    Err(status) => {
                        let e = ApiError::from(status);
                        if e.is_gone() {
                            tracing::info!(kind, "watch history compacted: re-listing");
                        } else {
                            tracing::warn!(kind, error = %e, "watch broke");
                            self.state = State::InitWatch { rv };
                            self.pause().await;
                        }
                        return None;
                    }
                };
                self.failures = 0;
                rv = rv.max(ev.resource_version);
                use pb::watch_event::Type;
                let typ = Type::try_from(ev.r#type).unwrap_or(Type::Modified);
                let out = match typ {
                    Type::Bookmark => None,
                    _ => match decode::<K>(&ev.object) {
                        Ok(o) => {
                            let rv_of = o
                                .metadata()
                                .resource_version
                                .as_deref()
                                .and_then(|v| v.parse::<i64>().ok())
                                .unwrap_or(0);
                            rv = rv.max(rv_of);
                            Some(if typ == Type::Deleted {
                                Event::Deleted(o)
                            } else {
                                Event::Applied(o)
                            })
                        }
                        Err(e) => {
                            tracing::warn!(kind, error = %e, "skipping undecodable object");
                            None
                        }
                    },
                };
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
