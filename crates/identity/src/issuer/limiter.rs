//! Brute-force limits on client authentication. What is counted is *distinct wrong secrets*, in fixed windows of
//! the injectable clock, each scope inside one auth server:
//!
//! - per (client id, source address): once `per_client_and_address` are spent, that address's attempts for that
//!   client are refused (429) without checking the secret, until the window ends;
//! - per client id, from every address: once `per_client` are spent, attempts for that client are refused without
//!   checking, except from addresses where the client authenticated successfully within `trust_for`;
//! - per source address, across the server's clients: once `per_address` are spent, wrong secrets from it are
//!   answered 429 instead of 401. A correct secret still passes, so a shared address (a load balancer, a NAT, a
//!   Gatehouse route in front of the issuer) never locks anyone out.
//!
//! Refusing *without checking* is what bounds guessing: an answer that depended on the secret would tell the guesser
//! whether it was right. A wrong secret presented again teaches a guesser nothing and is what a misconfigured client
//! sends, so it is logged, not counted; a new wrong secret is answered after `failure_delay`. Successes never count.
//!
//! State is bounded (`capacity` keys of each kind, at most `limit` digests per key) and keyed by 128-bit SipHash
//! digests under a per-process random key: neither client ids (up to 16 KiB) nor secrets, nor the secrets' stored
//! hashes, are kept.

use std::hash::Hasher as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use moka::sync::Cache;
use siphasher::sip128::{Hasher128 as _, SipHasher13};

use gatehouse_model::{AuthServerId, SecretHash, Timestamp};
use gatehouse_net::network_of;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub window: Duration,
    /// Distinct wrong secrets for one client from one address, per window.
    pub per_client_and_address: u32,
    /// Distinct wrong secrets for one client from all addresses, per window.
    pub per_client: u32,
    /// Distinct wrong (client, secret) pairs from one address, per window.
    pub per_address: u32,
    /// How long the answer to a new wrong secret waits.
    pub failure_delay: Duration,
    /// How long a successful authentication from an address exempts that address from its client's limit.
    pub trust_for: Duration,
    /// Bound on tracked keys of each kind; the least useful are forgotten first.
    pub capacity: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            per_client_and_address: 10,
            per_client: 50,
            per_address: 100,
            failure_delay: Duration::from_secs(1),
            trust_for: Duration::from_secs(24 * 3600),
            capacity: 100_000,
        }
    }
}

type Key = u128;

/// A window's start and what was counted in it.
#[derive(Debug, Default)]
struct Window<T> {
    started: i64,
    tally: T,
}

impl<T: Default> Window<T> {
    /// The tally of the window running at `now`, starting a new one when the last has ended.
    fn current(&mut self, now: i64, length: i64) -> &mut T {
        if now.saturating_sub(self.started) >= length {
            self.started = now;
            self.tally = T::default();
        }
        &mut self.tally
    }

    /// Whole seconds until the window ends, at least 1 (a `Retry-After`).
    fn seconds_left(&self, now: i64, length: i64) -> u64 {
        let left = u64::try_from(self.started.saturating_add(length).saturating_sub(now)).unwrap_or(0);
        left.div_ceil(1_000_000).max(1)
    }

    fn running(&self, now: i64, length: i64) -> bool {
        now.saturating_sub(self.started) < length
    }
}

type Distinct = Arc<Mutex<Window<Vec<u64>>>>;
type Count = Arc<Mutex<Window<u32>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who is authenticating: the digests a request is counted under.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    server: AuthServerId,
    address: IpAddr,
    client: Key,
    pair: Key,
}

/// How to answer a wrong secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The first time this secret was presented for this client from this address in the window.
    pub new: bool,
    /// How long to wait before answering.
    pub delay: Duration,
    /// `Some(retry_after_secs)`: answer 429 rather than 401, the address being over its limit.
    pub throttled: Option<u64>,
}

pub struct AuthLimiter {
    limits: Limits,
    window: i64,
    trust_for: i64,
    keys: (u64, u64),
    pairs: Cache<Key, Distinct>,
    clients: Cache<Key, Distinct>,
    addresses: Cache<Key, Count>,
    /// When each (client, address) pair last authenticated successfully.
    trusted: Cache<Key, i64>,
    /// For the clients whose digest falls in each slot: no window of theirs runs past this instant, so after it
    /// their attempts need no lookup. A client whose secret nobody is getting wrong costs one atomic read.
    quiet_after: Box<[AtomicI64]>,
}

const QUIET_SLOTS: usize = 16_384;

impl std::fmt::Debug for AuthLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLimiter").field("limits", &self.limits).finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn address_bytes(address: IpAddr) -> ([u8; 17], usize) {
    let mut out = [0u8; 17];
    match address {
        IpAddr::V4(v4) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&v4.octets());
            (out, 5)
        }
        IpAddr::V6(v6) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&v6.octets());
            (out, 17)
        }
    }
}

impl AuthLimiter {
    pub fn new(limits: Limits) -> Self {
        let window = micros(limits.window).max(1);
        let distinct = || {
            Cache::builder()
                .max_capacity(limits.capacity)
                .time_to_idle(limits.window.max(Duration::from_secs(1)))
                .build()
        };
        let seed: [u8; 16] = gatehouse_runtime::random::bytes();
        let half = |r: std::ops::Range<usize>| u64::from_le_bytes(seed[r].try_into().unwrap_or_default());
        Self {
            limits,
            window,
            trust_for: micros(limits.trust_for),
            keys: (half(0..8), half(8..16)),
            pairs: distinct(),
            clients: distinct(),
            addresses: Cache::builder()
                .max_capacity(limits.capacity)
                .time_to_idle(limits.window.max(Duration::from_secs(1)))
                .build(),
            trusted: Cache::builder()
                .max_capacity(limits.capacity)
                .time_to_idle(limits.trust_for.max(Duration::from_secs(1)))
                .build(),
            quiet_after: (0..QUIET_SLOTS).map(|_| AtomicI64::new(i64::MIN)).collect(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn quiet_after(&self, attempt: &Attempt) -> &AtomicI64 {
        &self.quiet_after[(attempt.client % QUIET_SLOTS as u128) as usize]
    }

    /// A keyed digest of `parts`, each prefixed with its length so no two inputs collide by framing.
    fn digest(&self, parts: &[&[u8]]) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        for part in parts {
            h.write_usize(part.len());
            h.write(part);
        }
        h.finish128().as_u128()
    }

    pub fn attempt(&self, server: AuthServerId, client_id: &str, address: IpAddr) -> Attempt {
        let address = network_of(address);
        let client = self.digest(&[b"client", server.0.as_bytes(), client_id.as_bytes()]);
        let (bytes, len) = address_bytes(address);
        let pair = self.digest(&[b"pair", &client.to_le_bytes(), &bytes[..len]]);
        Attempt { server, address, client, pair }
    }

    fn address_key(&self, attempt: &Attempt) -> Key {
        let (bytes, len) = address_bytes(attempt.address);
        self.digest(&[b"address", attempt.server.0.as_bytes(), &bytes[..len]])
    }

    fn is_trusted(&self, attempt: &Attempt, now: i64) -> bool {
        self.trusted.get(&attempt.pair).is_some_and(|at| now.saturating_sub(at) < self.trust_for)
    }

    fn spent(&self, window: Option<Distinct>, limit: u32, now: i64) -> Option<u64> {
        let window = window?;
        let w = lock(&window);
        (w.running(now, self.window) && w.tally.len() >= limit as usize).then(|| w.seconds_left(now, self.window))
    }

    /// Before the secret is checked: `Err(retry_after_secs)` when this attempt must be refused unchecked.
    pub fn admit(&self, attempt: &Attempt, now: Timestamp) -> Result<(), u64> {
        let now = now.micros();
        if now >= self.quiet_after(attempt).load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(wait) = self.spent(self.pairs.get(&attempt.pair), self.limits.per_client_and_address, now) {
            return Err(wait);
        }
        match self.spent(self.clients.get(&attempt.client), self.limits.per_client, now) {
            Some(wait) if !self.is_trusted(attempt, now) => Err(wait),
            _ => Ok(()),
        }
    }

    /// After a correct secret: remembers that this address can authenticate this client.
    pub fn succeeded(&self, attempt: &Attempt, now: Timestamp) {
        let now = now.micros();
        // Written at most once a window per pair, so a busy client costs one lookup per request.
        if !self.trusted.get(&attempt.pair).is_some_and(|at| (0..self.window).contains(&now.saturating_sub(at))) {
            self.trusted.insert(attempt.pair, now);
        }
    }

    /// After a wrong secret (`presented`: the keyed hash the secret was checked with).
    pub fn failed(&self, attempt: &Attempt, presented: &SecretHash, now: Timestamp) -> Failure {
        let now = now.micros();
        let secret = self.digest(&[b"secret", &attempt.client.to_le_bytes(), presented.as_bytes()]) as u64;
        self.quiet_after(attempt).fetch_max(now.saturating_add(self.window), Ordering::Release);
        let address = self.address_key(attempt);
        let new = {
            let pair = self.pairs.get_with(attempt.pair, Distinct::default);
            let mut w = lock(&pair);
            let seen = w.current(now, self.window);
            let new = !seen.contains(&secret);
            if new && seen.len() < self.limits.per_client_and_address as usize {
                seen.push(secret);
            }
            new
        };
        if !new {
            let throttled = self.addresses.get(&address).and_then(|count| {
                let w = lock(&count);
                (w.running(now, self.window) && w.tally >= self.limits.per_address)
                    .then(|| w.seconds_left(now, self.window))
            });
            return Failure { new, delay: Duration::ZERO, throttled };
        }
        {
            let client = self.clients.get_with(attempt.client, Distinct::default);
            let mut w = lock(&client);
            let seen = w.current(now, self.window);
            if seen.len() < self.limits.per_client as usize && !seen.contains(&secret) {
                seen.push(secret);
            }
        }
        let count = self.addresses.get_with(address, Count::default);
        let mut w = lock(&count);
        let over = *w.current(now, self.window) >= self.limits.per_address;
        w.tally = w.tally.saturating_add(1);
        Failure { new, delay: self.limits.failure_delay, throttled: over.then(|| w.seconds_left(now, self.window)) }
    }

    /// Digests the limiter holds, for tests: every key of every map.
    #[cfg(test)]
    fn stored_keys(&self) -> Vec<Key> {
        self.pairs.run_pending_tasks();
        self.clients.run_pending_tasks();
        self.addresses.run_pending_tasks();
        self.trusted.run_pending_tasks();
        let mut keys: Vec<Key> = self.pairs.iter().map(|(k, _)| *k).collect();
        keys.extend(self.clients.iter().map(|(k, _)| *k));
        keys.extend(self.addresses.iter().map(|(k, _)| *k));
        keys.extend(self.trusted.iter().map(|(k, _)| *k));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn secret(n: u8) -> SecretHash {
        SecretHash([n; 32])
    }

    const T0: i64 = 1_800_000_000;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_secs(T0 + secs)
    }

    fn limiter() -> AuthLimiter {
        AuthLimiter::new(Limits {
            per_client_and_address: 3,
            per_client: 5,
            per_address: 4,
            failure_delay: Duration::from_millis(250),
            ..Limits::default()
        })
    }

    #[test]
    fn a_repeated_wrong_secret_is_not_counted() {
        let l = limiter();
        let server = AuthServerId::new();
        let a = l.attempt(server, "c1", ip("10.0.0.1"));
        let first = l.failed(&a, &secret(1), at(0));
        assert_eq!(first, Failure { new: true, delay: Duration::from_millis(250), throttled: None });
        for i in 0..50 {
            assert_eq!(l.admit(&a, at(i)), Ok(()));
            assert_eq!(l.failed(&a, &secret(1), at(i)), Failure { new: false, delay: Duration::ZERO, throttled: None });
        }
        assert_eq!(l.admit(&a, at(50)), Ok(()));
    }

    #[test]
    fn distinct_wrong_secrets_spend_the_pair_then_its_window_ends() {
        let l = limiter();
        let server = AuthServerId::new();
        let a = l.attempt(server, "c1", ip("10.0.0.1"));
        for n in 0..3 {
            assert_eq!(l.admit(&a, at(10)), Ok(()));
            assert!(l.failed(&a, &secret(n), at(10)).new);
        }
        assert_eq!(l.admit(&a, at(10)), Err(60), "refused unchecked until the window (from 10 to 70) ends");
        assert_eq!(l.admit(&a, at(40)), Err(30));
        assert_eq!(l.admit(&a, at(69)), Err(1));
        assert_eq!(l.admit(&l.attempt(server, "c2", ip("10.0.0.1")), at(11)), Ok(()), "another client");
        assert_eq!(l.admit(&l.attempt(server, "c1", ip("10.0.0.2")), at(11)), Ok(()), "another address");
        assert_eq!(l.admit(&l.attempt(AuthServerId::new(), "c1", ip("10.0.0.1")), at(11)), Ok(()), "another server");
        assert_eq!(l.admit(&a, at(70)), Ok(()), "a new window");
        assert!(l.failed(&a, &secret(0), at(70)).new, "the new window starts empty");
    }

    #[test]
    fn the_client_limit_spares_addresses_that_proved_the_secret() {
        let l = limiter();
        let server = AuthServerId::new();
        let home = l.attempt(server, "c1", ip("192.0.2.1"));
        l.succeeded(&home, at(0));
        // Five distinct guesses from five addresses: no pair is spent, the client is.
        for n in 0..5u8 {
            let a = l.attempt(server, "c1", IpAddr::from([198, 51, 100, n]));
            assert_eq!(l.admit(&a, at(1)), Ok(()));
            l.failed(&a, &secret(n), at(1));
        }
        let stranger = l.attempt(server, "c1", ip("203.0.113.9"));
        assert_eq!(l.admit(&stranger, at(2)), Err(59));
        assert_eq!(l.admit(&home, at(2)), Ok(()), "the client's own address still gets its secret checked");
        assert_eq!(l.admit(&l.attempt(server, "c2", ip("203.0.113.9")), at(2)), Ok(()), "other clients");
        // Trust lapses.
        let long = Limits { trust_for: Duration::from_secs(30), ..*l.limits() };
        let l = AuthLimiter::new(long);
        let home = l.attempt(server, "c1", ip("192.0.2.1"));
        l.succeeded(&home, at(0));
        for n in 0..5u8 {
            l.failed(&l.attempt(server, "c1", IpAddr::from([198, 51, 100, n])), &secret(n), at(20));
        }
        assert_eq!(l.admit(&home, at(29)), Ok(()));
        assert_eq!(l.admit(&home, at(31)), Err(49));
    }

    #[test]
    fn a_noisy_address_gets_429s_for_wrong_secrets_only() {
        let l = limiter();
        let (server, other) = (AuthServerId::new(), AuthServerId::new());
        let shared = ip("10.9.9.9");
        for n in 0..4u8 {
            let f = l.failed(&l.attempt(server, &format!("victim-{n}"), shared), &secret(n), at(0));
            assert_eq!(f.throttled, None);
        }
        let f = l.failed(&l.attempt(server, "victim-9", shared), &secret(9), at(5));
        assert_eq!(f.throttled, Some(55), "the fifth distinct wrong secret from the address");
        let repeat = l.failed(&l.attempt(server, "victim-0", shared), &secret(0), at(6));
        assert_eq!((repeat.new, repeat.throttled), (false, Some(54)));
        // Nothing about the address is checked before the secret: correct secrets from it pass.
        assert_eq!(l.admit(&l.attempt(server, "gateway", shared), at(6)), Ok(()));
        let elsewhere = l.failed(&l.attempt(other, "victim-0", shared), &secret(0), at(6));
        assert_eq!(elsewhere.throttled, None, "another auth server counts on its own");
    }

    #[test]
    fn ipv6_callers_are_counted_by_their_64() {
        let l = limiter();
        let server = AuthServerId::new();
        for n in 0..3u8 {
            let a = l.attempt(
                server,
                "c1",
                IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, u16::from(n))),
            );
            l.failed(&a, &secret(n), at(0));
        }
        assert!(l.admit(&l.attempt(server, "c1", ip("2001:db8:1:2:ffff::1")), at(1)).is_err());
        assert!(l.admit(&l.attempt(server, "c1", ip("2001:db8:1:3::1")), at(1)).is_ok());
        assert_eq!(network_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn state_is_keyed_by_digests_of_the_whole_id_under_a_per_process_key() {
        let l = limiter();
        let huge = "x".repeat(16 * 1024);
        let server = AuthServerId::new();
        for n in 0..100u8 {
            let a = l.attempt(server, &format!("{huge}{n}"), ip("10.0.0.1"));
            l.failed(&a, &secret(n), at(0));
            l.succeeded(&a, at(0));
        }
        // A pair, a client and a trusted pair per id, one address: 16-byte keys, whatever the ids' size.
        let keys = l.stored_keys();
        assert_eq!(keys.len(), 100 * 3 + 1);
        let (a, b) = (format!("{huge}a"), format!("{huge}b"));
        let at_a = l.attempt(server, &a, ip("10.0.0.1"));
        assert_ne!(at_a.client, l.attempt(server, &b, ip("10.0.0.1")).client, "the last byte of 16 KiB counts");
        assert_eq!(at_a.client, l.attempt(server, &a, ip("10.0.0.1")).client);
        assert_ne!(at_a.client, limiter().attempt(server, &a, ip("10.0.0.1")).client, "another process, another key");
    }
}
