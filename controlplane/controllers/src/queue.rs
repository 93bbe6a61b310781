//! A work queue keyed by object, as client-go's: a key waiting is queued once however many
//! events arrive, a key being processed is not handed to a second worker, and failures are
//! retried with a per-key exponential back-off.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

struct Inner<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
}

pub struct WorkQueue<T> {
    inner: Mutex<Inner<T>>,
    notify: Notify,
}

const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Delay before retry number `failures` (1-based): 5 ms doubling, capped at 30 s.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    (BASE_DELAY * 2u32.pow(exp)).min(MAX_DELAY)
}

impl<T: Hash + Eq + Clone + Send + Sync + 'static> WorkQueue<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
        })
    }

    pub fn add(&self, item: T) {
        let mut inner = self.inner.lock();
        if !inner.dirty.insert(item.clone()) {
            return;
        }
        if !inner.processing.contains(&item) {
            inner.queue.push_back(item);
            drop(inner);
            self.notify.notify_one();
        }
    }

    pub fn add_after(self: &Arc<Self>, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.add(item);
        });
    }

    /// Re-queues after a failure, later each time.
    pub fn add_rate_limited(self: &Arc<Self>, item: T) {
        let n = {
            let mut inner = self.inner.lock();
            let n = inner.failures.entry(item.clone()).or_insert(0);
            *n += 1;
            *n
        };
        self.add_after(item, backoff(n));
    }

    /// Clears the failure count after a success.
    pub fn forget(&self, item: &T) {
        self.inner.lock().failures.remove(item);
    }

    /// Waits for the next key; the caller must call `done` with it.
    pub async fn get(&self) -> T {
        loop {
            let notified = self.notify.notified();
            {
                let mut inner = self.inner.lock();
                if let Some(item) = inner.queue.pop_front() {
                    inner.dirty.remove(&item);
                    inner.processing.insert(item.clone());
                    if !inner.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return item;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, item: &T) {
        let mut inner = self.inner.lock();
        inner.processing.remove(item);
        if inner.dirty.contains(item) {
            inner.queue.push_back(item.clone());
            drop(inner);
            self.notify.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_deduplicated_and_never_processed_twice_at_once() {
        let q = WorkQueue::<&str>::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        let first = q.get().await;
        assert_eq!(first, "a");
        // An event while "a" is processed marks it dirty but does not queue it twice.
        q.add("a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, "b");
        q.done(&"b");
        assert!(q.is_empty());
        q.done(&"a");
        assert_eq!(q.get().await, "a");
        q.done(&"a");
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let cases = [(1, 5), (2, 10), (3, 20), (10, 2560), (40, 30_000)];
        for (n, ms) in cases {
            assert_eq!(backoff(n), Duration::from_millis(ms), "{n}");
        }
    }

    #[tokio::test]
    async fn rate_limited_requeue_comes_back_and_forget_resets() {
        let q = WorkQueue::<u32>::new();
        q.add_rate_limited(7);
        let got = tokio::time::timeout(Duration::from_secs(2), q.get())
            .await
            .unwrap();
        assert_eq!(got, 7);
        q.done(&7);
        assert_eq!(q.inner.lock().failures.get(&7), Some(&1));
        q.forget(&7);
        assert!(q.inner.lock().failures.is_empty());
    }
}
