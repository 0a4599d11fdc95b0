//! Serving one admitted connection until it ends, goes quiet, is evicted or the server stops.

use std::future::Future;
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;

use crate::gate::{Admission, Quiet};

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
    /// The server is stopping.
    Shutdown,
}

/// Serves `connection` until it ends, or until it is quiet past its deadlines, evicted, or `shutdown` resolves.
/// An idle connection, or every connection when the server stops, is closed gracefully (HTTP/2 sends GOAWAY, and a
/// request in flight may finish within a grace period); one that never sent a request, or was evicted, is closed
/// at once: its place and descriptor are needed now, and it has nothing in flight to lose. Holding `admission`
/// keeps the connection's place at the gate.
pub async fn drive<C>(connection: C, admission: Admission, shutdown: impl Future<Output = ()>) -> Closed
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(connection);
    tokio::pin!(shutdown);
    let activity = admission.activity().clone();
    let limits = *admission.limits();
    let quiet = async {
        loop {
            match activity.close_reason(&limits) {
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(Quiet::Silent) => return Closed::Silent,
                Err(Quiet::Idle) => return Closed::Idle,
            }
        }
    };
    let reason = tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
            return Closed::Ended;
        }
        closed = quiet => closed,
        () = activity.evicted() => Closed::Evicted,
        () = &mut shutdown => Closed::Shutdown,
    };
    tracing::debug!(address = %activity.address(), ?reason, "closing a client connection");
    let grace = match reason {
        Closed::Shutdown => SHUTDOWN_GRACE,
        Closed::Idle => IDLE_GRACE,
        _ => Duration::ZERO,
    };
    if !grace.is_zero() {
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(grace, connection).await;
    }
    drop(admission);
    reason
}
