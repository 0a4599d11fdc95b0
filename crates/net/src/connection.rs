//! Serving one admitted connection until it ends or the gate tells it to close.

use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;

use crate::gate::Admission;

/// How long a connection may take to finish what it has in flight once told to close: when the server stops, and
/// when it went idle (an idle connection closes at once; the grace covers a request that started meanwhile).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// Why [`drive`] stopped serving a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The connection ended (the client closed it, or an error).
    Ended,
    /// No request started within the header timeout of the accept.
    Silent,
    /// No request in flight for the keep-alive timeout.
    Idle,
    /// The listener was full and this was its longest-idle connection.
    Evicted,
    /// A response made no progress for the send timeout: the client is not reading.
    SendStalled,
    /// The server is stopping.
    Shutdown,
}

impl Closed {
    pub(crate) fn code(self) -> u8 {
        match self {
            Closed::Ended => 1,
            Closed::Silent => 2,
            Closed::Idle => 3,
            Closed::Evicted => 4,
            Closed::Shutdown => 5,
            Closed::SendStalled => 6,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Closed::Ended,
            2 => Closed::Silent,
            3 => Closed::Idle,
            4 => Closed::Evicted,
            5 => Closed::Shutdown,
            6 => Closed::SendStalled,
            _ => return None,
        })
    }
}

/// Serves `connection` until it ends or the gate tells it to close (see [`crate::Gate::sweep`],
/// [`crate::Gate::shut_down`], eviction). An idle connection, or every connection when the server stops, is closed
/// gracefully (HTTP/2 sends GOAWAY, and a request in flight may finish within a grace period); one that never sent
/// a request, or was evicted, is closed at once: its place and descriptor are needed now, and it has nothing in
/// flight to lose (an evicted one whose request started meanwhile gets the grace). One whose client stopped reading
/// is closed at once too. Holding `admission` keeps the connection's place at the gate.
pub async fn drive<C>(connection: C, admission: Admission) -> Closed
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(connection);
    let activity = admission.activity().clone();
    // One cheap extra branch per wake-up of the task: an atomic load, and a waker registration that is a
    // comparison when the task's waker has not changed.
    let told = std::future::poll_fn(|cx| activity.poll_closed(cx));
    let reason = tokio::select! {
        biased;
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
            return Closed::Ended;
        }
        reason = told => reason,
    };
    tracing::debug!(address = %activity.address(), ?reason, "closing a client connection");
    let grace = match reason {
        Closed::Shutdown => SHUTDOWN_GRACE,
        Closed::Idle => IDLE_GRACE,
        // The gate chose it while no request was in flight, but one may have started since.
        Closed::Evicted if activity.busy() => IDLE_GRACE,
        _ => Duration::ZERO,
    };
    if !grace.is_zero() {
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(grace, connection).await;
    }
    drop(admission);
    reason
}
