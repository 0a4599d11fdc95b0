//! Sending a request upstream: the client connection's kept upstream connection or the worker's pool, connect
//! retries that are safe because nothing was sent, the response head's deadline, and what a failure is.

use super::*;
use crate::error::is_timeout;

impl Proxy {
    /// Calls the service. A request goes out only once a connection is established, so a failure to connect
    /// (retried up to the service's `retries`) or a kept-alive connection found closed never sends anything
    /// twice, streamed bodies included; once sent, a request is never repeated. `sequential`: the client is
    /// HTTP/1, so its connection keeps the upstream connection for its next request. `key`: the service's
    /// [`PoolKey`], or one naming another TLS server name.
    pub(super) async fn send(
        &self,
        conn: &ClientConnection,
        service: &crate::service::ServiceConfig,
        key: &PoolKey,
        mut request: Request<ProxyBody>,
        has_body: bool,
        sequential: bool,
    ) -> Result<Response<Incoming>, GatewayError> {
        // Kong's read and write timeouts are between two reads or writes; waiting for the response head covers
        // the write of the request and the first read.
        let head_timeout =
            Duration::from_millis(service.read_timeout + if has_body { service.write_timeout } else { 0 });
        let mut failed_connects = 0;
        loop {
            let (held_key, mut sender) = match self.checkout(conn, key, sequential) {
                Some(reused) => reused,
                None => match conn.worker.pool.connect(key).await {
                    Ok(fresh) => (key.clone(), fresh),
                    Err(error) => {
                        failed_connects += 1;
                        if !error.retry_safe || failed_connects > service.retries {
                            return Err(error);
                        }
                        tracing::debug!(error = %error, attempt = failed_connects, "upstream connection failed; retrying");
                        continue;
                    }
                },
            };
            match conn.worker.sleeps.timeout(head_timeout, sender.try_send_request(request)).await {
                Ok(Ok(response)) => {
                    self.check_in(conn, held_key, sender, sequential);
                    return Ok(response);
                }
                Ok(Err(mut error)) => match error.take_message() {
                    // The connection was closed before the request went out: try another.
                    Some(unsent) => request = unsent,
                    None => return Err(classify_send_error(error.into_error())),
                },
                // Dropping the request future closes that connection.
                Err(_) => return Err(GatewayError::new(ProxyError::GatewayTimeout, Side::Upstream)),
            }
        }
    }

    /// A kept-alive connection to `key` that can take a request, with its key: the client connection's own
    /// (HTTP/1 clients; its key moves along rather than being cloned), else one from the worker's pool.
    pub(super) fn checkout(
        &self,
        conn: &ClientConnection,
        key: &PoolKey,
        sequential: bool,
    ) -> Option<(PoolKey, Sender)> {
        if sequential {
            let kept = conn.upstream.lock().ok().and_then(|mut slot| slot.take());
            if let Some((kept_key, sender)) = kept {
                // The previous response has ended (the client sent this request after it), so the connection is
                // normally ready; if it is not yet, the pool holds it until it is, and this request looks further.
                if kept_key == *key && sender.is_ready() {
                    return Some((kept_key, sender));
                }
                conn.worker.pool.put(kept_key, sender);
            }
        }
        conn.worker.pool.take(key).map(|sender| (key.clone(), sender))
    }

    pub(super) fn check_in(&self, conn: &ClientConnection, key: PoolKey, sender: Sender, sequential: bool) {
        if sequential && let Ok(mut slot) = conn.upstream.lock() {
            if let Some((old_key, old)) = slot.replace((key, sender)) {
                conn.worker.pool.put(old_key, old);
            }
        } else {
            conn.worker.pool.put(key, sender);
        }
    }
}

/// Who failed when a request could not be completed upstream: the client's body (400, or 408 when it stalled, or
/// Kong's 413 past `request-size-limiting`'s limit), or the upstream (504 when it timed out, else 502).
pub(super) fn classify_send_error(error: hyper::Error) -> GatewayError {
    if crate::body::caused_by_body_limit(&error) {
        return GatewayError::new(ProxyError::SizeLimitExceeded, Side::Client).caused_by(error);
    }
    let (kind, side) = match (caused_by_client_body(&error), is_timeout(&error)) {
        (true, true) => (ProxyError::RequestTimeout, Side::Client),
        (true, false) => (ProxyError::BadRequest, Side::Client),
        (false, true) => (ProxyError::GatewayTimeout, Side::Upstream),
        (false, false) => (ProxyError::BadGateway, Side::Upstream),
    };
    GatewayError::new(kind, side).caused_by(error)
}
