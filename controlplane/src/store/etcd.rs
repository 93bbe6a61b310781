//! The `Store` on etcd (v3 API, `etcd-client`), as kube-apiserver uses it: a key's revision
//! is its etcd mod_revision; create is a txn on `mod_revision == 0`, update and delete a txn
//! on `mod_revision == expected` that reads the key back when it fails; lists read at one
//! revision in pages; watches start at `after + 1` with previous values; compaction is
//! coordinated between servers by a compare-and-swap on a compact key's version. Requests go
//! to one member at a time with a deadline (`members.rs`), so a hung member costs a retried
//! read or one failed write, and watches that fall silent are ended for the caller to resume.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use futures::StreamExt;
use tracing::{debug, info};

use super::{Event, EventType, KeyValue, Result, Revision, Store, StoreError, WatchStream};

mod members;
mod watch;
use members::Members;
pub use members::REQUEST_TIMEOUT;
use watch::silent_ends;

/// The key whose version servers compare-and-swap before compacting (the apiserver's
/// `compact_rev_key`): only the server whose swap succeeds compacts.
pub const COMPACT_KEY: &str = "compact_rev_key";

/// Keys read per list request.
const LIST_PAGE: i64 = 1_000;

/// Where etcd is and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    /// `http://host:2379` or `https://host:2379` endpoints.
    pub endpoints: Vec<String>,
    /// PEM of the CA that signed etcd's serving certificate (https endpoints).
    pub ca: Option<Vec<u8>>,
    /// PEM client certificate and key, when etcd asks for one.
    pub cert: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
}

impl EtcdConfig {
    /// Timeouts, keep-alives and TLS for a client of these endpoints (the store's, and the
    /// ServerJoin service's member changes).
    pub fn connect_options(&self) -> ConnectOptions {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            // A member cut off from the others answers nothing rather than stale reads, and
            // ends its watches (which would otherwise stay open and silent).
            .with_require_leader(true);
        if let Some(ca) = &self.ca {
            let mut tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(ca));
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
            }
            opts = opts.with_tls(tls);
        }
        opts
    }

    /// Endpoints from `etcd://h1:2379,h2:2379` (http) or `etcds://...` (https), or a comma
    /// list of `http(s)://` URLs.
    pub fn parse_endpoints(spec: &str) -> std::result::Result<Vec<String>, BadEndpoint> {
        let (scheme, rest) = if let Some(r) = spec.strip_prefix("etcd://") {
            ("http", r)
        } else if let Some(r) = spec.strip_prefix("etcds://") {
            ("https", r)
        } else {
            ("", spec)
        };
        let endpoints: Vec<String> = rest
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|h| {
                if scheme.is_empty() {
                    h.to_string()
                } else {
                    format!("{scheme}://{h}")
                }
            })
            .collect();
        if endpoints.is_empty() {
            return Err(BadEndpoint {
                endpoint: spec.to_string(),
                why: "no etcd host",
            });
        }
        for e in &endpoints {
            let host = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .ok_or_else(|| BadEndpoint {
                    endpoint: e.clone(),
                    why: "expected etcd://HOST:PORT,... or http(s)://HOST:PORT",
                })?;
            if host.is_empty() || host.contains('/') {
                return Err(BadEndpoint {
                    endpoint: e.clone(),
                    why: "expected HOST:PORT",
                });
            }
        }
        Ok(endpoints)
    }
}

/// A `--datastore-endpoint` that names no etcd member.
#[derive(Debug, thiserror::Error)]
#[error("datastore endpoint {endpoint:?}: {why}")]
pub struct BadEndpoint {
    pub endpoint: String,
    pub why: &'static str,
}

#[derive(Clone)]
pub struct EtcdStore {
    members: Arc<Members>,
    /// The compact key's version this server last saw (the CAS's expected value).
    compact_version: Arc<AtomicI64>,
}

fn etcd_err(e: etcd_client::Error) -> StoreError {
    StoreError::Etcd(e.to_string())
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Revision {
    h.map(|h| h.revision()).unwrap_or(0)
}

fn kv(k: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(k.key()).into_owned(),
        value: k.value().into(),
        create_revision: k.create_revision(),
        mod_revision: k.mod_revision(),
    }
}

/// The end of the key range holding every key that starts with `prefix` (etcd's prefix end).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// etcd's words for a read below the compacted revision or past the newest.
fn classify(e: etcd_client::Error, requested: Revision) -> StoreError {
    let text = e.to_string();
    if text.contains("required revision has been compacted") {
        StoreError::Compacted {
            requested,
            compacted: 0,
        }
    } else if text.contains("required revision is a future revision") {
        StoreError::FutureRevision {
            requested,
            current: 0,
        }
    } else {
        etcd_err(e)
    }
}

impl EtcdStore {
    pub async fn connect(config: &EtcdConfig) -> Result<Self> {
        let opts = config.connect_options();
        // One client per member: which member a request goes to is decided here, not by a
        // balancer that would keep sending a share of requests to a member that hangs.
        let mut clients = Vec::new();
        for endpoint in &config.endpoints {
            let client = Client::connect([endpoint], Some(opts.clone()))
                .await
                .map_err(etcd_err)?;
            clients.push((endpoint.clone(), client));
        }
        let store = Self {
            members: Arc::new(Members::new(clients)),
            compact_version: Arc::new(AtomicI64::new(0)),
        };
        // Fail now, not at the first request, when no member answers.
        let rev = store.current_revision().await?;
        info!(endpoints = ?config.endpoints, revision = rev, "etcd store connected");
        Ok(store)
    }

    /// The revision last compacted through the compact key (0 when unknown).
    async fn compacted_revision(&self) -> Revision {
        match self.get(COMPACT_KEY).await {
            Ok(Some(k)) => std::str::from_utf8(&k.value)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// The key as it is now (after a failed compare).
    async fn current(&self, key: &str) -> Result<Option<KeyValue>> {
        self.get(key).await
    }

    /// Every key under `prefix` at `revision` (0: the newest), read in pages at that one
    /// revision, and the revision read.
    async fn range(&self, prefix: &str, revision: Revision) -> Result<(Vec<KeyValue>, Revision)> {
        let end = prefix_end(prefix);
        let mut start = prefix.as_bytes().to_vec();
        let mut at = revision;
        let mut out = Vec::new();
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if at > 0 {
                opts = opts.with_revision(at);
            }
            let resp = self
                .members
                .read(
                    "list",
                    prefix,
                    |c| {
                        let (start, opts) = (start.clone(), opts.clone());
                        async move { c.kv_client().get(start, Some(opts)).await }
                    },
                    |e| classify(e, revision),
                )
                .await?;
            if at == 0 {
                at = header_revision(resp.header());
            }
            let kvs = resp.kvs();
            out.extend(kvs.iter().map(kv));
            match kvs.last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        Ok((out, at))
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .members
            .read(
                "get",
                key,
                |c| async move { c.kv_client().get(key, None).await },
                etcd_err,
            )
            .await?;
        Ok(resp.kvs().first().map(kv))
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        self.range(prefix, 0).await
    }

    async fn list_at(&self, prefix: &str, revision: Revision) -> Result<Vec<KeyValue>> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        match self.range(prefix, revision).await {
            Err(StoreError::Compacted { requested, .. }) => Err(StoreError::Compacted {
                requested,
                compacted: self.compacted_revision().await,
            }),
            other => other.map(|(kvs, _)| kvs),
        }
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(key, CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(key, value.clone(), None)]);
        let resp = self
            .members
            .write(
                "create",
                key,
                |c| async move { c.kv_client().txn(txn).await },
            )
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let rev = header_revision(resp.header());
        Ok(KeyValue {
            key: key.to_string(),
            value: value.into(),
            create_revision: rev,
            mod_revision: rev,
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then(vec![TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else(vec![TxnOp::get(key, None)]);
        let resp = self
            .members
            .write(
                "update",
                key,
                |c| async move { c.kv_client().txn(txn).await },
            )
            .await?;
        let rev = header_revision(resp.header());
        let ops = resp.op_responses();
        if !resp.succeeded() {
            let now = match ops.first() {
                Some(TxnOpResponse::Get(g)) => g.kvs().first().map(kv),
                _ => self.current(key).await?,
            };
            return Err(match now {
                None => StoreError::NotFound {
                    key: key.to_string(),
                },
                Some(now) => StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    actual: now.mod_revision,
                },
            });
        }
        let create_revision = match ops.first() {
            Some(TxnOpResponse::Put(p)) => p.prev_key().map(|p| p.create_revision()),
            _ => None,
        }
        .unwrap_or(rev);
        Ok(KeyValue {
            key: key.to_string(),
            value: value.into(),
            create_revision,
            mod_revision: rev,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let guard = match expected {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when(vec![guard])
            .and_then(vec![TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else(vec![TxnOp::get(key, None)]);
        let resp = self
            .members
            .write(
                "delete",
                key,
                |c| async move { c.kv_client().txn(txn).await },
            )
            .await?;
        let rev = header_revision(resp.header());
        let ops = resp.op_responses();
        if !resp.succeeded() {
            let now = match ops.first() {
                Some(TxnOpResponse::Get(g)) => g.kvs().first().map(kv),
                _ => self.current(key).await?,
            };
            return Err(match (now, expected) {
                (None, _) => StoreError::NotFound {
                    key: key.to_string(),
                },
                (Some(now), Some(expected)) => StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    actual: now.mod_revision,
                },
                (Some(_), None) => StoreError::Etcd(format!("deleting {key:?} failed")),
            });
        }
        let prev = match ops.first() {
            Some(TxnOpResponse::Delete(d)) => d.prev_kvs().first().map(kv),
            _ => None,
        }
        .ok_or_else(|| StoreError::NotFound {
            key: key.to_string(),
        })?;
        Ok(KeyValue {
            mod_revision: rev,
            ..prev
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let start = if after > 0 { after + 1 } else { 0 };
        let mut opts = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_prev_key()
            .with_progress_notify();
        if start > 0 {
            opts = opts.with_start_revision(start);
        }
        let (member, stream) = self.open_watch(prefix, opts).await?;
        debug!(prefix, after, "etcd watch opened");
        // The stream owns its sender: dropping the stream cancels the watch.
        let events = silent_ends(stream, self.members.clone(), member, prefix.to_string());
        let events = events.flat_map(move |resp| {
            let out: Vec<Result<Event>> = match resp {
                Err(e) => vec![Err(e)],
                Ok(r) if r.compact_revision() > 0 => vec![Err(StoreError::Compacted {
                    requested: after,
                    compacted: r.compact_revision(),
                })],
                Ok(r) if r.canceled() => vec![Err(StoreError::Etcd(format!(
                    "watch canceled: {}",
                    r.cancel_reason()
                )))],
                Ok(r) => r
                    .events()
                    .iter()
                    .filter_map(|ev| {
                        let cur = ev.kv()?;
                        let prev = ev.prev_kv().map(kv);
                        Some(Ok(match ev.event_type() {
                            etcd_client::EventType::Put => Event {
                                kind: EventType::Put,
                                kv: kv(cur),
                                prev,
                                seen: Some(std::time::Instant::now()),
                            },
                            etcd_client::EventType::Delete => {
                                let last = prev.clone().unwrap_or_else(|| kv(cur));
                                Event {
                                    kind: EventType::Delete,
                                    kv: KeyValue {
                                        mod_revision: cur.mod_revision(),
                                        ..last
                                    },
                                    prev,
                                    seen: Some(std::time::Instant::now()),
                                }
                            }
                        }))
                    })
                    .collect(),
            };
            futures::stream::iter(out)
        });
        // A compaction or an error ends the stream after it is reported.
        let mut ended = false;
        let events = events.take_while(move |item| {
            let go = !ended;
            ended = ended || item.is_err();
            futures::future::ready(go)
        });
        Ok(Box::pin(events))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .members
            .read(
                "get",
                COMPACT_KEY,
                |c| async move {
                    c.kv_client()
                        .get(COMPACT_KEY, Some(GetOptions::new().with_count_only()))
                        .await
                },
                etcd_err,
            )
            .await?;
        Ok(header_revision(resp.header()))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        // As the apiserver: swap the compact key's version first; only the winner compacts.
        let seen = self.compact_version.load(Ordering::SeqCst);
        let txn = Txn::new()
            .when(vec![Compare::version(COMPACT_KEY, CompareOp::Equal, seen)])
            .and_then(vec![TxnOp::put(COMPACT_KEY, revision.to_string(), None)])
            .or_else(vec![TxnOp::get(COMPACT_KEY, None)]);
        let resp = self
            .members
            .write("compact", COMPACT_KEY, |c| async move {
                c.kv_client().txn(txn).await
            })
            .await?;
        if !resp.succeeded() {
            let version = match resp.op_responses().first() {
                Some(TxnOpResponse::Get(g)) => g.kvs().first().map_or(0, |k| k.version()),
                _ => 0,
            };
            self.compact_version.store(version, Ordering::SeqCst);
            debug!(revision, version, "another server compacted this round");
            return Ok(());
        }
        self.compact_version.store(seen + 1, Ordering::SeqCst);
        match self
            .members
            .write("compact", COMPACT_KEY, |c| async move {
                c.kv_client().compact(revision, None).await
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::Etcd(e)) if e.contains("required revision has been compacted") => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datastore_endpoints_are_etcd_urls() {
        assert_eq!(
            EtcdConfig::parse_endpoints("etcd://h1:2379,h2:2379").unwrap(),
            ["http://h1:2379", "http://h2:2379"]
        );
        assert_eq!(
            EtcdConfig::parse_endpoints("etcds://h1:2379").unwrap(),
            ["https://h1:2379"]
        );
        assert_eq!(
            EtcdConfig::parse_endpoints("https://10.0.0.1:2379, https://10.0.0.2:2379").unwrap(),
            ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
        );
        for bad in ["etcd://", "h1:2379", "etcd://h1:2379/x", ""] {
            assert!(EtcdConfig::parse_endpoints(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_prefix_range_ends_after_every_key_with_that_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
