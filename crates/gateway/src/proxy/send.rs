//! Sending a request upstream: the client connection's kept upstream connection or the worker's pool, connect
//! retries that are safe because nothing was sent, the response head's deadline, and what a failure is.

use super::*;
use crate::balancer::Outcome;
use crate::error::is_timeout;
use crate::service::Balanced;

/// The target for the next attempt: one not tried yet, else (every target tried, retries left) any available one
/// again, as Kong's retries go round the balancer.
fn pick_target(balanced: &Balanced, hash: Option<u64>, tried: &mut smallvec::SmallVec<[usize; 4]>) -> Option<usize> {
    let picked = balanced.balancer.pick(hash, tried).or_else(|| {
        if tried.is_empty() {
            return None;
        }
        tried.clear();
        balanced.balancer.pick(hash, tried)
    })?;
    tried.push(picked);
    Some(picked)
}

/// One attempt on an upstream's target: counted as a connection while it lasts, and reported to the passive
/// health checks when it ends.
/// A service that names no upstream reads no clock for it.
struct Attempt<'a> {
    target: Option<(&'a Balanced, usize, Instant)>,
}

impl<'a> Attempt<'a> {
    fn start(target: Option<(&'a Balanced, usize)>) -> Self {
        Self {
            target: target.map(|(b, i)| {
                b.balancer.begin(i);
                (b, i, Instant::now())
            }),
        }
    }

    fn end(self, outcome: Outcome) {
        if let Some((b, i, started)) = self.target {
            b.balancer.finish(i, outcome, started.elapsed());
        }
    }

    /// Ends an attempt that says nothing about the target's health (the client's failure, a closed kept-alive
    /// connection).
    fn cancel(self) {
        if let Some((b, i, _)) = self.target {
            b.balancer.release(i);
        }
    }
}

/// Where a request goes: its service, the pool key naming the TLS server (the service's, or one for a preserved
/// `Host`), and the consistent-hashing value when the service is balanced.
pub(super) struct Destination<'a> {
    pub service: &'a crate::service::ServiceConfig,
    pub key: &'a PoolKey,
    pub hash: Option<u64>,
}

impl Proxy {
    /// Calls the service. A request goes out only once a connection is established, so a failure to connect
    /// (retried up to the service's `retries`) or a kept-alive connection found closed never sends anything
    /// twice, streamed bodies included; once sent, a request is never repeated. `sequential`: the client is
    /// HTTP/1, so its connection keeps the upstream connection for its next request.
    pub(super) async fn send(
        &self,
        conn: &ClientConnection,
        destination: Destination<'_>,
        mut request: Request<ProxyBody>,
        has_body: bool,
        sequential: bool,
    ) -> Result<Response<Incoming>, GatewayError> {
        let Destination { service, key: service_key, hash } = destination;
        // Kong's read and write timeouts are between two reads or writes; waiting for the response head covers
        // the write of the request and the first read.
        let head_timeout =
            Duration::from_millis(service.read_timeout + if has_body { service.write_timeout } else { 0 });
        let mut failed_connects = 0;
        // Upstreams: the targets tried so far, so a retry moves on to another one.
        let mut tried: smallvec::SmallVec<[usize; 4]> = smallvec::SmallVec::new();
        let mut last_error = None;
        loop {
            let picked = match &service.balanced {
                Some(balanced) => match pick_target(balanced, hash, &mut tried) {
                    Some(i) => Some((balanced, i)),
                    // Every target unhealthy (or all tried and none left): Kong's 503, or the failure that took
                    // the last one out.
                    None => {
                        return Err(last_error.unwrap_or_else(|| GatewayError::new(ProxyError::NoPeer, Side::Upstream)));
                    }
                },
                None => None,
            };
            // A host-name target: one of the addresses its name resolved to (resolved now if it never was).
            let mut address = None;
            if let Some((balanced, i)) = picked
                && let Some(name) = &balanced.balancer.targets[i].name
            {
                let next = match name.next_address(hash) {
                    Ok(None) => {
                        balanced.balancer.resolve(i).await;
                        name.next_address(hash)
                    }
                    known => known,
                };
                match next {
                    Ok(found) => address = found,
                    // Resolved to nothing (Kong's `DNS_ERROR`): the target is out until it resolves; try another.
                    Err(()) => continue,
                }
            }
            // A renamed TLS server name (a preserved `Host`) holds for whichever target is picked.
            let owned;
            let key = match picked {
                Some((balanced, i)) if address.is_some() || service_key.server_name != service.pool_key.server_name => {
                    let target_key = &balanced.target_keys[i];
                    let renamed = service_key.server_name != service.pool_key.server_name;
                    owned = PoolKey {
                        authority: address.unwrap_or_else(|| target_key.authority.clone()),
                        server_name: if renamed { &service_key.server_name } else { &target_key.server_name }.clone(),
                        ..target_key.clone()
                    };
                    &owned
                }
                Some((balanced, i)) => &balanced.target_keys[i],
                None => service_key,
            };
            let attempt = Attempt::start(picked);
            let (held_key, mut sender) = match self.checkout(conn, key, sequential) {
                Some(reused) => reused,
                None => match conn.worker.pool.connect(key).await {
                    Ok(fresh) => (key.clone(), fresh),
                    Err(error) => {
                        attempt.end(if error.kind == ProxyError::GatewayTimeout {
                            Outcome::Timeout
                        } else {
                            Outcome::TcpFailure
                        });
                        failed_connects += 1;
                        if !error.retry_safe || failed_connects > service.retries {
                            return Err(error);
                        }
                        tracing::debug!(error = %error, attempt = failed_connects, "upstream connection failed; retrying");
                        last_error = Some(error);
                        continue;
                    }
                },
            };
            match conn.worker.sleeps.timeout(head_timeout, sender.try_send_request(request)).await {
                Ok(Ok(response)) => {
                    attempt.end(Outcome::Status(response.status().as_u16()));
                    self.check_in(conn, held_key, sender, sequential);
                    return Ok(response);
                }
                Ok(Err(mut error)) => match error.take_message() {
                    // The connection was closed before the request went out: try another.
                    Some(unsent) => {
                        attempt.cancel();
                        request = unsent;
                    }
                    None => {
                        let error = classify_send_error(error.into_error());
                        if error.side == Side::Upstream {
                            attempt.end(if error.kind == ProxyError::GatewayTimeout {
                                Outcome::Timeout
                            } else {
                                Outcome::TcpFailure
                            });
                        } else {
                            attempt.cancel();
                        }
                        return Err(error);
                    }
                },
                // Dropping the request future closes that connection.
                Err(_) => {
                    attempt.end(Outcome::Timeout);
                    return Err(GatewayError::new(ProxyError::GatewayTimeout, Side::Upstream));
                }
            }
        }
    }

    /// A kept-alive connection to `key` that can take a request, with its key: one the client connection keeps
    /// (HTTP/1 clients; its key moves along rather than being cloned), else one from the worker's pool.
    pub(super) fn checkout(
        &self,
        conn: &ClientConnection,
        key: &PoolKey,
        sequential: bool,
    ) -> Option<(PoolKey, Sender)> {
        if sequential && let Ok(mut kept) = conn.upstream.lock() {
            // The previous response has ended (the client sent this request after it), so a kept connection is
            // normally ready; one that is not yet stays kept, and this request looks further.
            kept.retain(|(_, sender)| !sender.is_closed());
            if let Some(at) = kept.iter().position(|(k, sender)| k == key && sender.is_ready()) {
                return Some(kept.remove(at));
            }
        }
        conn.worker.pool.take(key).map(|sender| (key.clone(), sender))
    }

    /// Gives a connection back after its response head: to the client connection (HTTP/1 clients), whose oldest
    /// kept connection goes to the worker's pool when it already keeps [`KEPT_PER_CLIENT`] or one with this key;
    /// otherwise to the worker's pool.
    pub(super) fn check_in(&self, conn: &ClientConnection, key: PoolKey, sender: Sender, sequential: bool) {
        if sequential && let Ok(mut kept) = conn.upstream.lock() {
            // One per key: a second one to the same key would only wait there while the pool could lend it.
            let evict = kept.iter().position(|(k, _)| *k == key).or((kept.len() >= KEPT_PER_CLIENT).then_some(0));
            if let Some(at) = evict {
                let (old_key, old) = kept.remove(at);
                conn.worker.pool.put(old_key, old);
            }
            kept.push((key, sender));
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
