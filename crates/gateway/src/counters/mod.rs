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
