//! Time as a dependency, so expiry, rotation and cache lapses are tested without waiting.
//!
//! The rule for the whole workspace (clippy's `disallowed-methods` enforces it): a reading of wall time goes through
//! a [`Clock`], and a deadline or a measured interval uses `tokio::time::Instant`, which tokio's paused time moves.
//! [`SystemClock::now`] is the one place that reads `SystemTime::now`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Timestamp;

pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The wall clock itself: the one reading everything else gets through `Clock`.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_micros(micros)
    }
}

/// An `Arc<dyn Clock>` that is the wall clock unless told otherwise, so settings that carry one can derive
/// `Default` and tests can hand in a [`ManualClock`].
#[derive(Debug, Clone)]
pub struct SharedClock(Arc<dyn Clock>);

impl SharedClock {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self(clock)
    }

    pub fn get(&self) -> &Arc<dyn Clock> {
        &self.0
    }
}

impl Default for SharedClock {
    fn default() -> Self {
        Self(Arc::new(SystemClock))
    }
}

impl From<Arc<dyn Clock>> for SharedClock {
    fn from(clock: Arc<dyn Clock>) -> Self {
        Self(clock)
    }
}

impl Clock for SharedClock {
    fn now(&self) -> Timestamp {
        self.0.now()
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.micros())))
    }

    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs.saturating_mul(1_000_000), Ordering::SeqCst);
    }

    pub fn advance_micros(&self, micros: i64) {
        self.0.fetch_add(micros, Ordering::SeqCst);
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.micros(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::from_secs(100));
        let shared = c.clone();
        assert_eq!(c.now().secs(), 100);
        shared.advance_secs(5);
        assert_eq!(c.now().secs(), 105);
        shared.advance_micros(-1);
        assert_eq!(c.now().micros(), 105_000_000 - 1);
        assert!(SystemClock.now().secs() > 1_700_000_000);
    }

    #[test]
    fn a_shared_clock_is_the_wall_clock_unless_given_another() {
        assert!(SharedClock::default().now().secs() > 1_700_000_000);
        let manual = ManualClock::new(Timestamp::from_secs(7));
        let shared = SharedClock::new(Arc::new(manual.clone()));
        manual.advance_secs(1);
        assert_eq!(shared.clone().now().secs(), 8, "clones read the clock they were given");
    }
}
