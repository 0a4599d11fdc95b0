//! Rate-limiting counters, behind one interface whatever keeps them: this node's memory (`local`), the node's
//! database (`cluster`, shared by every node on one PostgreSQL database) or Redis (`redis`). The
//! `rate-limiting` plugin works out the windows a request counts in and asks its policy's [`Counters`] to count
//! it; the policy decides where the numbers live.
//!
//! The gateway never touches the database itself: the node hands it a [`Counters`] backed by the store
//! (`ProxySettings::cluster_counters`), as it hands it everything else.

use std::fmt;

use async_trait::async_trait;

/// How counter maps hash their keys: foldhash, seeded per process, because a key holds what a client chose (a
/// header value, an address) and SipHash, the standard map's, was a sixth of the whole plugin chain's cost.
pub type KeyHasher = foldhash::fast::RandomState;

/// Kong's rate-limiting periods, shortest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

impl Period {
    pub const ALL: [Period; 6] =
        [Period::Second, Period::Minute, Period::Hour, Period::Day, Period::Month, Period::Year];

    /// Kong's name, as in the plugin's config and its `X-RateLimit-*-<Period>` headers (capitalised there).
    pub fn name(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        }
    }
}

/// One counter: one window of one period, for one identifier, of one plugin instance's scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// The scope of the plugin instance that counts, so two instances never share counters (Kong keys its
    /// counters by route and service id too).
    pub route_id: Option<uuid::Uuid>,
    pub service_id: Option<uuid::Uuid>,
    /// What the limit is counted by: a consumer id, a client address, a header value, a path (Kong's identifier).
    pub identifier: String,
    pub period: Period,
    /// The window's first second (unix time, UTC), aligned as Kong aligns it: on the second, minute, hour, day,
    /// first day of the month, first day of the year.
    pub window_start: i64,
    /// When the counter may be forgotten (unix seconds): the window's end. Stores prune counters past it.
    pub expires_at: i64,
}

/// A policy's store could not be reached or answered wrongly. Its text names the store, never a credential.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CounterError(pub String);

/// Where a policy keeps its counters.
#[async_trait]
pub trait Counters: Send + Sync + fmt::Debug {
    /// Adds `by` to every key's counter, as one atomic step per counter, creating missing ones at 0; returns each
    /// counter's value after the addition, in the order of `keys`. Two nodes calling this at once on one store
    /// never both see the same value, which is what makes a shared limit exact.
    async fn increment(&self, keys: &[CounterKey], by: u64) -> Result<Vec<u64>, CounterError>;

    /// The counters' values without changing them (0 for one that does not exist), in the order of `keys`.
    async fn values(&self, keys: &[CounterKey]) -> Result<Vec<u64>, CounterError>;

    /// Kong's `local` and `cluster` decision: count one request in every counter unless one of them has already
    /// reached its limit (`limits[i]` for `keys[i]`). Returns each counter's value before this request, as the
    /// increment saw it when counted (so two requests racing for the last place never both see room). The default
    /// reads, then increments; a store that can do both in one pass overrides it.
    async fn count_within(&self, keys: &[CounterKey], limits: &[f64]) -> Result<Vec<u64>, CounterError> {
        let before = self.values(keys).await?;
        if before.iter().zip(limits).any(|(&count, &limit)| count as f64 >= limit) {
            return Ok(before);
        }
        let after = self.increment(keys, 1).await?;
        Ok(after.into_iter().map(|v| v.saturating_sub(1)).collect())
    }
}

pub mod batched;
pub mod local;
pub mod redis;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gatehouse_model::SharedClock;
use gatehouse_model::secret::SecretString;

/// Where a `rate-limiting` instance keeps its counters (its `policy` and, for Redis, its `redis` block).
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    Local,
    Cluster,
    Redis(RedisSettings),
}

/// Kong's `redis` block of the plugin's config; the connection pool is shared by every instance with the same
/// settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub database: i64,
    /// Milliseconds for connecting and for each command.
    pub timeout_ms: u64,
    pub ssl: bool,
    pub ssl_verify: bool,
    pub server_name: Option<String>,
}

/// The node's counter stores, one per node (in `plugins::Shared`): every plugin instance, on every worker and across
/// configuration changes, counts in the same ones.
///
/// Stores are made on first request and kept for the node's life: one Redis connection per distinct `redis`
/// block, one batching layer per store and `sync_rate`. A configuration change therefore never loses the deltas a
/// batch still holds, nor reconnects to Redis. (The lists only grow with distinct settings an operator has used,
/// and are searched only when a configuration is compiled, never per request.)
#[derive(Debug)]
pub struct CounterStores {
    local: Arc<local::LocalCounters>,
    cluster: Option<Arc<dyn Counters>>,
    clock: SharedClock,
    /// The node's runtime, found when the node builds its proxy: Redis connections and sync tasks run there, not on
    /// the proxy worker that happened to compile the configuration.
    runtime: Option<tokio::runtime::Handle>,
    redis: Mutex<Vec<(RedisSettings, Arc<redis::RedisCounters>)>>,
    batched: Mutex<Vec<(Policy, u64, Arc<batched::BatchedCounters>)>>,
}

impl CounterStores {
    pub fn new(cluster: Option<Arc<dyn Counters>>, clock: SharedClock) -> Self {
        Self {
            local: Arc::new(local::LocalCounters::new(clock.clone())),
            cluster,
            clock,
            runtime: tokio::runtime::Handle::try_current().ok(),
            redis: Mutex::new(Vec::new()),
            batched: Mutex::new(Vec::new()),
        }
    }

    /// The counters a policy counts in. `sync_rate` is Kong's: above 0, increments are batched and sent every
    /// `sync_rate` seconds; otherwise each request waits for its increment. An error is a configuration this node
    /// cannot run (the `cluster` policy on a node without a store, Redis over TLS).
    ///
    /// The same policy, settings and `sync_rate` always get the same counters on this node.
    pub fn get(&self, policy: &Policy, sync_rate: f64) -> Result<Arc<dyn Counters>, String> {
        let store: Arc<dyn Counters> = match policy {
            // Kong's local counters are already in shared memory; there is nothing to batch.
            Policy::Local => return Ok(self.local.clone()),
            Policy::Cluster => {
                self.cluster.clone().ok_or_else(|| "the cluster policy needs a node with a database".to_owned())?
            }
            Policy::Redis(settings) => self.redis(settings)?,
        };
        // -1 (Kong's default) and 0 mean synchronous; NaN is treated alike.
        if sync_rate.is_nan() || sync_rate <= 0.0 {
            return Ok(store);
        }
        let interval =
            Duration::try_from_secs_f64(sync_rate).map_err(|_| format!("sync_rate: {sync_rate} is too large"))?;
        let Some(runtime) = &self.runtime else {
            return Err("sync_rate above 0 needs the node's runtime to sync counters".to_owned());
        };
        let bits = sync_rate.to_bits();
        let mut batched = self.batched.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, _, found)) = batched.iter().find(|(p, b, _)| p == policy && *b == bits) {
            return Ok(found.clone());
        }
        let made = batched::BatchedCounters::start(store, interval, self.clock.clone(), runtime);
        batched.push((policy.clone(), bits, made.clone()));
        Ok(made)
    }

    /// The node's connection to the Redis server of `settings` (one per distinct block, shared with what else uses
    /// that server: `upstream-oauth`'s `redis` cache strategy keeps its tokens there).
    pub fn redis(&self, settings: &RedisSettings) -> Result<Arc<redis::RedisCounters>, String> {
        let mut pools = self.redis.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, found)) = pools.iter().find(|(s, _)| s == settings) {
            return Ok(found.clone());
        }
        let made = Arc::new(redis::RedisCounters::new(settings.clone(), self.runtime.clone())?);
        pools.push((settings.clone(), made.clone()));
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(port: u16) -> Policy {
        Policy::Redis(RedisSettings {
            host: "127.0.0.1".to_owned(),
            port,
            username: None,
            password: Some(SecretString::from("pw")),
            database: 0,
            timeout_ms: 2000,
            ssl: false,
            ssl_verify: false,
            server_name: None,
        })
    }

    #[tokio::test]
    async fn the_same_policy_settings_and_sync_rate_share_one_store() {
        let cluster: Arc<dyn Counters> = Arc::new(local::LocalCounters::new(SharedClock::default()));
        let stores = CounterStores::new(Some(cluster.clone()), SharedClock::default());
        let same = |a: &Arc<dyn Counters>, b: &Arc<dyn Counters>| Arc::ptr_eq(a, b);
        let get = |p: &Policy, rate: f64| stores.get(p, rate).unwrap();

        assert!(same(&get(&Policy::Local, -1.0), &get(&Policy::Local, 5.0)), "local is never batched");
        assert!(same(&get(&Policy::Cluster, -1.0), &cluster));
        assert!(same(&get(&Policy::Cluster, 0.0), &cluster), "0 is synchronous too");
        let batched = get(&Policy::Cluster, 2.0);
        assert!(!same(&batched, &cluster));
        assert!(same(&batched, &get(&Policy::Cluster, 2.0)));
        assert!(!same(&batched, &get(&Policy::Cluster, 3.0)));

        let pool = get(&redis(6379), -1.0);
        assert!(same(&pool, &get(&redis(6379), 0.0)), "one connection per redis block");
        assert!(!same(&pool, &get(&redis(6380), -1.0)));
        let redis_batched = get(&redis(6379), 1.5);
        assert!(same(&redis_batched, &get(&redis(6379), 1.5)));
        assert!(!same(&redis_batched, &batched));
    }

    #[test]
    fn what_a_node_cannot_run_is_refused() {
        let stores = CounterStores::new(None, SharedClock::default());
        assert_eq!(
            stores.get(&Policy::Cluster, -1.0).err().as_deref(),
            Some("the cluster policy needs a node with a database")
        );
        let Policy::Redis(settings) = redis(6379) else { unreachable!() };
        let tls = Policy::Redis(RedisSettings { ssl: true, ..settings });
        assert!(stores.get(&tls, -1.0).is_err_and(|e| e.contains("redis.ssl")));
        // Outside a runtime (no node), batching has nowhere to run its sync.
        assert!(stores.get(&redis(6379), 1.0).is_err());
    }
}
