//! The `cluster` rate-limiting counters: Kong's `ratelimiting_metrics`, counted with one upsert per counter.

use async_trait::async_trait;

use super::SqlStore;
use crate::sql::params;
use crate::{RateLimitCounter, RateLimitCounterStore, Result, StoreError};

/// Kong's stand-in for "no route" or "no service", which a primary key cannot hold as NULL.
const EMPTY_UUID: &str = "00000000-0000-0000-0000-000000000000";

const SELECT_VALUE: &str = "SELECT value FROM ratelimiting_metrics \
     WHERE route_id = ? AND service_id = ? AND identifier = ? AND period = ? AND period_date = ?";

fn id(id: Option<uuid::Uuid>) -> String {
    id.map_or_else(|| EMPTY_UUID.to_owned(), |u| u.to_string())
}

fn key_params(c: &RateLimitCounter<'_>) -> Vec<crate::sql::Param> {
    params![id(c.route_id), id(c.service_id), c.identifier, c.period, c.period_date]
}

fn count(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::corrupt("column value: negative counter"))
}

#[async_trait]
impl RateLimitCounterStore for SqlStore {
    async fn increment_rate_limits(&self, counters: &[RateLimitCounter<'_>], by: u64) -> Result<Vec<u64>> {
        if counters.is_empty() {
            return Ok(Vec::new());
        }
        let by = i64::try_from(by).map_err(|_| StoreError::Config("rate-limiting increment too large".into()))?;
        // Two nodes' transactions lock the same rows; taking them in one order means neither waits on the other
        // while holding what the other needs (no deadlock on PostgreSQL).
        let mut order: Vec<usize> = (0..counters.len()).collect();
        order.sort_by_key(|&i| counters[i]);
        let mut values = vec![0; counters.len()];
        let mut tx = self.db.writer().await?;
        for i in order {
            let c = &counters[i];
            let mut bound = key_params(c);
            bound.extend(params![by, c.expires_at]);
            // `excluded.value` is what this statement adds; RETURNING reads the row this transaction now holds
            // locked, so the value is exactly this increment's.
            let row = tx
                .fetch_one(
                    "INSERT INTO ratelimiting_metrics \
                         (route_id, service_id, identifier, period, period_date, value, expires_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (route_id, service_id, identifier, period, period_date) \
                     DO UPDATE SET value = ratelimiting_metrics.value + excluded.value \
                     RETURNING value",
                    bound,
                )
                .await?
                .ok_or_else(|| StoreError::corrupt("the counter upsert returned no row"))?;
            values[i] = count(row.int("value")?)?;
        }
        tx.commit().await?;
        Ok(values)
    }

    async fn rate_limit_values(&self, counters: &[RateLimitCounter<'_>]) -> Result<Vec<u64>> {
        let mut values = Vec::with_capacity(counters.len());
        if counters.is_empty() {
            return Ok(values);
        }
        let mut conn = self.db.reader().await?;
        for c in counters {
            let row = conn.fetch_one(SELECT_VALUE, key_params(c)).await?;
            values.push(match row {
                Some(row) => count(row.int("value")?)?,
                None => 0,
            });
        }
        Ok(values)
    }

    async fn prune_rate_limits(&self, now: i64) -> Result<u64> {
        let mut tx = self.db.writer().await?;
        let pruned = tx.execute("DELETE FROM ratelimiting_metrics WHERE expires_at <= ?", params![now]).await?;
        tx.commit().await?;
        Ok(pruned)
    }
}
