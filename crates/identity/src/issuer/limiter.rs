//! Brute-force limits on client authentication: failures are counted per (auth server, client id, source
//! address) and per source address in fixed windows. A throttled caller is refused before its secret is checked;
//! successful authentications never count, so the gateway's introspection traffic cannot lock anyone out. State
//! lives in bounded caches whose entries expire with their window.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use http::HeaderMap;
use ipnet::IpNet;
use moka::sync::Cache;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_client_and_address: u32,
    pub per_address: u32,
    pub window: Duration,
    /// Bound on tracked keys of each kind; the least recently used are forgotten first.
    pub capacity: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { per_client_and_address: 10, per_address: 100, window: Duration::from_secs(60), capacity: 100_000 }
    }
}

#[derive(Debug)]
struct Window {
    started: Instant,
    failures: AtomicU32,
}

pub struct AuthLimiter {
    limits: Limits,
    pairs: Cache<(String, IpAddr), Arc<Window>>,
    addresses: Cache<IpAddr, Arc<Window>>,
}

impl std::fmt::Debug for AuthLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLimiter").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl AuthLimiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pairs: Cache::builder().max_capacity(limits.capacity).time_to_live(limits.window).build(),
            addresses: Cache::builder().max_capacity(limits.capacity).time_to_live(limits.window).build(),
        }
    }

    fn blocked(&self, window: Option<Arc<Window>>, limit: u32) -> Option<u64> {
        let w = window?;
        if w.failures.load(Ordering::Relaxed) < limit {
            return None;
        }
        let left = self.limits.window.saturating_sub(w.started.elapsed());
        Some(left.as_secs().max(1))
    }

    /// `Err(retry_after_secs)` while the address, or this client from this address, is throttled.
    pub fn check(&self, client: &str, address: IpAddr) -> Result<(), u64> {
        if let Some(wait) = self.blocked(self.addresses.get(&address), self.limits.per_address) {
            return Err(wait);
        }
        match self.blocked(self.pairs.get(&(client.to_owned(), address)), self.limits.per_client_and_address) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, client: &str, address: IpAddr) {
        let fresh = || Arc::new(Window { started: Instant::now(), failures: AtomicU32::new(0) });
        self.addresses.get_with(address, fresh).failures.fetch_add(1, Ordering::Relaxed);
        self.pairs.get_with((client.to_owned(), address), fresh).failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// The caller's address: the peer, or — when the peer is a trusted proxy — the nearest address in
/// `X-Forwarded-For` that is not itself a trusted proxy (the left part of the header is the client's to forge).
pub fn source_address(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut address = peer.ip();
    if !is_trusted(&address) {
        return address;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    for hop in forwarded.iter().rev() {
        address = *hop;
        if !is_trusted(hop) {
            break;
        }
    }
    address
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn throttles_the_pair_then_the_address_only() {
        let l = AuthLimiter::new(Limits { per_client_and_address: 3, per_address: 5, ..Limits::default() });
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for _ in 0..3 {
            assert!(l.check("s/c1", a).is_ok());
            l.record_failure("s/c1", a);
        }
        let wait = l.check("s/c1", a).unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(l.check("s/c2", a).is_ok(), "another client from the same address");
        assert!(l.check("s/c1", b).is_ok(), "the same client from another address");
        l.record_failure("s/c2", a);
        l.record_failure("s/c3", a);
        assert!(l.check("s/c4", a).is_err(), "the address as a whole is throttled after 5 failures");
        assert!(l.check("s/c4", b).is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4, 5.6.7.8, 10.1.1.1".parse().unwrap());
        assert_eq!(source_address("10.0.0.9:1".parse().unwrap(), &h, &trusted), ip("5.6.7.8"));
        assert_eq!(source_address("9.9.9.9:1".parse().unwrap(), &h, &trusted), ip("9.9.9.9"));
        assert_eq!(source_address("10.0.0.9:1".parse().unwrap(), &HeaderMap::new(), &trusted), ip("10.0.0.9"));
        assert_eq!(source_address("10.0.0.9:1".parse().unwrap(), &h, &[]), ip("10.0.0.9"));
    }
}
