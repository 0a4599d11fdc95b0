//! Rate-limiting counters, behind one interface whatever keeps them: this node's memory (`local`), the node's
//! database (`cluster`, shared by every node on one PostgreSQL database) or Redis (`redis`). The
//! `rate-limiting` plugin works out the windows a request counts in and asks its policy's [`Counters`] to count
//! it; the policy decides where the numbers live.
//!
//! The gateway never touches the database itself: the node hands it a [`Counters`] backed by the store
//! (`ProxySettings::cluster_counters`), as it hands it everything else.

use std::fmt;

use async_trait::async_trait;

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
}

pub mod local;

use std::sync::Arc;

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
#[derive(Debug)]
pub struct CounterStores {
    local: Arc<local::LocalCounters>,
    cluster: Option<Arc<dyn Counters>>,
}

impl CounterStores {
    pub fn new(cluster: Option<Arc<dyn Counters>>, clock: SharedClock) -> Self {
        Self { local: Arc::new(local::LocalCounters::new(clock)), cluster }
    }

    /// The counters a policy counts in. `sync_rate` is Kong's: above 0, increments are batched and sent every
    /// `sync_rate` seconds; otherwise each request waits for its increment. An error is a configuration this node
    /// cannot run (the `cluster` policy on a node without a store).
    pub fn get(&self, policy: &Policy, sync_rate: f64) -> Result<Arc<dyn Counters>, String> {
        let _ = sync_rate;
        match policy {
            Policy::Local => Ok(self.local.clone()),
            Policy::Cluster => {
                self.cluster.clone().ok_or_else(|| "the cluster policy needs a node with a database".to_owned())
            }
            Policy::Redis(_) => Err("the redis policy is not available in this build".to_owned()),
        }
    }
}
