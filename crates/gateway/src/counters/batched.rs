//! Kong's `sync_rate` above 0: a shared store (`cluster` or `redis`) is written every `sync_rate` seconds instead
//! of once per request.
//!
//! Each counter this node has seen keeps three numbers: `synced`, the store's value when this node last heard from
//! it; `in_flight`, what a running flush is adding; and `pending`, what this node counted since. A request adds to
//! `pending` (one atomic add, no lock, no round trip) and is answered `synced + in_flight + pending`. A counter this
//! node has not seen yet is counted in the store at once, so every node starts from the store's value rather than
//! from 0. Every `sync_rate` seconds a task sends the pending deltas (one `increment` per distinct delta, usually
//! one) and reads back every other counter, so increments by other nodes become visible.
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
    synced: AtomicU64,
    in_flight: AtomicU64,
    pending: AtomicU64,
}

impl Entry {
    fn synced_at(value: u64) -> Self {
        Self { synced: AtomicU64::new(value), ..Self::default() }
    }

    /// This node's view. Read in this order, against a flush that adds to `in_flight` before taking from
    /// `pending`, and raises `synced` before taking from `in_flight`, a delta being flushed is counted once or
    /// twice for an instant, never missed: the view never goes below the truth this node knows.
    fn view(&self, pending: u64) -> u64 {
        pending.saturating_add(self.in_flight.load(Ordering::SeqCst)).saturating_add(self.synced.load(Ordering::SeqCst))
    }
}

#[derive(Debug)]
pub struct BatchedCounters {
    inner: Arc<dyn Counters>,
    entries: papaya::HashMap<CounterKey, Entry>,
    clock: SharedClock,
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
        let counters = Arc::new(Self { inner, entries: papaya::HashMap::new(), clock });
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
        let mut by_delta: HashMap<u64, Vec<CounterKey>> = HashMap::new();
        let mut idle = Vec::new();
        {
            let entries = self.entries.pin();
            for (key, entry) in entries.iter() {
                let delta = entry.pending.load(Ordering::SeqCst);
                if delta == 0 {
                    idle.push(key.clone());
                } else {
                    entry.in_flight.fetch_add(delta, Ordering::SeqCst);
                    entry.pending.fetch_sub(delta, Ordering::SeqCst);
                    by_delta.entry(delta).or_default().push(key.clone());
                }
            }
        }
        for (delta, keys) in by_delta {
            let result = self.inner.increment(&keys, delta).await;
            let entries = self.entries.pin();
            if let Err(e) = &result {
                tracing::warn!(error = %e, counters = keys.len(), "could not sync rate-limiting counters; retrying at the next sync");
            }
            for (i, key) in keys.iter().enumerate() {
                let Some(entry) = entries.get(key) else { continue };
                match &result {
                    Ok(values) => {
                        entry.synced.fetch_max(values.get(i).copied().unwrap_or_default(), Ordering::SeqCst);
                    }
                    Err(_) => {
                        entry.pending.fetch_add(delta, Ordering::SeqCst);
                    }
                }
                entry.in_flight.fetch_sub(delta, Ordering::SeqCst);
            }
        }
        if !idle.is_empty() {
            match self.inner.values(&idle).await {
                Ok(values) => {
                    let entries = self.entries.pin();
                    for (key, value) in idle.iter().zip(values) {
                        if let Some(entry) = entries.get(key) {
                            entry.synced.fetch_max(value, Ordering::SeqCst);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read rate-limiting counters back from their store"),
            }
        }
        let now = self.clock.get().now().secs();
        // A window that has ended is never counted in again; what it still had pending no longer matters.
        self.entries.pin().retain(|key, _| key.expires_at > now);
    }

    /// Counters this node is tracking.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records the store's answers for counters seen for the first time; another request may have recorded one
    /// meanwhile, so the larger value wins.
    fn record(&self, keys: &[CounterKey], values: &[u64]) {
        let entries = self.entries.pin();
        for (key, &value) in keys.iter().zip(values) {
            match entries.get(key) {
                Some(entry) => {
                    entry.synced.fetch_max(value, Ordering::SeqCst);
                }
                None => {
                    let entry = entries.get_or_insert_with(key.clone(), || Entry::synced_at(value));
                    entry.synced.fetch_max(value, Ordering::SeqCst);
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
                    Some(entry) => out.push(entry.view(entry.pending.fetch_add(by, Ordering::SeqCst) + by)),
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
                    Some(entry) => out.push(entry.view(entry.pending.load(Ordering::SeqCst))),
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
}
