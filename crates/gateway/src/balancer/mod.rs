//! Kong's `upstreams`: a service whose `host` names an upstream has each request's target picked here, by the
//! upstream's algorithm, among the targets its health checks allow.
//!
//! One [`Balancer`] per upstream per node, shared by every worker: its tables (the round-robin schedule, the
//! consistent-hashing ring) are built once per configuration change and only read afterwards; what changes per
//! request (the round-robin cursor, connection counts, latency averages, health counters) is atomics, so picking a
//! target takes no lock. [`Balancers`] keeps them across configuration changes: an upstream whose definition did not
//! change keeps its balancer, and a rebuilt one keeps the health of the targets it still has.

mod dns;
mod health;

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gatehouse_model::gateway::snapshot::Upstream;
use std::net::SocketAddr;

use gatehouse_model::gateway::upstreams::{AddressHealth, TargetHealth, UpstreamHealth, split_target};

pub use dns::{Dns, DnsSettings, refresh_loop};
pub use health::probe_loop;

/// One target of an upstream and its node-local state.
#[derive(Debug)]
pub struct TargetState {
    pub id: uuid::Uuid,
    /// `host:port` as stored.
    pub target: String,
    pub weight: u32,
    pub authority: http::uri::Authority,
    healthy: AtomicBool,
    /// Consecutive failures since the last success, by kind, and successes while unhealthy.
    tcp_failures: AtomicU32,
    timeouts: AtomicU32,
    http_failures: AtomicU32,
    successes: AtomicU32,
    /// Requests sent to it whose response head has not arrived yet (`least-connections`).
    active: AtomicU32,
    /// Exponentially weighted average of its response times in microseconds; 0 until measured (`latency`).
    latency_us: AtomicU64,
    /// A host-name target's addresses; `None` for an IP address.
    pub name: Option<dns::NameState>,
}

impl TargetState {
    fn new(id: uuid::Uuid, target: &str, weight: u32) -> Option<Self> {
        let (host, port) = split_target(target)?;
        let port = port.unwrap_or(gatehouse_model::gateway::upstreams::DEFAULT_TARGET_PORT);
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Some(Self {
            id,
            target: target.to_owned(),
            weight,
            authority: authority.parse().ok()?,
            healthy: AtomicBool::new(true),
            tcp_failures: AtomicU32::new(0),
            timeouts: AtomicU32::new(0),
            http_failures: AtomicU32::new(0),
            successes: AtomicU32::new(0),
            active: AtomicU32::new(0),
            latency_us: AtomicU64::new(0),
            name: host.parse::<std::net::IpAddr>().is_err().then(dns::NameState::default),
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
        for c in [&self.tcp_failures, &self.timeouts, &self.http_failures, &self.successes] {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn host(&self) -> &str {
        self.authority.host().trim_start_matches('[').trim_end_matches(']')
    }

    /// How many addresses share in the balancing: an IP address is one; a name has those it resolved to (none
    /// when it resolved to nothing), or one before its first answer, so that it is picked and resolved.
    fn address_count(&self) -> u64 {
        match &self.name {
            None => 1,
            Some(name) => name.resolved.load().as_deref().map_or(1, |r| r.addresses.len() as u64),
        }
    }

    /// Kong's rule for a host-name target (`kong/runloop/balancer/balancers.lua`, `addAddress`): every address
    /// it resolves to carries the target's full weight, so the target weighs its weight times its addresses.
    fn balanced_weight(&self) -> u64 {
        u64::from(self.weight) * self.address_count()
    }

    /// The weight of its addresses that can take requests: all of them while the target is healthy, less those
    /// set unhealthy one by one.
    fn available_weight(&self) -> u64 {
        if !self.is_healthy() {
            return 0;
        }
        let healthy = match &self.name {
            None => 1,
            Some(name) => name
                .resolved
                .load()
                .as_deref()
                .map_or(1, |r| r.healthy.iter().filter(|h| h.load(Ordering::Relaxed)).count() as u64),
        };
        u64::from(self.weight) * healthy
    }
}

/// What happened to one attempt on a target, for the health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head with this status.
    Status(u16),
    /// No connection could be made.
    TcpFailure,
    /// The target did not answer in time.
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    RoundRobin,
    ConsistentHashing,
    LeastConnections,
    Latency,
}

/// What picks read, built from each target's [`TargetState::balanced_weight`].
#[derive(Debug, Default)]
struct Tables {
    /// Target indexes in smooth weighted round-robin order (nginx's), one full cycle.
    schedule: Box<[u16]>,
    /// The consistent-hashing ring: points sorted by position, each naming a target index.
    ring: Box<[(u64, u16)]>,
}

impl Tables {
    fn build(targets: &[TargetState], algorithm: Algorithm, slots: u32) -> Self {
        let weights: Vec<u64> = targets.iter().map(TargetState::balanced_weight).collect();
        let schedule = smooth_schedule(&weights);
        let ring =
            if algorithm == Algorithm::ConsistentHashing { ring(targets, &weights, slots) } else { Box::default() };
        Self { schedule, ring }
    }
}

/// A balancer's [`Tables`]: fixed when every target is an IP address (a pick reads them with no atomic
/// operation), swapped when a host name's number of addresses changes otherwise.
#[derive(Debug)]
enum TablesCell {
    Fixed(Tables),
    Named { current: arc_swap::ArcSwap<Tables>, rebuilding: Mutex<()> },
}

/// One upstream's balancer on this node.
#[derive(Debug)]
pub struct Balancer {
    pub spec: Upstream,
    pub targets: Box<[TargetState]>,
    algorithm: Algorithm,
    tables: TablesCell,
    cursor: AtomicUsize,
    /// The `Host` header sent upstream when the upstream sets `host_header`.
    pub host_header: Option<http::HeaderValue>,
    /// Resolves host-name targets (none: they are never resolved, as in unit tests).
    dns: Option<Arc<Dns>>,
}

/// The largest round-robin cycle built; larger total weights are scaled down to it, keeping their ratios.
const MAX_SCHEDULE: u64 = 100_000;

impl Balancer {
    pub fn new(spec: Upstream) -> Self {
        let targets: Box<[TargetState]> =
            spec.targets.iter().filter_map(|t| TargetState::new(t.id, &t.target, t.weight)).collect();
        let algorithm = match spec.algorithm.as_str() {
            "consistent-hashing" => Algorithm::ConsistentHashing,
            "least-connections" => Algorithm::LeastConnections,
            "latency" => Algorithm::Latency,
            _ => Algorithm::RoundRobin,
        };
        let built = Tables::build(&targets, algorithm, spec.slots);
        let tables = if targets.iter().any(|t| t.name.is_some()) {
            TablesCell::Named { current: arc_swap::ArcSwap::from_pointee(built), rebuilding: Mutex::new(()) }
        } else {
            TablesCell::Fixed(built)
        };
        let host_header = spec.host_header.as_deref().and_then(|h| http::HeaderValue::from_str(h).ok());
        // Start each node at a different place in the cycle, so nodes do not all send their first requests to
        // the same target.
        let start = getrandom::u64().unwrap_or(0) as usize;
        Self { spec, targets, algorithm, tables, cursor: AtomicUsize::new(start), host_header, dns: None }
    }

    /// Rebuilds the tables from the targets' addresses now: after a name resolved to a different number of
    /// addresses. One rebuild at a time, each from the latest answers, so a slower one never stores older tables
    /// over a newer one's.
    fn addresses_changed(&self) {
        if let TablesCell::Named { current, rebuilding } = &self.tables {
            let _one = rebuilding.lock().unwrap_or_else(|p| p.into_inner());
            current.store(Arc::new(Tables::build(&self.targets, self.algorithm, self.spec.slots)));
        }
    }

    #[cfg(test)]
    fn schedule(&self) -> Vec<u16> {
        match &self.tables {
            TablesCell::Fixed(t) => t.schedule.to_vec(),
            TablesCell::Named { current, .. } => current.load().schedule.to_vec(),
        }
    }

    /// Whether the health checks decide anything (Kong's `HEALTHCHECKS_OFF` otherwise).
    fn checks_on(&self) -> bool {
        self.spec.healthchecks.any_on()
    }

    /// Whether a target can take a request now.
    fn available(&self, i: usize) -> bool {
        let t = &self.targets[i];
        t.weight > 0 && t.is_healthy() && t.name.as_ref().is_none_or(dns::NameState::usable)
    }

    /// Whether the upstream as a whole takes traffic: the healthy share of its weight reaches `threshold` %
    /// (weights per address, as Kong counts them).
    fn above_threshold(&self) -> bool {
        let threshold = self.spec.healthchecks.threshold;
        if threshold <= 0.0 {
            return true;
        }
        let total: u64 = self.targets.iter().map(TargetState::balanced_weight).sum();
        let healthy: u64 = self.targets.iter().map(TargetState::available_weight).sum();
        total > 0 && (healthy as f64) * 100.0 >= threshold * total as f64
    }

    /// The target for one attempt: `hash` is the request's hash value (consistent hashing), `tried` the attempts
    /// so far (retries move on to another target). `None`: no target is available (Kong's 503).
    pub fn pick(&self, hash: Option<u64>, tried: &[usize]) -> Option<usize> {
        match &self.tables {
            TablesCell::Fixed(tables) => self.pick_in(tables, hash, tried),
            TablesCell::Named { current, .. } => self.pick_in(&current.load(), hash, tried),
        }
    }

    fn pick_in(&self, tables: &Tables, hash: Option<u64>, tried: &[usize]) -> Option<usize> {
        if !self.above_threshold() {
            return None;
        }
        let usable = |i: usize| self.available(i) && !tried.contains(&i);
        match self.algorithm {
            Algorithm::ConsistentHashing if hash.is_some() && !tables.ring.is_empty() => {
                let (h, ring) = (hash.unwrap_or(0), &tables.ring);
                let start = ring.partition_point(|(p, _)| *p < h);
                (0..ring.len()).map(|k| ring[(start + k) % ring.len()].1 as usize).find(|&i| usable(i))
            }
            Algorithm::LeastConnections | Algorithm::Latency => {
                let n = self.targets.len();
                let offset = self.cursor.fetch_add(1, Ordering::Relaxed);
                let score = |i: usize| {
                    let t = &self.targets[i];
                    let active = f64::from(t.active.load(Ordering::Relaxed)) + 1.0;
                    let base = if self.algorithm == Algorithm::Latency {
                        t.latency_us.load(Ordering::Relaxed) as f64 * active
                    } else {
                        active
                    };
                    base / (t.balanced_weight().max(1) as f64)
                };
                (0..n).map(|k| (offset + k) % n).filter(|&i| usable(i)).min_by(|&a, &b| score(a).total_cmp(&score(b)))
            }
            _ => {
                let (schedule, len) = (&tables.schedule, tables.schedule.len());
                if len == 0 {
                    return None;
                }
                let at = self.cursor.fetch_add(1, Ordering::Relaxed);
                (0..len).map(|k| schedule[(at + k) % len] as usize).find(|&i| usable(i))
            }
        }
    }

    /// Whether picks read the targets' load, which attempts then keep up to date (`least-connections`,
    /// `latency`); other algorithms leave those counters alone, so a request writes no shared cache line for them.
    fn tracks_load(&self) -> bool {
        matches!(self.algorithm, Algorithm::LeastConnections | Algorithm::Latency)
    }

    /// Whether a request's hash value is wanted (`consistent-hashing`).
    pub fn hashes(&self) -> bool {
        self.algorithm == Algorithm::ConsistentHashing
    }

    /// Counts an attempt on target `i` as started (`least-connections`, `latency`).
    pub fn begin(&self, i: usize) {
        if self.tracks_load() {
            self.targets[i].active.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends an attempt on target `i` that tells nothing about its health.
    pub fn release(&self, i: usize) {
        if self.tracks_load() {
            let _ = self.targets[i].active.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Reports how an attempt on target `i` ended (`elapsed`: its time to the response head), for the
    /// connection counts, the latency average and the passive health checks.
    pub fn finish(&self, i: usize, outcome: Outcome, elapsed: std::time::Duration) {
        let t = &self.targets[i];
        self.release(i);
        if self.algorithm == Algorithm::Latency
            && let Outcome::Status(_) = outcome
        {
            let sample = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1);
            let old = t.latency_us.load(Ordering::Relaxed);
            let new = if old == 0 { sample } else { (old * 7 + sample) / 8 };
            t.latency_us.store(new, Ordering::Relaxed);
        }
        let p = &self.spec.healthchecks.passive;
        let thresholds = Thresholds {
            healthy_statuses: &p.healthy.http_statuses,
            successes: p.healthy.successes,
            unhealthy_statuses: &p.unhealthy.http_statuses,
            tcp_failures: p.unhealthy.tcp_failures,
            timeouts: p.unhealthy.timeouts,
            http_failures: p.unhealthy.http_failures,
        };
        let Some(verdict) = thresholds.verdict(t, outcome) else { return };
        self.count(i, verdict, "passive");
    }

    /// Counts one check's verdict on target `i`. Counters are only written when they change, so the usual case (a
    /// success on a healthy target with nothing counted) reads them and writes nothing.
    fn count(&self, i: usize, verdict: Verdict<'_>, check: &'static str) {
        let t = &self.targets[i];
        let clear = |c: &AtomicU32| {
            if c.load(Ordering::Relaxed) != 0 {
                c.store(0, Ordering::Relaxed);
            }
        };
        match verdict {
            Verdict::Failure(counter, threshold) => {
                clear(&t.successes);
                if threshold == 0 || !t.is_healthy() {
                    return;
                }
                if counter.fetch_add(1, Ordering::Relaxed) + 1 >= threshold {
                    t.set_healthy(false);
                    tracing::warn!(upstream = %self.spec.name, target = %t.target, check, "target marked unhealthy");
                }
            }
            Verdict::Success(threshold) => {
                for c in [&t.tcp_failures, &t.timeouts, &t.http_failures] {
                    clear(c);
                }
                if threshold == 0 || t.is_healthy() {
                    return;
                }
                if t.successes.fetch_add(1, Ordering::Relaxed) + 1 >= threshold {
                    t.set_healthy(true);
                    tracing::info!(upstream = %self.spec.name, target = %t.target, check, "target marked healthy");
                }
            }
        }
    }

    /// The health a target reports (Kong's `/upstreams/{u}/health` values).
    pub fn health_of(&self, i: usize) -> &'static str {
        if self.targets[i].name.as_ref().is_some_and(dns::NameState::failed) {
            "DNS_ERROR"
        } else if !self.checks_on() {
            "HEALTHCHECKS_OFF"
        } else if self.targets[i].is_healthy() && self.targets[i].name.as_ref().is_none_or(dns::NameState::usable) {
            "HEALTHY"
        } else {
            "UNHEALTHY"
        }
    }

    /// The hash value of one request for `consistent-hashing`: `hash_on`, else `hash_fallback` when the former
    /// gives nothing. `None` when neither does (the request is balanced round-robin).
    pub fn hash_value(&self, input: &HashInput<'_>) -> Option<u64> {
        if !self.hashes() {
            return None;
        }
        let s = &self.spec;
        let first = hash_source(
            &s.hash_on,
            s.hash_on_header.as_deref(),
            s.hash_on_cookie.as_deref(),
            s.hash_on_query_arg.as_deref(),
            s.hash_on_uri_capture.as_deref(),
            input,
        );
        let value = first.or_else(|| {
            hash_source(
                &s.hash_fallback,
                s.hash_fallback_header.as_deref(),
                s.hash_on_cookie.as_deref(),
                s.hash_fallback_query_arg.as_deref(),
                s.hash_fallback_uri_capture.as_deref(),
                input,
            )
        })?;
        Some(value.hash())
    }

    /// With `hash_on: cookie` and no cookie in the request, the cookie Kong sets so the client sticks to the
    /// target it got: a fresh random value, and the `Set-Cookie` header value that gives it.
    pub fn cookie_to_set(&self, input: &HashInput<'_>) -> Option<(String, http::HeaderValue)> {
        if self.algorithm != Algorithm::ConsistentHashing || self.spec.hash_on != "cookie" {
            return None;
        }
        let name = self.spec.hash_on_cookie.as_deref()?;
        if cookie(input.headers, name).is_some() {
            return None;
        }
        let value = uuid::Uuid::new_v4().to_string();
        let header = format!("{name}={value}; Path={}", self.spec.hash_on_cookie_path);
        Some((value.clone(), http::HeaderValue::from_str(&header).ok()?))
    }
}

enum Verdict<'a> {
    Failure(&'a AtomicU32, u32),
    Success(u32),
}

/// One check's settings (passive, or active): which statuses count as what, and how many make a verdict.
struct Thresholds<'a> {
    healthy_statuses: &'a [u16],
    successes: u32,
    unhealthy_statuses: &'a [u16],
    tcp_failures: u32,
    timeouts: u32,
    http_failures: u32,
}

impl Thresholds<'_> {
    /// What an outcome on `t` counts as; `None` for a status in neither list.
    fn verdict<'t>(&self, t: &'t TargetState, outcome: Outcome) -> Option<Verdict<'t>> {
        Some(match outcome {
            Outcome::Status(s) if self.unhealthy_statuses.contains(&s) => {
                Verdict::Failure(&t.http_failures, self.http_failures)
            }
            Outcome::Status(s) if self.healthy_statuses.contains(&s) => Verdict::Success(self.successes),
            Outcome::Status(_) => return None,
            Outcome::TcpFailure => Verdict::Failure(&t.tcp_failures, self.tcp_failures),
            Outcome::Timeout => Verdict::Failure(&t.timeouts, self.timeouts),
        })
    }
}

/// What a request offers to hash on.
pub struct HashInput<'a> {
    pub consumer: Option<uuid::Uuid>,
    pub client_ip: std::net::IpAddr,
    pub headers: &'a http::HeaderMap,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The route's regex path captures, by name.
    pub captures: &'a dyn Fn(&str) -> Option<String>,
    /// A cookie value chosen for this request (when Kong would set the cookie).
    pub chosen_cookie: Option<&'a str>,
}

impl std::fmt::Debug for HashInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashInput")
            .field("client_ip", &self.client_ip)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a request is hashed on: text, or the client's address, hashed as its text without being formatted
/// into a string first (the same hash value, without an allocation per request).
enum HashKey<'a> {
    Text(std::borrow::Cow<'a, str>),
    Ip(std::net::IpAddr),
}

impl HashKey<'_> {
    fn hash(&self) -> u64 {
        match self {
            HashKey::Text(text) => hash64(text.as_bytes()),
            HashKey::Ip(ip) => {
                /// Feeds formatted text straight to the hasher (SipHash reads a stream: pieces hash as their
                /// concatenation does).
                struct Feed(siphasher::sip::SipHasher13);
                impl std::fmt::Write for Feed {
                    fn write_str(&mut self, s: &str) -> std::fmt::Result {
                        self.0.write(s.as_bytes());
                        Ok(())
                    }
                }
                let mut feed = Feed(hasher());
                let _ = std::fmt::Write::write_fmt(&mut feed, format_args!("{ip}"));
                feed.0.finish()
            }
        }
    }
}

fn hash_source<'a>(
    on: &str,
    header: Option<&str>,
    cookie_name: Option<&str>,
    query_arg: Option<&str>,
    capture: Option<&str>,
    input: &HashInput<'a>,
) -> Option<HashKey<'a>> {
    use std::borrow::Cow;
    let text = match on {
        "consumer" => Cow::Owned(input.consumer?.to_string()),
        "ip" => return Some(HashKey::Ip(input.client_ip)),
        "header" => {
            let mut values = input.headers.get_all(header?).iter().filter_map(|v| v.to_str().ok());
            let first = values.next()?;
            // Kong joins a repeated header's values.
            match values.next() {
                None => Cow::Borrowed(first),
                Some(second) => {
                    let mut joined = format!("{first},{second}");
                    for v in values {
                        joined.push(',');
                        joined.push_str(v);
                    }
                    Cow::Owned(joined)
                }
            }
        }
        "cookie" => Cow::Borrowed(cookie(input.headers, cookie_name?).or(input.chosen_cookie)?),
        "path" => Cow::Borrowed(input.path),
        "query_arg" => {
            let name = query_arg?;
            let values: Vec<String> = form_urlencoded::parse(input.query?.as_bytes())
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .collect();
            if values.is_empty() {
                return None;
            }
            Cow::Owned(values.join(","))
        }
        "uri_capture" => Cow::Owned((input.captures)(capture?)?),
        _ => return None,
    };
    Some(HashKey::Text(text))
}

fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A stable 64-bit hash (the same on every node and across restarts, so a key keeps its target).
fn hash64(bytes: &[u8]) -> u64 {
    let mut h = hasher();
    h.write(bytes);
    h.finish()
}

fn hasher() -> siphasher::sip::SipHasher13 {
    siphasher::sip::SipHasher13::new_with_keys(0x6761_7465_686f_7573, 0x6b6f_6e67_7570_7374)
}

/// nginx's smooth weighted round-robin over `weights`, one full cycle: each target appears `weight` times (after
/// dividing by their common divisor), spread out rather than in runs.
fn smooth_schedule(weights: &[u64]) -> Box<[u16]> {
    let divisor = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd).max(1);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        for w in &mut weights {
            if *w > 0 {
                *w = (*w * MAX_SCHEDULE / total).max(1);
            }
        }
    }
    let total: i64 = weights.iter().map(|w| *w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(u16::try_from(best).unwrap_or(u16::MAX));
    }
    out.into_boxed_slice()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The consistent-hashing ring. Each target gets points in proportion to its weight alone (`slots / 1000` per unit
/// of weight, so 1,000 for a weight of 100 at the default 10,000 slots; a host name's weight counts once per
/// address), each placed by hashing the target and the point's number: adding a target (or an address to a name)
/// adds points and leaves every other where it was, so only the keys that land on the new points move. Past 2^20
/// points in all, the resolution is lowered to fit. Within a name, a key picks its address by
/// [`dns::NameState::next_address`]'s rendezvous hashing.
fn ring(targets: &[TargetState], weights: &[u64], slots: u32) -> Box<[(u64, u16)]> {
    const MAX_POINTS: u64 = 1 << 20;
    let total: u64 = weights.iter().sum();
    if total == 0 {
        return Box::default();
    }
    let per_weight = (f64::from(slots) / 1000.0).min(MAX_POINTS as f64 / total as f64);
    let mut points = Vec::new();
    for (i, (t, &weight)) in targets.iter().zip(weights).enumerate() {
        if weight == 0 {
            continue;
        }
        let share = ((weight as f64 * per_weight).round() as u64).max(1);
        for n in 0..share {
            points.push((hash64(format!("{}#{n}", t.target).as_bytes()), u16::try_from(i).unwrap_or(u16::MAX)));
        }
    }
    points.sort_unstable();
    points.into_boxed_slice()
}

/// The balancers of a configuration being installed (see [`Balancers::stage`]).
#[derive(Debug)]
pub struct Staged {
    next: HashMap<uuid::Uuid, Arc<Balancer>>,
    /// Those built for it, whose active checks start when it is committed.
    fresh: Vec<Arc<Balancer>>,
}

impl Staged {
    /// The balancers by upstream name (lower case), for the services that name them.
    pub fn by_name(&self) -> HashMap<String, Arc<Balancer>> {
        self.next.values().map(|b| (b.spec.name.to_ascii_lowercase(), b.clone())).collect()
    }
}

/// The node's balancers, by upstream id: what the proxy's configurations name, and what the Admin API's health
/// endpoints read and set.
#[derive(Debug, Default)]
pub struct Balancers {
    current: Mutex<HashMap<uuid::Uuid, Arc<Balancer>>>,
    dns: Arc<Dns>,
}

impl Balancers {
    pub fn new(dns: DnsSettings) -> Self {
        Self { current: Mutex::default(), dns: Arc::new(Dns::new(dns)) }
    }

    /// The balancers `upstreams` need: an unchanged upstream keeps its balancer; a changed one gets a new balancer
    /// that keeps the health of the targets it still has. Nothing changes on the node until [`Balancers::commit`]
    /// (a configuration that does not compile leaves the health endpoints as they were).
    pub fn stage(&self, upstreams: &[Upstream]) -> Staged {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = HashMap::with_capacity(upstreams.len());
        let mut fresh = Vec::new();
        for spec in upstreams {
            let balancer = match current.get(&spec.id) {
                Some(existing) if existing.spec == *spec => existing.clone(),
                previous => {
                    let mut built = Balancer::new(spec.clone());
                    built.dns = Some(self.dns.clone());
                    if let Some(old) = previous {
                        for t in built.targets.iter() {
                            if let Some(o) = old.targets.iter().find(|o| o.target == t.target) {
                                t.healthy.store(o.is_healthy(), Ordering::Relaxed);
                                // Its addresses stay until their own TTL runs out.
                                if let (Some(new), Some(old)) = (&t.name, &o.name) {
                                    new.resolved.store(old.resolved.load_full());
                                }
                            }
                        }
                    }
                    built.addresses_changed();
                    let built = Arc::new(built);
                    fresh.push(built.clone());
                    built
                }
            };
            next.insert(spec.id, balancer);
        }
        Staged { next, fresh }
    }

    /// Stages and commits `upstreams` at once.
    #[cfg(test)]
    fn install(&self, upstreams: &[Upstream]) -> HashMap<String, Arc<Balancer>> {
        let staged = self.stage(upstreams);
        let by_name = staged.by_name();
        self.commit(staged);
        by_name
    }

    /// Makes a staged set the node's, and starts the active checks of its new balancers.
    pub fn commit(&self, staged: Staged) {
        let Staged { next, fresh } = staged;
        for b in fresh {
            if b.spec.healthchecks.active_on() {
                tokio::spawn(probe_loop(Arc::downgrade(&b)));
            }
            if b.has_names() {
                tokio::spawn(refresh_loop(Arc::downgrade(&b)));
            }
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = next;
    }

    fn get(&self, upstream: uuid::Uuid) -> Option<Arc<Balancer>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).get(&upstream).cloned()
    }

    /// `kong_upstream_target_health` (the `prometheus` plugin's `upstream_health_metrics`): per target, Kong's
    /// four states, 1 for the current one and 0 for the others.
    pub fn render_target_health(&self, out: &mut String) {
        let mut balancers: Vec<Arc<Balancer>> =
            self.current.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        if balancers.iter().all(|b| b.targets.is_empty()) {
            return;
        }
        balancers.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        let mut rows: Vec<(String, String, String, &'static str, f64)> = Vec::new();
        for b in &balancers {
            for (i, t) in b.targets.iter().enumerate() {
                let current = b.health_of(i).to_ascii_lowercase();
                for state in ["healthchecks_off", "healthy", "unhealthy", "dns_error"] {
                    let value = if current == state { 1.0 } else { 0.0 };
                    rows.push((b.spec.name.clone(), t.target.clone(), t.authority.to_string(), state, value));
                }
            }
        }
        let series: Vec<[(&str, &str); 5]> = rows
            .iter()
            .map(|(u, t, a, state, _)| {
                [
                    ("upstream", u.as_str()),
                    ("target", t.as_str()),
                    ("address", a.as_str()),
                    ("state", state),
                    ("subsystem", "http"),
                ]
            })
            .collect();
        let series: Vec<(&[(&str, &str)], f64)> =
            series.iter().zip(&rows).map(|(labels, row)| (&labels[..], row.4)).collect();
        crate::metrics::gauge(
            out,
            "kong_upstream_target_health",
            "Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, value is 1 when state is populated.",
            &series,
        );
    }
}

impl UpstreamHealth for Balancers {
    fn targets_health(&self, upstream: uuid::Uuid) -> Option<Vec<TargetHealth>> {
        let b = self.get(upstream)?;
        Some(
            (0..b.targets.len())
                .map(|i| {
                    let t = &b.targets[i];
                    let health = b.health_of(i);
                    let of = |ip: std::net::IpAddr, healthy: bool| AddressHealth {
                        ip,
                        health: match health {
                            "HEALTHY" | "UNHEALTHY" if !healthy || !t.is_healthy() => "UNHEALTHY",
                            "HEALTHY" | "UNHEALTHY" => "HEALTHY",
                            other => other,
                        },
                    };
                    let (addresses, dns) = match &t.name {
                        None => {
                            let ip = t.host().parse().ok();
                            let kind = if ip.is_some_and(|ip: std::net::IpAddr| ip.is_ipv6()) { "AAAA" } else { "A" };
                            (ip.into_iter().map(|ip| of(ip, true)).collect(), kind.to_owned())
                        }
                        Some(name) => match name.resolved.load_full() {
                            None => (Vec::new(), "unknown".to_owned()),
                            Some(r) => {
                                let kind = if r.ips.iter().all(std::net::IpAddr::is_ipv6) { "AAAA" } else { "A" };
                                let dns = match &r.error {
                                    Some(error) if r.ips.is_empty() => error.clone(),
                                    _ => kind.to_owned(),
                                };
                                let addresses = r
                                    .ips
                                    .iter()
                                    .zip(r.healthy.iter())
                                    .map(|(ip, h)| of(*ip, h.load(Ordering::Relaxed)));
                                (addresses.collect(), dns)
                            }
                        },
                    };
                    TargetHealth {
                        target: t.target.clone(),
                        host: t.host().to_owned(),
                        port: t.authority.port_u16().unwrap_or(0),
                        weight: t.weight,
                        health,
                        addresses,
                        dns,
                    }
                })
                .collect(),
        )
    }

    fn set_target_health(&self, upstream: uuid::Uuid, target: &str, healthy: bool) -> bool {
        let Some(b) = self.get(upstream) else { return false };
        let Some(t) = b.targets.iter().find(|t| t.target == target) else { return false };
        t.set_healthy(healthy);
        if let Some(name) = &t.name {
            name.set_all(healthy);
        }
        true
    }

    fn set_address_health(&self, upstream: uuid::Uuid, target: &str, address: SocketAddr, healthy: bool) -> bool {
        let Some(b) = self.get(upstream) else { return false };
        let Some(t) = b.targets.iter().find(|t| t.target == target) else { return false };
        if address.port() != t.authority.port_u16().unwrap_or(0) {
            return false;
        }
        match &t.name {
            Some(name) => {
                if !name.set_one(address.ip(), healthy) {
                    return false;
                }
                // Health set for an address brings the target back too (its checks count per target).
                if healthy {
                    t.set_healthy(true);
                }
                true
            }
            None if t.host().parse() == Ok(address.ip()) => {
                t.set_healthy(healthy);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests;
