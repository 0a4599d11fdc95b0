//! The `cluster` rate-limiting policy: the gateway's [`Counters`] over the node's database. It lives here, the
//! one crate that sees both, because the gateway never depends on storage: the node hands the proxy this adapter
//! (`ProxySettings::cluster_counters`) as it hands it everything else.
//!
//! Nodes sharing a PostgreSQL database count in the same rows, so they enforce one limit; on SQLite the counters
//! are the one node's, but survive its restarts. Ended windows are deleted by [`prune`], every minute, not by the
//! requests.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use gatehouse_gateway::counters::{CounterError, CounterKey, Counters};
use gatehouse_model::Clock;
use gatehouse_store::{RateLimitCounter, Store};

/// How often ended windows are deleted. A minute keeps the table small (at most the second and minute windows of
/// the last minute on top of the live ones) for one indexed DELETE a minute.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct StoreCounters {
    store: Arc<dyn Store>,
}

impl StoreCounters {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

fn row(key: &CounterKey) -> RateLimitCounter<'_> {
    RateLimitCounter {
        route_id: key.route_id,
        service_id: key.service_id,
        identifier: &key.identifier,
        period: key.period.name(),
        period_date: key.window_start,
        expires_at: key.expires_at,
    }
}

/// The store's error already names what failed without credentials (the URL never reaches it).
fn failed(e: gatehouse_store::StoreError) -> CounterError {
    CounterError(format!("the database: {e}"))
}

#[async_trait]
impl Counters for StoreCounters {
    async fn increment(&self, keys: &[CounterKey], by: u64) -> Result<Vec<u64>, CounterError> {
        let rows: Vec<RateLimitCounter<'_>> = keys.iter().map(row).collect();
        self.store.increment_rate_limits(&rows, by).await.map_err(failed)
    }

    async fn values(&self, keys: &[CounterKey]) -> Result<Vec<u64>, CounterError> {
        let rows: Vec<RateLimitCounter<'_>> = keys.iter().map(row).collect();
        self.store.rate_limit_values(&rows).await.map_err(failed)
    }
}

/// Deletes the counters whose window has ended by `clock`'s now; returns how many.
pub async fn prune_once(store: &dyn Store, clock: &dyn Clock) -> Result<u64, gatehouse_store::StoreError> {
    store.prune_rate_limits(clock.now().secs()).await
}

/// Prunes ended windows every [`PRUNE_EVERY`] until `stop`. Every node runs it; on a shared database the deletes
/// overlap harmlessly (a row deleted twice is deleted once).
pub async fn prune(store: Arc<dyn Store>, clock: Arc<dyn Clock>, stop: CancellationToken) -> std::io::Result<()> {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PRUNE_EVERY, PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        match prune_once(store.as_ref(), clock.as_ref()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "pruned ended rate-limiting windows"),
            Err(e) => tracing::warn!(error = %e, "could not prune rate-limiting counters"),
        }
    }
}
