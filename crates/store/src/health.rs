//! Whether writes currently reach the database, for readiness.
//!
//! Every write transaction reports how it ended, so a healthy node learns its state without any extra database
//! work. Once a write fails for a storage reason (disk full, I/O error, lost connection), a probe writes one meta
//! row a few times a second until a write succeeds again, so readiness notices the recovery even when no client
//! writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::StoreError;
use crate::sql::Db;

const PROBE_EVERY: Duration = Duration::from_millis(250);
/// A probe that takes longer than this counts as failed (a stuck disk, an unreachable server).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What readiness reports about storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStatus {
    Ok,
    /// The last write failed for a storage reason; `reason` is a short phrase safe to show anyone.
    Failing {
        reason: &'static str,
    },
}

#[derive(Debug)]
struct Failure {
    reason: &'static str,
    since: Instant,
}

pub(crate) struct WriteHealth {
    failing: AtomicBool,
    failure: Mutex<Option<Failure>>,
    probing: AtomicBool,
    db: OnceLock<Weak<dyn Db>>,
}

impl std::fmt::Debug for WriteHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteHealth").field("status", &self.status()).finish_non_exhaustive()
    }
}

impl WriteHealth {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            failing: AtomicBool::new(false),
            failure: Mutex::new(None),
            probing: AtomicBool::new(false),
            db: OnceLock::new(),
        })
    }

    /// Names the database the probe writes to (set once the database is shared, after it opened).
    pub(crate) fn probe_with(&self, db: Weak<dyn Db>) {
        let _ = self.db.set(db);
    }

    pub(crate) fn status(&self) -> WriteStatus {
        if !self.failing.load(Ordering::Acquire) {
            return WriteStatus::Ok;
        }
        match &*self.failure.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(f) => WriteStatus::Failing { reason: f.reason },
            None => WriteStatus::Ok,
        }
    }

    /// A write committed. Costs one atomic load while writes are healthy.
    pub(crate) fn succeeded(&self) {
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = failure.take() {
            tracing::info!(failed_for_ms = f.since.elapsed().as_millis() as u64, "database writes work again");
        }
        self.failing.store(false, Ordering::Release);
    }

    /// A write failed; only storage faults count (a conflict or a missing row says nothing about the disk).
    pub(crate) fn failed(self: &Arc<Self>, error: &StoreError) {
        let Some(reason) = error.unavailable_reason() else { return };
        {
            let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            if failure.is_none() {
                tracing::error!(error = %error, reason, "database writes are failing");
                *failure = Some(Failure { reason, since: Instant::now() });
            }
            self.failing.store(true, Ordering::Release);
        }
        self.start_probe();
    }

    fn start_probe(self: &Arc<Self>) {
        let Some(db) = self.db.get().cloned() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let health = self.clone();
        runtime.spawn(async move {
            loop {
                while health.failing.load(Ordering::Acquire) {
                    tokio::time::sleep(PROBE_EVERY).await;
                    let Some(db) = db.upgrade() else { return };
                    // The probe's transaction reports its own outcome through this same health.
                    match tokio::time::timeout(PROBE_TIMEOUT, probe(db.as_ref())).await {
                        Ok(Ok(())) | Ok(Err(_)) => {}
                        Err(_) => tracing::warn!("the database write probe timed out"),
                    }
                }
                health.probing.store(false, Ordering::Release);
                // A failure reported between the last check and clearing the flag found the probe still running.
                if !health.failing.load(Ordering::Acquire) || health.probing.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
    }
}

/// One small write: it needs the write lock and room for a commit, like any real write.
async fn probe(db: &dyn Db) -> Result<(), StoreError> {
    let mut tx = db.writer().await?;
    // Any value that changes will do; the wall clock's is readable by whoever looks at the row.
    let now = gatehouse_model::Clock::now(&gatehouse_model::SystemClock).micros();
    tx.execute(
        "INSERT INTO gatehouse_meta (key, value) VALUES ('write_probe', ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        vec![crate::sql::Param::Text(now.to_string())],
    )
    .await?;
    tx.commit().await
}
