//! Which connections a listener keeps. A listener at its cap closes its longest-idle connection to make room
//! for a newcomer (as nginx drains idle keep-alive connections when it runs short), so idle connections, however
//! many an attacker opens, never keep a real client out; only connections with a request in flight are safe
//! from that, and those are bounded per source address.
//!
//! The gate also decides when a connection has been quiet too long: [`Gate::sweep`] runs a few times per deadline
//! over every connection of the listener and tells the quiet ones to close. Connections learn it through their
//! [`Activity`], which costs a request two uncontended atomic updates and a clock read; timers per connection
//! polled on every wake-up of its task cost the proxy about 1,500 instructions a request (bench/README.md).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use ipnet::IpNet;
use tokio::time::Instant;

use crate::connection::Closed;
use crate::limits::ConnectionLimits;

/// The connections of one listener.
#[derive(Debug)]
pub struct Gate {
    listener: &'static str,
    limits: ConnectionLimits,
    /// Trusted proxies: every client behind one shares its address, so the per-address cap does not apply to it.
    exempt: Vec<IpNet>,
    state: Mutex<GateState>,
}

/// Evicted connections whose tasks have not closed them yet, at most, per listener. They still hold descriptors,
/// so past this many a newcomer is refused instead: however fast a flood arrives, a listener never holds more than
/// its cap plus this many sockets.
const MOST_CLOSING: usize = 32;

#[derive(Debug, Default)]
struct GateState {
    next_id: u64,
    /// By admission order, so the first idle one found is the longest-kept. Evicted ones are not here.
    open: BTreeMap<u64, Arc<Activity>>,
    per_address: HashMap<IpAddr, usize>,
    /// Evicted, not yet closed.
    closing: usize,
}

impl GateState {
    fn forget(&mut self, id: u64) -> Option<Arc<Activity>> {
        let activity = self.open.remove(&id)?;
        if let Some(count) = self.per_address.get_mut(&activity.address) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&activity.address);
            }
        }
        Some(activity)
    }

    /// Closes the connection idle the longest (from `address` only, if given): one that never sent a request
    /// before any that did (the longest-kept first), else the one whose last request ended earliest. Connections
    /// with a request in flight, or already closing, are never chosen.
    fn evict_idle(&mut self, address: Option<IpAddr>) -> bool {
        let mut victim: Option<(u64, Option<Instant>)> = None;
        for (id, a) in &self.open {
            if address.is_some_and(|ip| a.address != ip)
                || a.in_flight.load(Ordering::Acquire) > 0
                || a.reason().is_some()
            {
                continue;
            }
            let last_active = a.last_active();
            if last_active.is_none() {
                victim = Some((*id, None));
                break;
            }
            if victim.is_none_or(|(_, best)| last_active < best) {
                victim = Some((*id, last_active));
            }
        }
        match victim.and_then(|(id, _)| self.forget(id)) {
            Some(activity) => {
                activity.close(Closed::Evicted);
                self.closing += 1;
                true
            }
            None => false,
        }
    }
}

/// The address a client counts under (connection caps, the issuer's brute-force limits): IPv6 by /64, the block
/// one subscriber usually holds, IPv4-mapped IPv6 as IPv4.
pub fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Gate {
    /// `exempt`: trusted proxies in front of the listener, not held to the per-address cap.
    pub fn new(listener: &'static str, limits: ConnectionLimits, exempt: Vec<IpNet>) -> Arc<Self> {
        Arc::new(Self { listener, limits, exempt, state: Mutex::default() })
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    pub fn listener(&self) -> &'static str {
        self.listener
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        // A panic while the lock was held leaves counts that are still consistent enough to go on with.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a new connection from `address`, closing an idle one first when this address or the listener is
    /// at its cap. `None`: everything is busy; close the newcomer.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Admission> {
        let address = network_of(peer);
        let capped = !self.exempt.iter().any(|net| net.contains(&peer));
        let mut state = self.state();
        let address_full =
            capped && state.per_address.get(&address).copied().unwrap_or(0) >= self.limits.max_connections_per_address;
        if address_full || state.open.len() >= self.limits.max_connections {
            let made_room = state.closing < MOST_CLOSING && state.evict_idle(address_full.then_some(address));
            if !made_room {
                drop(state);
                self.refused(address, if address_full { "per-address cap" } else { "listener cap" });
                return None;
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let activity = Arc::new(Activity::new(address));
        state.open.insert(id, activity.clone());
        *state.per_address.entry(address).or_default() += 1;
        Some(Admission { gate: self.clone(), id, activity })
    }

    /// Closes the longest-idle connection, if any (to free a descriptor when accepting fails for want of one).
    pub fn shed_idle(&self) -> bool {
        let mut state = self.state();
        state.closing < MOST_CLOSING && state.evict_idle(None)
    }

    /// Tells every connection that has been quiet past its deadline to close, and returns how many were told.
    pub fn sweep(&self) -> usize {
        let state = self.state();
        let mut told = 0;
        for activity in state.open.values() {
            if activity.reason().is_some() {
                continue;
            }
            let reason = match activity.close_reason(&self.limits) {
                Err(reason) => Some(reason),
                Ok(_) => activity.stalled(self.limits.send_timeout).then_some(Closed::SendStalled),
            };
            if let Some(reason) = reason {
                activity.close(reason);
                told += 1;
            }
        }
        told
    }

    /// Runs [`Gate::sweep`] a few times per deadline, so a quiet connection closes within a quarter of its
    /// deadline past it (at most a second), until `stop` resolves.
    pub async fn sweep_until(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let limits = &self.limits;
        let shortest = limits.header_timeout.min(limits.keepalive_timeout).min(limits.send_timeout);
        let every = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    self.sweep();
                }
                () = &mut stop => return,
            }
        }
    }

    /// Tells every connection to close gracefully: the server is stopping.
    pub fn shut_down(&self) {
        for activity in self.state().open.values() {
            activity.close(Closed::Shutdown);
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.state().open.len()
    }

    fn refused(&self, address: IpAddr, cap: &'static str) {
        tracing::debug!(listener = self.listener, %address, cap, "connection refused: every connection is busy");
    }
}

/// A connection the gate keeps; dropping it gives its place back.
#[derive(Debug)]
pub struct Admission {
    gate: Arc<Gate>,
    id: u64,
    activity: Arc<Activity>,
}

impl Admission {
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.gate.limits
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut state = self.gate.state();
        // Eviction is decided under this lock, so the reason says which count the connection is in.
        if self.activity.reason() == Some(Closed::Evicted) {
            state.closing -= 1;
        } else {
            state.forget(self.id);
        }
    }
}

/// What a connection is doing, as its requests report it: read by the gate (is it idle? has it been quiet too
/// long?), and the gate's word that it should close.
#[derive(Debug)]
pub struct Activity {
    address: IpAddr,
    accepted: Instant,
    in_flight: AtomicU32,
    requests: AtomicU64,
    /// When the last request finished, in microseconds after `accepted`.
    idle_since: AtomicU64,
    /// Response frames handed to hyper that it has not asked past yet (it asks for the next one once it could
    /// write the last): while any is out and `sent` stands still, the client is not reading.
    outstanding: AtomicU32,
    /// Response frames the client has taken.
    sent: AtomicU64,
    /// The sweep's record: `sent` when it last saw progress, and when that was (microseconds after `accepted`).
    swept_sent: AtomicU64,
    swept_at: AtomicU64,
    /// Why the connection should close (`Closed` as a number), 0 while it may stay.
    close: AtomicU8,
    /// The connection's task, woken when `close` is set.
    task: AtomicWaker,
}

impl Activity {
    fn new(address: IpAddr) -> Self {
        Self {
            address,
            accepted: Instant::now(),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            outstanding: AtomicU32::new(0),
            sent: AtomicU64::new(0),
            swept_sent: AtomicU64::new(0),
            swept_at: AtomicU64::new(0),
            close: AtomicU8::new(0),
            task: AtomicWaker::new(),
        }
    }

    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// Marks a request in flight until the guard drops (keep it with the response body, so a long download
    /// is not taken for an idle connection).
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard { activity: self.clone() }
    }

    /// Whether a request is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// When the last request ended; `None` if none was ever made.
    fn last_active(&self) -> Option<Instant> {
        (self.requests.load(Ordering::Relaxed) > 0)
            .then(|| self.accepted + Duration::from_micros(self.idle_since.load(Ordering::Acquire)))
    }

    /// A response frame went to hyper to write.
    pub(crate) fn frame_out(&self) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
    }

    /// hyper asked past a frame (it could write it), or the body ended.
    pub(crate) fn frame_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
    }

    /// For the sweep: whether a response has waited on the client for `limit` (no frame taken since the sweep
    /// that first saw it waiting). Only the sweep calls this, under the gate's lock.
    fn stalled(&self, limit: Duration) -> bool {
        let now = u64::try_from(self.accepted.elapsed().as_micros()).unwrap_or(u64::MAX);
        let sent = self.sent.load(Ordering::Relaxed);
        if self.outstanding.load(Ordering::Acquire) == 0 || sent != self.swept_sent.load(Ordering::Relaxed) {
            self.swept_sent.store(sent, Ordering::Relaxed);
            self.swept_at.store(now, Ordering::Relaxed);
            return false;
        }
        let limit = u64::try_from(limit.as_micros()).unwrap_or(u64::MAX);
        now.saturating_sub(self.swept_at.load(Ordering::Relaxed)) >= limit
    }

    /// Why the connection should close, once the gate has said so.
    pub fn reason(&self) -> Option<Closed> {
        Closed::from_code(self.close.load(Ordering::Acquire))
    }

    /// Resolves with the reason once the gate tells the connection to close.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<Closed> {
        if let Some(reason) = self.reason() {
            return Poll::Ready(reason);
        }
        self.task.register(cx.waker());
        // Told between the first look and the registration: the wake may have gone to no one.
        self.reason().map_or(Poll::Pending, Poll::Ready)
    }

    /// Tells the connection to close (the first reason given stands).
    fn close(&self, reason: Closed) {
        if self.close.compare_exchange(0, reason.code(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.task.wake();
        }
    }

    /// `Err(reason)` once the connection has been quiet past a deadline; else `Ok(wait)`: nothing is due before
    /// `wait` has passed.
    pub fn close_reason(&self, limits: &ConnectionLimits) -> Result<Duration, Closed> {
        let now = self.accepted.elapsed();
        let (deadline, reason) = if self.requests.load(Ordering::Relaxed) == 0 {
            (limits.header_timeout, Closed::Silent)
        } else if self.in_flight.load(Ordering::Acquire) > 0 {
            // Busy: nothing can be due before the request ends and a keep-alive period passes.
            return Ok(limits.keepalive_timeout);
        } else {
            (Duration::from_micros(self.idle_since.load(Ordering::Acquire)) + limits.keepalive_timeout, Closed::Idle)
        };
        if now >= deadline { Err(reason) } else { Ok(deadline - now) }
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct RequestGuard {
    activity: Arc<Activity>,
}

impl RequestGuard {
    pub(crate) fn activity(&self) -> &Activity {
        &self.activity
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.activity;
        let since = u64::try_from(a.accepted.elapsed().as_micros()).unwrap_or(u64::MAX);
        // Written before the count drops, so whoever sees no request in flight also sees when the last ended.
        a.idle_since.store(since, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            max_connections_per_address: per_address,
            ..ConnectionLimits::default()
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn evicted(admission: &Admission) -> bool {
        admission.activity().reason() == Some(Closed::Evicted)
    }

    #[test]
    fn a_full_listener_closes_its_longest_idle_connection_for_a_newcomer() {
        let gate = Gate::new("test", limits(3, 3), Vec::new());
        let first = gate.admit(A).unwrap();
        let second = gate.admit(A).unwrap();
        let third = gate.admit(B).unwrap();
        let _busy = first.activity().begin();
        // `first` is busy, so `second` (the longest-kept idle one) makes room.
        let fourth = gate.admit(B).unwrap();
        assert!(evicted(&second));
        assert!(!evicted(&first) && !evicted(&third));
        assert_eq!(gate.open(), 3);
        assert_eq!(gate.state().closing, 1, "evicted, its socket not yet closed");
        drop(second);
        assert_eq!((gate.open(), gate.state().closing), (3, 0));
        // Everything busy: the newcomer is refused.
        let _b3 = third.activity().begin();
        let _b4 = fourth.activity().begin();
        assert!(gate.admit(B).is_none());
        drop((first, third, fourth));
        assert_eq!(gate.open(), 0);
    }

    #[test]
    fn a_flood_faster_than_evicted_sockets_close_is_refused() {
        let gate = Gate::new("test", limits(4, 4), Vec::new());
        let mut kept: Vec<Admission> = (0..4).map(|_| gate.admit(A).unwrap()).collect();
        // Every newcomer evicts one, and no evicted task has closed its socket yet.
        for _ in 0..MOST_CLOSING {
            kept.push(gate.admit(A).unwrap());
        }
        assert_eq!(gate.state().closing, MOST_CLOSING);
        assert!(gate.admit(A).is_none(), "the sockets still open are bounded");
        // The evicted ones close (their admissions drop): room again.
        kept.retain(|a| !evicted(a));
        assert_eq!(gate.state().closing, 0);
        assert!(gate.admit(A).is_some());
    }

    #[test]
    fn one_address_only_ever_displaces_its_own_connections() {
        let gate = Gate::new("test", limits(10, 2), Vec::new());
        let other = gate.admit(B).unwrap();
        let a1 = gate.admit(A).unwrap();
        let a2 = gate.admit(A).unwrap();
        let a3 = gate.admit(A).unwrap();
        assert!(evicted(&a1), "A's own longest-idle goes");
        assert!(!evicted(&other));
        let _busy2 = a2.activity().begin();
        let _busy3 = a3.activity().begin();
        assert!(gate.admit(A).is_none(), "A's connections are all busy");
        assert!(gate.admit(B).is_some(), "B is not affected");
    }

    #[tokio::test(start_paused = true)]
    async fn the_connection_idle_longest_goes_first_and_one_that_never_asked_before_any() {
        let gate = Gate::new("test", limits(3, 3), Vec::new());
        let old_but_active = gate.admit(A).unwrap();
        let used_long_ago = gate.admit(A).unwrap();
        drop(used_long_ago.activity().begin());
        tokio::time::advance(Duration::from_millis(5)).await;
        drop(old_but_active.activity().begin());
        let silent = gate.admit(A).unwrap();
        // Room for a newcomer: the silent one goes, though it came last.
        let newcomer = gate.admit(A).unwrap();
        assert!(evicted(&silent));
        let _busy = newcomer.activity().begin();
        // Then the one whose last request ended earliest, though it was admitted after the other.
        let _another = gate.admit(A).unwrap();
        assert!(evicted(&used_long_ago) && !evicted(&old_but_active));
    }

    #[test]
    fn addresses_count_by_network_and_trusted_proxies_are_not_capped() {
        let v6 = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last));
        let gate = Gate::new("test", limits(10, 2), vec!["192.0.2.2/32".parse().unwrap()]);
        let first = gate.admit(v6(1)).unwrap();
        let _second = gate.admit(v6(2)).unwrap();
        let _third = gate.admit(v6(3)).unwrap();
        assert!(evicted(&first), "one /64 is one address");
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(network_of(mapped), A);
        let behind_the_proxy: Vec<Admission> = (0..5).map(|_| gate.admit(B).unwrap()).collect();
        assert!(behind_the_proxy.iter().all(|a| !evicted(a)), "a trusted proxy is held to the listener's cap only");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_found_out() {
        let limit = Duration::from_millis(20);
        let gate = Gate::new("test", ConnectionLimits { send_timeout: limit, ..limits(4, 4) }, Vec::new());
        let reading = gate.admit(A).unwrap();
        let activity = reading.activity();
        let _request = activity.begin();
        assert!(!activity.stalled(limit), "nothing handed out yet");
        activity.frame_out();
        assert!(!activity.stalled(limit), "first seen waiting");
        tokio::time::advance(limit).await;
        activity.frame_sent();
        activity.frame_out();
        assert!(!activity.stalled(limit), "it took a frame since");
        tokio::time::advance(limit).await;
        assert!(activity.stalled(limit), "nothing taken for the whole limit");
        let swept = gate.sweep();
        assert_eq!((swept, activity.reason()), (1, Some(Closed::SendStalled)));
    }

    #[test]
    fn quiet_connections_are_named_by_their_deadlines() {
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(3600),
            keepalive_timeout: Duration::from_secs(7200),
            ..ConnectionLimits::default()
        };
        let gate = Gate::new("test", limits, Vec::new());
        let admitted = gate.admit(A).unwrap();
        let activity = admitted.activity();
        let wait = activity.close_reason(&limits).unwrap();
        assert!(wait <= limits.header_timeout && wait > Duration::from_secs(3500), "{wait:?}");
        let zero = ConnectionLimits { header_timeout: Duration::ZERO, keepalive_timeout: Duration::ZERO, ..limits };
        assert_eq!(activity.close_reason(&zero), Err(Closed::Silent));
        let guard = activity.begin();
        assert!(activity.close_reason(&zero).is_ok(), "a request in flight keeps it");
        drop(guard);
        assert_eq!(activity.close_reason(&zero), Err(Closed::Idle));
        let wait = activity.close_reason(&limits).unwrap();
        assert!(wait > Duration::from_secs(7100), "idle from when the request ended: {wait:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn sweeps_tell_quiet_connections_to_close_and_wake_them() {
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(2),
            keepalive_timeout: Duration::from_secs(4),
            ..ConnectionLimits::default()
        };
        let gate = Gate::new("test", limits, Vec::new());
        let silent = gate.admit(A).unwrap();
        let used = gate.admit(A).unwrap();
        drop(used.activity().begin());
        let busy = gate.admit(B).unwrap();
        let _request = busy.activity().begin();
        let closed = tokio::spawn({
            let activity = silent.activity().clone();
            async move { std::future::poll_fn(|cx| activity.poll_closed(cx)).await }
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let sweeper = tokio::spawn(gate.clone().sweep_until(async move {
            let _ = stopped.await;
        }));
        tokio::time::sleep(Duration::from_millis(1900)).await;
        assert_eq!(silent.activity().reason(), None, "not before its deadline");
        assert_eq!(closed.await.unwrap(), Closed::Silent, "told within a quarter deadline past it, and woken");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(used.activity().reason(), Some(Closed::Idle));
        assert_eq!(busy.activity().reason(), None, "a request in flight keeps it");
        gate.shut_down();
        assert_eq!(busy.activity().reason(), Some(Closed::Shutdown));
        let _ = stop.send(());
        sweeper.await.unwrap();
    }
}
