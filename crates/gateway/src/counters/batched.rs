//! Kong's `sync_rate` above 0: a shared store (`cluster` or `redis`) is written every `sync_rate` seconds instead
//! of once per request.
//!
//! Each counter this node has seen keeps `counted`, every request this node counted there since it first saw the
//! counter; `sent`, how many of those the store has acknowledged; and `base`, the rest of the store's value (other
//! nodes' requests, and what was there when this node first looked) as of the last answer. A request adds to
//! `counted` (one atomic add, no lock, no round trip) and is answered `base + counted`. Both only grow, so a
//! node's answers never go back and never count a request twice, even while a sync is under way. A counter this
//! node has not seen yet is counted in the store at once, so every node starts from the store's value rather than
//! from 0. Every `sync_rate` seconds a task sends `counted - sent` (one `increment` per distinct delta, usually
//! one) and reads back every other counter, so other nodes' requests become visible; a failed send is simply sent
//! again at the next sync.
//!
//! The bound: a node sees other nodes' requests only at its next sync, so with a limit of N each node can accept up
//! to what it counts in one interval beyond what it has seen. With `nodes` nodes accepting at most B requests each
//! per interval, at most N + nodes × B requests pass in a window (never more than N with one node).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_model::SharedClock;

use super::{CounterError, CounterKey, Counters};

#[derive(Debug, Default)]
struct Entry {
    base: AtomicU64,
    counted: AtomicU64,
    /// Written by the sync only (one at a time).
    sent: AtomicU64,
}

impl Entry {
    fn at(value: u64) -> Self {
        Self { base: AtomicU64::new(value), ..Self::default() }
    }

    /// This node's view, given `counted` as the caller read (or raised) it.
    fn view(&self, counted: u64) -> u64 {
        self.base.load(Ordering::SeqCst).saturating_add(counted)
    }

    /// Takes a store value that holds exactly `sent` of this node's requests.
    fn learn(&self, store_value: u64, sent: u64) {
        self.base.fetch_max(store_value.saturating_sub(sent), Ordering::SeqCst);
    }
}

/// The most counters a node batches, as many as the local policy keeps (`LocalCounters::DEFAULT_MAX_ENTRIES`).
const MAX_ENTRIES: usize = super::local::LocalCounters::DEFAULT_MAX_ENTRIES;

#[derive(Debug)]
pub struct BatchedCounters {
    inner: Arc<dyn Counters>,
    entries: papaya::HashMap<CounterKey, Entry, super::KeyHasher>,
    clock: SharedClock,
    /// One sync at a time: two would both send the same unsent requests.
    syncing: tokio::sync::Mutex<()>,
}

impl BatchedCounters {
    /// Wraps `inner` and starts the task that syncs it every `interval`, on `runtime`. The task ends once the
    /// counters are dropped.
    pub fn start(
        inner: Arc<dyn Counters>,
        interval: Duration,
        clock: SharedClock,
        runtime: &tokio::runtime::Handle,
    ) -> Arc<Self> {
        let counters = Arc::new(Self {
            inner,
            entries: papaya::HashMap::with_hasher(super::KeyHasher::default()),
            clock,
            syncing: tokio::sync::Mutex::new(()),
        });
        let weak = Arc::downgrade(&counters);
        runtime.spawn(Self::sync_every(weak, interval));
        counters
    }

    async fn sync_every(counters: Weak<Self>, interval: Duration) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        // A slow store delays the next sync rather than bunching the missed ones.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(counters) = counters.upgrade() else { return };
            counters.sync().await;
        }
    }

    /// Sends what this node counted since the last sync, refreshes every counter from the store and forgets those
    /// whose window has ended. Failures are logged and the deltas kept for the next sync.
    pub async fn sync(&self) {
        let _one_at_a_time = self.syncing.lock().await;
        let mut by_delta: HashMap<u64, Vec<CounterKey>> = HashMap::new();
        let mut idle = Vec::new();
        {
            let entries = self.entries.pin();
            for (key, entry) in entries.iter() {
                let delta = entry.counted.load(Ordering::SeqCst).saturating_sub(entry.sent.load(Ordering::SeqCst));
                if delta == 0 {
                    idle.push(key.clone());
                } else {
                    by_delta.entry(delta).or_default().push(key.clone());
                }
            }
        }
        for (delta, keys) in by_delta {
            match self.inner.increment(&keys, delta).await {
                Ok(values) => {
                    let entries = self.entries.pin();
                    for (key, value) in keys.iter().zip(values) {
                        if let Some(entry) = entries.get(key) {
                            let sent = entry.sent.fetch_add(delta, Ordering::SeqCst) + delta;
                            entry.learn(value, sent);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, counters = keys.len(),
                    "could not sync rate-limiting counters; retrying at the next sync"),
            }
        }
        if !idle.is_empty() {
            match self.inner.values(&idle).await {
                Ok(values) => {
                    let entries = self.entries.pin();
                    for (key, value) in idle.iter().zip(values) {
                        if let Some(entry) = entries.get(key) {
                            entry.learn(value, entry.sent.load(Ordering::SeqCst));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read rate-limiting counters back from their store"),
            }
        }
        let now = self.clock.get().now().secs();
        // A window that has ended is never counted in again; what it still had unsent no longer matters.
        self.entries.pin().retain(|key, _| key.expires_at > now);
    }

    /// Counters this node is tracking.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records the store's answers for counters seen for the first time (values that hold none of this node's
    /// batched requests); another request may have recorded one meanwhile, so the larger base wins.
    fn record(&self, keys: &[CounterKey], values: &[u64]) {
        let entries = self.entries.pin();
        for (key, &value) in keys.iter().zip(values) {
            match entries.get(key) {
                Some(entry) => entry.learn(value, entry.sent.load(Ordering::SeqCst)),
                // Past the bound, a new counter is not tracked here: its requests count in the store directly, one
                // round trip each, so a client rotating identifiers costs round trips, never this node's memory.
                None if entries.len() >= MAX_ENTRIES => {}
                None => {
                    let entry = entries.get_or_insert_with(key.clone(), || Entry::at(value));
                    entry.learn(value, entry.sent.load(Ordering::SeqCst));
                }
            }
        }
    }
}

#[async_trait]
impl Counters for BatchedCounters {
    async fn increment(&self, keys: &[CounterKey], by: u64) -> Result<Vec<u64>, CounterError> {
        let mut out = Vec::with_capacity(keys.len());
        let mut unseen: Vec<usize> = Vec::new();
        {
            let entries = self.entries.pin();
            for (i, key) in keys.iter().enumerate() {
                match entries.get(key) {
                    Some(entry) => out.push(entry.view(entry.counted.fetch_add(by, Ordering::SeqCst) + by)),
                    None => {
                        unseen.push(i);
                        out.push(0);
                    }
                }
            }
        }
        if !unseen.is_empty() {
            let first: Vec<CounterKey> = unseen.iter().map(|&i| keys[i].clone()).collect();
            let values = self.inner.increment(&first, by).await?;
            self.record(&first, &values);
            for (&i, value) in unseen.iter().zip(values) {
                out[i] = value;
            }
        }
        Ok(out)
    }

    async fn values(&self, keys: &[CounterKey]) -> Result<Vec<u64>, CounterError> {
        let mut out = Vec::with_capacity(keys.len());
        let mut unseen: Vec<usize> = Vec::new();
        {
            let entries = self.entries.pin();
            for (i, key) in keys.iter().enumerate() {
                match entries.get(key) {
                    Some(entry) => out.push(entry.view(entry.counted.load(Ordering::SeqCst))),
                    None => {
                        unseen.push(i);
                        out.push(0);
                    }
                }
            }
        }
        if !unseen.is_empty() {
            let first: Vec<CounterKey> = unseen.iter().map(|&i| keys[i].clone()).collect();
            let values = self.inner.values(&first).await?;
            self.record(&first, &values);
            for (&i, value) in unseen.iter().zip(values) {
                out[i] = value;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use gatehouse_model::{Clock, ManualClock, Timestamp};

    use super::*;
    use crate::counters::Period;
    use crate::counters::local::LocalCounters;

    const START: i64 = 1_700_000_040;

    fn key(identifier: &str) -> CounterKey {
        CounterKey {
            route_id: None,
            service_id: None,
            identifier: identifier.to_owned(),
            period: Period::Minute,
            window_start: START,
            expires_at: START + 60,
        }
    }

    fn clock() -> (Arc<ManualClock>, SharedClock) {
        let manual = Arc::new(ManualClock::new(Timestamp::from_micros(START * 1_000_000)));
        (manual.clone(), SharedClock::new(manual as Arc<dyn Clock>))
    }

    /// A store that counts its calls and can be made to fail, standing in for a database or Redis that is down.
    #[derive(Debug)]
    struct Flaky {
        inner: LocalCounters,
        down: AtomicBool,
        increments: AtomicU64,
    }

    #[async_trait]
    impl Counters for Flaky {
        async fn increment(&self, keys: &[CounterKey], by: u64) -> Result<Vec<u64>, CounterError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(CounterError("store down".to_owned()));
            }
            self.increments.fetch_add(1, Ordering::SeqCst);
            self.inner.increment(keys, by).await
        }
        async fn values(&self, keys: &[CounterKey]) -> Result<Vec<u64>, CounterError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(CounterError("store down".to_owned()));
            }
            self.inner.values(keys).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn increments_are_local_between_syncs_and_reach_the_store_at_each_sync() {
        let (_, shared) = clock();
        let store =
            Arc::new(Flaky { inner: LocalCounters::new(shared.clone()), down: false.into(), increments: 0.into() });
        let batched =
            BatchedCounters::start(store.clone(), Duration::from_secs(2), shared, &tokio::runtime::Handle::current());
        // The first sight of a counter is counted in the store at once.
        assert_eq!(batched.increment(&[key("a")], 1).await.unwrap(), [1]);
        assert_eq!(store.increments.load(Ordering::SeqCst), 1);
        for expected in 2..=5 {
            assert_eq!(batched.increment(&[key("a")], 1).await.unwrap(), [expected]);
        }
        assert_eq!(store.increments.load(Ordering::SeqCst), 1, "later increments wait for the sync");
        assert_eq!(store.values(&[key("a")]).await.unwrap(), [1]);
        assert_eq!(batched.values(&[key("a")]).await.unwrap(), [5]);

        tokio::time::sleep(Duration::from_millis(1999)).await;
        assert_eq!(store.values(&[key("a")]).await.unwrap(), [1], "no sync before sync_rate");
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(store.values(&[key("a")]).await.unwrap(), [5], "the sync sent the four pending");
        assert_eq!(store.increments.load(Ordering::SeqCst), 2, "in one increment");

        // Another node's increments show at the next sync.
        store.inner.increment(&[key("a")], 10).await.unwrap();
        assert_eq!(batched.values(&[key("a")]).await.unwrap(), [5]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(batched.values(&[key("a")]).await.unwrap(), [15]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_sync_keeps_the_deltas_and_ended_windows_are_forgotten() {
        let (manual, shared) = clock();
        let store =
            Arc::new(Flaky { inner: LocalCounters::new(shared.clone()), down: false.into(), increments: 0.into() });
        let batched =
            BatchedCounters::start(store.clone(), Duration::from_secs(1), shared, &tokio::runtime::Handle::current());
        batched.increment(&[key("a"), key("b")], 1).await.unwrap();
        assert_eq!(batched.increment(&[key("a"), key("b")], 3).await.unwrap(), [4, 4]);
        store.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(batched.values(&[key("a"), key("b")]).await.unwrap(), [4, 4], "nothing lost while down");
        assert!(batched.increment(&[key("c")], 1).await.is_err(), "a first sight needs the store");
        store.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(store.values(&[key("a"), key("b")]).await.unwrap(), [4, 4]);

        manual.advance_secs(60);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(batched.is_empty(), "the minute has ended");
    }

    #[tokio::test(start_paused = true)]
    async fn two_nodes_stay_within_the_documented_bound() {
        const LIMIT: u64 = 20;
        const PER_INTERVAL: u64 = 3;
        let (_, shared) = clock();
        let store: Arc<dyn Counters> = Arc::new(LocalCounters::new(shared.clone()));
        let runtime = tokio::runtime::Handle::current();
        let nodes: Vec<_> = (0..2)
            .map(|_| BatchedCounters::start(store.clone(), Duration::from_secs(1), shared.clone(), &runtime))
            .collect();
        let mut accepted = 0;
        for _ in 0..30 {
            for node in &nodes {
                for _ in 0..PER_INTERVAL {
                    // Kong's order: read the usage, refuse at the limit, count what passes.
                    if node.values(&[key("a")]).await.unwrap()[0] < LIMIT {
                        node.increment(&[key("a")], 1).await.unwrap();
                        accepted += 1;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(accepted >= LIMIT, "the limit is reached: {accepted}");
        assert!(accepted <= LIMIT + 2 * PER_INTERVAL, "N + nodes × batch: {accepted}");
        assert_eq!(store.values(&[key("a")]).await.unwrap(), [accepted], "every accepted request was synced");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_increments_and_syncs_lose_nothing_and_never_undercount() {
        let (_, shared) = clock();
        let store: Arc<dyn Counters> = Arc::new(LocalCounters::new(shared.clone()));
        // Synced by hand below, as often as the machine allows, while requests count.
        let batched = BatchedCounters::start(
            store.clone(),
            Duration::from_secs(3600),
            shared,
            &tokio::runtime::Handle::current(),
        );
        batched.increment(&[key("a")], 1).await.unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let syncer = {
            let (batched, done) = (batched.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(Ordering::SeqCst) {
                    batched.sync().await;
                    tokio::task::yield_now().await;
                }
            })
        };
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let batched = batched.clone();
                tokio::spawn(async move {
                    let mut last = 0;
                    for _ in 0..2000 {
                        let value = batched.increment(&[key("a")], 1).await.unwrap()[0];
                        // Each answer holds this task's earlier increments and never counts one twice, so it only
                        // grows, and never past what was counted.
                        assert!(value > last, "the view went back: {value} after {last}");
                        assert!(value <= 8001, "counted twice: {value}");
                        last = value;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        done.store(true, Ordering::SeqCst);
        syncer.await.unwrap();
        batched.sync().await;
        assert_eq!(store.values(&[key("a")]).await.unwrap(), [8001], "every increment reached the store once");
        assert_eq!(batched.values(&[key("a")]).await.unwrap(), [8001]);
    }
}
