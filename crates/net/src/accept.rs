//! Accept errors: a listener out of file descriptors fails every `accept` until one frees up, and logging each
//! failure once wrote 27,000 lines in 150 s. One line a second per listener, with the count of those left out.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

use crate::gate::Gate;

/// How long a listener pauses after an accept failed for want of resources (nginx waits 500 ms), and after any
/// other failure worth logging (one that persists must not spin the thread).
const RESOURCE_BACKOFF: Duration = Duration::from_millis(50);
const OTHER_BACKOFF: Duration = Duration::from_millis(10);
const LOG_EVERY: Duration = Duration::from_secs(1);

/// The accept errors of one listener (or one worker's socket), logged at most once a second.
#[derive(Debug)]
pub struct AcceptErrors {
    listener: &'static str,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    pub fn new(listener: &'static str) -> Self {
        Self { listener, last_logged: None, suppressed: 0 }
    }

    /// Records a failed `accept` and waits as long as the kind of failure needs. Out of descriptors (or
    /// memory), the gate's longest-idle connection is closed to free one, and the listener pauses.
    pub async fn failed(&mut self, error: &io::Error, gate: &Gate) {
        let resources = is_resource_error(error);
        // A connection that was reset before it was accepted is the client's business, not the listener's.
        if !resources && matches!(error.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) {
            tracing::debug!(listener = self.listener, error = %error, "accept failed");
            return;
        }
        self.log(error);
        if resources {
            gate.shed_idle();
            tokio::time::sleep(RESOURCE_BACKOFF).await;
        } else {
            tokio::time::sleep(OTHER_BACKOFF).await;
        }
    }

    fn log(&mut self, error: &io::Error) {
        let now = Instant::now();
        if self.last_logged.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(listener = self.listener, error = %error, suppressed = self.suppressed, "accept failed");
        self.last_logged = Some(now);
        self.suppressed = 0;
    }
}

/// `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`: the process or the system is out of something, and trying again at
/// once fails the same way.
fn is_resource_error(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(23 | 24 | 105 | 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn out_of_descriptors_logs_once_a_second_and_sheds_an_idle_connection() {
        let gate = Gate::new("test", crate::ConnectionLimits::default(), Vec::new());
        let idle = gate.admit(std::net::Ipv4Addr::LOCALHOST.into()).unwrap();
        let mut errors = AcceptErrors::new("test");
        let emfile = io::Error::from_raw_os_error(24);
        errors.failed(&emfile, &gate).await;
        assert_eq!(gate.open(), 0, "the idle connection was shed");
        drop(idle);
        for _ in 0..5 {
            errors.failed(&emfile, &gate).await;
        }
        assert_eq!(errors.suppressed, 5, "within a second of the first line");
        tokio::time::advance(Duration::from_secs(1)).await;
        errors.failed(&emfile, &gate).await;
        assert_eq!(errors.suppressed, 0, "a second later, one more line");
    }
}
