//! The `local` policy: counters in this node's memory, in a lock-free map, so requests on every worker count in
//! the same numbers without waiting on each other. Counters outlive configuration changes (the map is the node's)
//! and are pruned once their window has ended.
//!
//! The map is bounded ([`LocalCounters::DEFAULT_MAX_ENTRIES`]), as Kong's 12 MB shared dictionary is: a key holds
//! what a client chose (an address, a header value), and a client rotating addresses against a `day` or `year`
//! limit would otherwise grow it until the windows end. Past the bound, ended windows go first, then the counters
//! with the lowest counts (the rotating client's, each at 1), down to nine tenths of the bound; those clients start
//! again from 0, as Kong's least recently used ones do.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use async_trait::async_trait;
use gatehouse_model::SharedClock;

use super::{CounterError, CounterKey, Counters};

type Pinned<'m> = papaya::HashMapRef<'m, CounterKey, AtomicU64, super::KeyHasher, papaya::LocalGuard<'m>>;

#[derive(Debug)]
pub struct LocalCounters {
    counters: papaya::HashMap<CounterKey, AtomicU64, super::KeyHasher>,
    clock: SharedClock,
    /// The second of the last sweep for ended windows; one increment per second sweeps.
    swept_at: AtomicI64,
    max_entries: usize,
    /// Set while one thread evicts, so the others do not scan the map too.
    evicting: AtomicBool,
}

impl LocalCounters {
    /// About 200 bytes a counter: some 40 MB at the bound.
    pub const DEFAULT_MAX_ENTRIES: usize = 200_000;

    pub fn new(clock: SharedClock) -> Self {
        Self::with_max_entries(clock, Self::DEFAULT_MAX_ENTRIES)
    }

    pub fn with_max_entries(clock: SharedClock, max_entries: usize) -> Self {
        Self {
            counters: papaya::HashMap::with_hasher(super::KeyHasher::default()),
            clock,
            swept_at: AtomicI64::new(0),
            max_entries: max_entries.max(1),
            evicting: AtomicBool::new(false),
        }
    }

    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    fn sweep(&self) {
        let now = self.clock.get().now().secs();
        let last = self.swept_at.load(Ordering::Relaxed);
        if now <= last || self.swept_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        self.counters.pin().retain(|key, _| key.expires_at > now);
    }

    /// The key's counter, made at 0 when missing (past the bound, after an eviction).
    fn counter<'g>(&self, counters: &'g Pinned<'_>, key: &CounterKey) -> &'g AtomicU64 {
        match counters.get(key) {
            Some(counter) => counter,
            None => {
                if counters.len() >= self.max_entries {
                    self.evict();
                }
                counters.get_or_insert_with(key.clone(), || AtomicU64::new(0))
            }
        }
    }

    /// Brings the map back under nine tenths of its bound: ended windows first, then the lowest counts.
    fn evict(&self) {
        if self.evicting.swap(true, Ordering::Acquire) {
            return;
        }
        let now = self.clock.get().now().secs();
        let counters = self.counters.pin();
        counters.retain(|key, _| key.expires_at > now);
        let target = self.max_entries - self.max_entries / 10;
        let excess = counters.len().saturating_sub(target);
        if excess > 0 {
            let mut counts: Vec<u64> = counters.iter().map(|(_, c)| c.load(Ordering::Relaxed)).collect();
            // Another thread may have emptied the map meanwhile.
            let Some(cut) = excess.min(counts.len()).checked_sub(1) else {
                self.evicting.store(false, Ordering::Release);
                return;
            };
            let (_, &mut threshold, _) = counts.select_nth_unstable(cut);
            let mut left = excess;
            counters.retain(|_, c| {
                if left > 0 && c.load(Ordering::Relaxed) <= threshold {
                    left -= 1;
                    false
                } else {
                    true
                }
            });
        }
        self.evicting.store(false, Ordering::Release);
    }
}

#[async_trait]
impl Counters for LocalCounters {
    async fn increment(&self, keys: &[CounterKey], by: u64) -> Result<Vec<u64>, CounterError> {
        self.sweep();
        let counters = self.counters.pin();
        Ok(keys
            .iter()
            .map(|key| self.counter(&counters, key).fetch_add(by, Ordering::Relaxed).saturating_add(by))
            .collect())
    }

    async fn values(&self, keys: &[CounterKey]) -> Result<Vec<u64>, CounterError> {
        let counters = self.counters.pin();
        Ok(keys.iter().map(|key| counters.get(key).map_or(0, |c| c.load(Ordering::Relaxed))).collect())
    }

    /// One lookup per counter for the check and the count, where the default makes two calls and two lookups.
    async fn count_within(&self, keys: &[CounterKey], limits: &[f64]) -> Result<Vec<u64>, CounterError> {
        self.sweep();
        let counters = self.counters.pin();
        let found: smallvec::SmallVec<[&AtomicU64; 6]> = keys.iter().map(|key| self.counter(&counters, key)).collect();
        let before: Vec<u64> = found.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        if before.iter().zip(limits).any(|(&count, &limit)| count as f64 >= limit) {
            return Ok(before);
        }
        Ok(found.iter().map(|c| c.fetch_add(1, Ordering::Relaxed)).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gatehouse_model::ManualClock;
    use gatehouse_model::{Clock, Timestamp};

    use super::*;
    use crate::counters::Period;

    fn key(identifier: &str, window_start: i64) -> CounterKey {
        CounterKey {
            route_id: None,
            service_id: None,
            identifier: identifier.to_owned(),
            period: Period::Second,
            window_start,
            expires_at: window_start + 1,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_increments_are_never_lost_and_ended_windows_are_swept() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_000_000_000_000)));
        let counters = Arc::new(LocalCounters::new(SharedClock::new(clock.clone() as Arc<dyn Clock>)));
        let now = clock.now().secs();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let counters = counters.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    for _ in 0..1000 {
                        seen.push(counters.increment(&[key("a", now)], 1).await.unwrap()[0]);
                    }
                    seen
                })
            })
            .collect();
        let mut seen: Vec<u64> = Vec::new();
        for task in tasks {
            seen.extend(task.await.unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=8000).collect::<Vec<u64>>(), "every increment returns a distinct value");
        assert_eq!(counters.values(&[key("a", now), key("b", now)]).await.unwrap(), [8000, 0]);

        clock.advance_secs(2);
        counters.increment(&[key("b", now + 2)], 3).await.unwrap();
        assert_eq!(counters.len(), 1, "the ended window is gone");
        assert_eq!(counters.values(&[key("a", now)]).await.unwrap(), [0]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn count_within_counts_exactly_the_limit_and_never_a_refused_request() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_000_000_000_000)));
        let counters = Arc::new(LocalCounters::new(SharedClock::new(clock.clone() as Arc<dyn Clock>)));
        let now = clock.now().secs();
        let keys = [key("a", now), CounterKey { period: Period::Minute, ..key("a", now) }];
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (counters, keys) = (counters.clone(), keys.clone());
                tokio::spawn(async move {
                    let mut admitted = 0;
                    for _ in 0..100 {
                        let before = counters.count_within(&keys, &[30.0, 1000.0]).await.unwrap();
                        admitted += usize::from(before[0] < 30);
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += task.await.unwrap();
        }
        assert_eq!(admitted, 30, "exactly the limit, however the tasks interleave");
        let counted = counters.values(&keys).await.unwrap();
        assert!(counted[0] >= 30 && counted[0] <= 34, "refused requests are not counted ({counted:?})");
        assert_eq!(counted[0], counted[1], "a request is counted in every period or in none");
    }

    #[tokio::test]
    async fn a_client_rotating_identifiers_cannot_grow_the_map_past_its_bound() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_000_000_000_000)));
        let counters = LocalCounters::with_max_entries(SharedClock::new(clock.clone() as Arc<dyn Clock>), 100);
        let now = clock.now().secs();
        let year = |identifier: &str| CounterKey { expires_at: now + 31_536_000, ..key(identifier, now) };
        // A regular client, counted often.
        for _ in 0..50 {
            counters.increment(&[year("regular")], 1).await.unwrap();
        }
        // A client with a new address every request, against a year-long window.
        for i in 0..10_000 {
            counters.increment(&[year(&format!("2001:db8::{i:x}"))], 1).await.unwrap();
            assert!(counters.len() <= 100, "{} counters after {i} addresses", counters.len());
        }
        assert_eq!(counters.values(&[year("regular")]).await.unwrap(), [50], "the busy counter is kept");
    }
}
