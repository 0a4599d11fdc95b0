//! The node's cache of introspection answers.
//!
//! Unlike Kong's (keyed by the raw token alone, IdP failures cached, `exp` ignored), an entry here:
//! - is keyed by a keyed hash of the token under a key made from everything else that changes the answer or what is
//!   made of it (see [`Keyer`]), so two plugin instances never share answers from different IdPs, and raw tokens are
//!   not kept;
//! - lives for `ttl` but never past the token's `exp` (with no `exp` and `ttl = 0`, it is not kept at all);
//!   inactive answers live for `negative_ttl` (default 0: not kept); failures are never kept. Both deadlines are
//!   read from the node's [`Clock`] on every hit, so a test that moves the clock past `exp` sees the next request
//!   refused; moka's own expiry (its monotonic time) only frees the memory of entries no one asks for;
//! - is computed once however many requests ask for it at the same time (moka's `try_get_with` coalesces them);
//! - costs what its answer holds ([`Entry::footprint`]), and the node keeps at most a number of entries and of bytes
//!   (node settings, [`CacheLimits`]).
//!
//! In front of it, each plugin instance (one per proxy worker, since every worker compiles its own configuration)
//! keeps a [`RecentAnswers`]: private copies of the answers its worker served lately, until the same deadline.

use std::collections::HashMap;
use std::hash::Hasher as _;
use std::mem::size_of;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use http::{HeaderName, HeaderValue};
use moka::Expiry;
use moka::future::Cache;
use siphasher::sip128::{Hasher128 as _, SipHasher24};

use gatehouse_model::Timestamp;
use gatehouse_model::metrics::gatehouse::CacheResult;

use super::idp::{IdpFailure, Introspected};

pub type Key = u128;

/// What the node's cache may hold: at most `entries` answers and `bytes` bytes, by their [`Entry::footprint`] and
/// what moka spends per entry. Either at 0 keeps nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    pub entries: u64,
    pub bytes: u64,
}

impl CacheLimits {
    pub const DEFAULT_ENTRIES: u64 = 100_000;
    pub const DEFAULT_BYTES: u64 = 64 << 20;
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self { entries: Self::DEFAULT_ENTRIES, bytes: Self::DEFAULT_BYTES }
    }
}

/// What moka keeps per entry besides the value: the key, its hash table slot, the entry's bookkeeping (access
/// order, timer wheel, frequency sketch). Measured: a node's resident memory grew by 607 bytes per inactive answer
/// (footprint 224) and 2,999 per active one (2,498), copies in the workers included (`bench/introspection-cache.sh`,
/// docs/operations.md, "The introspection cache").
const MOKA_BYTES_PER_ENTRY: usize = 384;
/// What a [`RecentAnswers`] map spends per copy besides the entry: key, pointer and control byte, at its load factor.
const RECENT_SLOT_BYTES: usize = 32;

/// An answer with how long it may be used: `keep_for` from when it arrived (`arrived`, on the node's clock), so
/// until `until`.
#[derive(Debug)]
pub struct Entry {
    pub answer: Introspected,
    pub keep_for: Duration,
    pub until: Timestamp,
    footprint: usize,
}

/// `t` plus `d`, saturating (a year-long `ttl` on a far-future clock must not wrap).
pub fn later(t: Timestamp, d: Duration) -> Timestamp {
    let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    Timestamp::from_micros(t.micros().saturating_add(micros))
}

impl Entry {
    pub fn new(answer: Introspected, keep_for: Duration, arrived: Timestamp) -> Self {
        Self::at(answer, keep_for, later(arrived, keep_for))
    }

    /// Whether the answer may still be used at `now`: before its deadline, which is never past the token's `exp`.
    pub fn usable_at(&self, now: Timestamp) -> bool {
        self.until > now && self.answer.expires.is_none_or(|exp| exp > now)
    }

    fn at(answer: Introspected, keep_for: Duration, until: Timestamp) -> Self {
        let footprint = footprint(&answer);
        Self { answer, keep_for, until, footprint }
    }

    /// The bytes this entry holds on the heap: its allocation (behind an `Arc`), its header map's index, buckets,
    /// values and names, and its strings.
    pub fn footprint(&self) -> usize {
        self.footprint
    }

    /// A copy sharing no memory with `self`: header values, and names other than Kong's standard ones (which are
    /// static and have no reference count), are new buffers, so using the copy on one core never touches a
    /// reference count another core is using.
    fn private_copy(&self) -> Self {
        let mut headers = super::idp::credential_map_for(&self.answer.headers);
        for (name, value) in &self.answer.headers {
            // Both were valid when the answer was rendered, so neither check below can fail.
            let name = match super::idp::standard_credential_header(name.as_str()) {
                Some(standard) => standard,
                None => match HeaderName::from_bytes(name.as_str().as_bytes()) {
                    Ok(name) => name,
                    Err(_) => continue,
                },
            };
            let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) else { continue };
            copy.set_sensitive(value.is_sensitive());
            headers.append(name, copy);
        }
        let answer = Introspected {
            active: self.answer.active,
            headers: super::idp::compact(headers),
            username: self.answer.username.clone(),
            client_id: self.answer.client_id.clone(),
            expires: self.answer.expires,
        };
        Self::at(answer, self.keep_for, self.until)
    }
}

/// [`Entry::footprint`]: an estimate, counted from the sizes of the parts (a test holds it against what the
/// allocator is asked for). `http`'s map keeps an index of 4-byte slots, a bucket per name (hash, links, name and
/// value) and an extra slot per further value of a name; a value's or a custom name's bytes are their own
/// allocation, with a 24-byte shared header once they are cloned (the map is, when compacted).
fn footprint(answer: &Introspected) -> usize {
    const INDEX_SLOT: usize = 4;
    const BUCKET_EXTRA: usize = 32;
    const SHARED_BYTES: usize = 24;
    let buffer = |len: usize| if len == 0 { 0 } else { len + SHARED_BYTES };
    let headers = &answer.headers;
    let mut bytes = 2 * size_of::<usize>() + size_of::<Entry>();
    if headers.capacity() > 0 {
        let index_slots = headers.capacity() * 4 / 3;
        let buckets = headers.keys_len();
        let extra_values = headers.len() - buckets;
        bytes += index_slots * INDEX_SLOT
            + buckets * (size_of::<HeaderName>() + size_of::<HeaderValue>() + BUCKET_EXTRA)
            + extra_values * (size_of::<HeaderValue>() + BUCKET_EXTRA);
        bytes += headers.values().map(|v| buffer(v.len())).sum::<usize>();
        bytes += headers
            .keys()
            .filter(|name| super::idp::standard_credential_header(name.as_str()).is_none())
            .map(|name| buffer(name.as_str().len()))
            .sum::<usize>();
    }
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
    bytes + text(&answer.username) + text(&answer.client_id)
}

/// The most answers one plugin instance keeps for its worker, and the most bytes they may hold; past either,
/// expired ones go, then all of them.
pub const RECENT_ANSWERS: usize = 4096;
pub const RECENT_ANSWERS_BYTES: usize = 4 << 20;
/// The most bytes the private copies of every instance on every worker may hold together: however many plugin
/// instances a configuration has, the copies stay within this. Past it, an instance drops its own copies, and
/// serves from the node's cache alone while the others hold the budget.
pub const ALL_RECENT_ANSWERS_BYTES: usize = 16 << 20;

/// What the private copies of every instance hold, node-wide ([`ALL_RECENT_ANSWERS_BYTES`]). Touched when a
/// copy is kept or dropped, never on a hit.
#[derive(Debug, Default)]
pub struct CopyBudget(AtomicUsize);

impl CopyBudget {
    fn take(&self, bytes: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let total = held.checked_add(bytes)?;
                (total <= ALL_RECENT_ANSWERS_BYTES).then_some(total)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.0.fetch_sub(bytes, Ordering::AcqRel);
    }

    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// Private copies of the answers one worker served lately, in front of the node's [`AnswerCache`]. Serving a token
/// from the shared cache takes moka's concurrent structures and the reference counts of one answer that every core
/// clones; on two cores that cost more than the plugin's own work. A copy here lives until the shared entry's
/// deadline (`ttl`, `exp`, `negative_ttl`), so it never serves an answer the shared cache would have dropped for
/// age; it may outlive an entry the shared cache evicted for room, within that deadline.
#[derive(Debug, Default)]
pub struct RecentAnswers {
    copies: Mutex<Copies>,
    budget: Arc<CopyBudget>,
}

impl Drop for RecentAnswers {
    fn drop(&mut self) {
        let held = self.copies.get_mut().map_or_else(|p| p.into_inner().bytes, |c| c.bytes);
        self.budget.give_back(held);
    }
}

#[derive(Debug, Default)]
struct Copies {
    entries: HashMap<Key, Arc<Entry>>,
    /// What `entries` hold, by [`RecentAnswers::cost`].
    bytes: usize,
}

impl RecentAnswers {
    /// Copies counted against the node-wide `budget`.
    pub fn new(budget: Arc<CopyBudget>) -> Self {
        Self { copies: Mutex::default(), budget }
    }

    /// The copy for `key` if it may still be used at `now` (the node's clock); an expired one is dropped.
    pub fn get(&self, key: &Key, now: Timestamp) -> Option<Arc<Entry>> {
        let mut copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        let entry = copies.entries.get(key)?;
        // `until` is never past `exp` (see `keep`), so one comparison decides.
        if entry.until > now {
            return Some(entry.clone());
        }
        if let Some(gone) = copies.entries.remove(key) {
            let cost = Self::cost(&gone);
            copies.bytes -= cost;
            self.budget.give_back(cost);
        }
        None
    }

    fn cost(entry: &Entry) -> usize {
        entry.footprint() + RECENT_SLOT_BYTES
    }

    /// Keeps a private copy of `entry` and returns it; an answer that may not be kept at `now` comes back as it is.
    pub fn keep(&self, key: Key, entry: &Arc<Entry>, now: Timestamp) -> Arc<Entry> {
        let mut until = entry.until;
        if let Some(exp) = entry.answer.expires {
            // Never past the token's `exp`, whatever deadline the entry came with.
            until = until.min(exp);
        }
        if until <= now || Self::cost(entry) > RECENT_ANSWERS_BYTES {
            return entry.clone();
        }
        let copy = Arc::new(Entry { until, ..entry.private_copy() });
        let cost = Self::cost(&copy);
        let mut copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        let copies = &mut *copies;
        if copies.entries.len() >= RECENT_ANSWERS || copies.bytes + cost > RECENT_ANSWERS_BYTES {
            self.drop_copies(copies, |e| e.until <= now);
            if copies.entries.len() >= RECENT_ANSWERS || copies.bytes + cost > RECENT_ANSWERS_BYTES {
                self.drop_copies(copies, |_| true);
            }
        }
        if let Some(replaced) = copies.entries.remove(&key) {
            let replaced_cost = Self::cost(&replaced);
            copies.bytes -= replaced_cost;
            self.budget.give_back(replaced_cost);
        }
        if !self.budget.take(cost) {
            // The node's copies are at their bound: this instance starts over, and keeps nothing if that is not
            // enough (its hits then go to the node's cache).
            self.drop_copies(copies, |_| true);
            if !self.budget.take(cost) {
                return entry.clone();
            }
        }
        copies.entries.insert(key, copy.clone());
        copies.bytes += cost;
        copy
    }

    /// Drops the copies `doomed` picks, giving their bytes back to the budget.
    fn drop_copies(&self, copies: &mut Copies, doomed: impl Fn(&Entry) -> bool) {
        let before = copies.bytes;
        copies.entries.retain(|_, e| !doomed(e));
        copies.bytes = copies.entries.values().map(|e| Self::cost(e)).sum();
        self.budget.give_back(before - copies.bytes);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.copies.lock().unwrap().entries.len()
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.copies.lock().unwrap().bytes
    }
}

struct KeepFor;

impl Expiry<Key, Arc<Entry>> for KeepFor {
    fn expire_after_create(&self, _key: &Key, entry: &Arc<Entry>, _created_at: Instant) -> Option<Duration> {
        Some(entry.keep_for)
    }
}

#[derive(Clone)]
pub struct AnswerCache {
    entries: Cache<Key, Arc<Entry>>,
    /// Whether answers are kept at all (a bound of 0 keeps none, and then workers keep no copies either).
    keeps_answers: bool,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache").field("entries", &self.entries.entry_count()).finish()
    }
}

impl AnswerCache {
    pub fn new(limits: CacheLimits) -> Self {
        // Weighed in bytes, but never less than a share of `bytes` per allowed entry, so the weight bound also
        // bounds the number of entries: `entries` entries of the floor weight fill `bytes`.
        let floor = limits.bytes.checked_div(limits.entries).unwrap_or(u64::MAX);
        let weigher = move |_key: &Key, entry: &Arc<Entry>| -> u32 {
            let bytes = (entry.footprint() + MOKA_BYTES_PER_ENTRY) as u64;
            u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
        };
        let keeps_answers = limits.entries > 0 && limits.bytes > 0;
        let capacity = if keeps_answers { limits.bytes } else { 0 };
        let entries = Cache::builder().max_capacity(capacity).weigher(weigher).expire_after(KeepFor).build();
        Self { entries, keeps_answers }
    }

    pub fn keeps_answers(&self) -> bool {
        self.keeps_answers
    }

    /// The cached entry for `key`, or the one `fetch` makes (concurrent callers for one key share a single
    /// `fetch`). An entry found past its deadline or the token's `exp` at `now` (the node's clock, not moka's) is
    /// dropped and fetched again.
    pub async fn get_or_fetch<F>(&self, key: Key, now: Timestamp, fetch: F) -> Result<Arc<Entry>, Arc<IdpFailure>>
    where
        F: Future<Output = Result<Entry, IdpFailure>>,
    {
        self.get_or_fetch_from(key, now, fetch).await.0
    }

    /// [`Self::get_or_fetch`], and where the answer came from: the cache, `fetch`, or another request's fetch of
    /// the same key that this one waited for.
    pub async fn get_or_fetch_from<F>(
        &self,
        key: Key,
        now: Timestamp,
        fetch: F,
    ) -> (Result<Arc<Entry>, Arc<IdpFailure>>, CacheResult)
    where
        F: Future<Output = Result<Entry, IdpFailure>>,
    {
        if let Some(entry) = self.entries.get(&key).await {
            if entry.usable_at(now) {
                return (Ok(entry), CacheResult::Hit);
            }
            self.entries.invalidate(&key).await;
        }
        // moka runs one caller's future per key; the others wait for its result and never poll theirs.
        let fetched = AtomicBool::new(false);
        let result = self
            .entries
            .try_get_with(key, async {
                fetched.store(true, Ordering::Relaxed);
                fetch.await.map(Arc::new)
            })
            .await;
        let source = if fetched.load(Ordering::Relaxed) { CacheResult::Miss } else { CacheResult::Coalesced };
        (result, source)
    }

    #[cfg(test)]
    async fn len(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count()
    }

    #[cfg(test)]
    async fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.weighted_size()
    }
}

/// How a plugin instance turns a token into its cache key: SipHash-2-4 with a 128-bit output, keyed by a digest of
/// the introspection URL, the authorization value, the token type hint, the custom introspection headers and the
/// forwarded claims (each length-prefixed so no two configurations run together) mixed with a secret drawn once per
/// process.
///
/// Why not a plain SHA-256 of the token: on a cache hit the key is the plugin's largest cost (0.7 µs for a typical
/// 820-byte RS256 token against 0.4 µs for SipHash-2-4). A keyed hash is as good here, because a key is only ever
/// compared with other keys inside this process: without the secret, no one can make a token whose key equals a
/// cached one's any better than by guessing 128 bits. Keys never leave the process, and neither does the secret.
#[derive(Clone, Copy)]
pub struct Keyer {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for Keyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyer([redacted])")
    }
}

/// Drawn from the OS on first use. Every instance with the same configuration in this process gets the same key, so
/// workers share answers and answers survive configuration changes that do not touch these inputs.
fn process_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        // Without OS randomness the node cannot run safely at all (TLS and token signing need it too).
        getrandom::fill(&mut secret).expect("the OS random number generator is unavailable");
        secret
    })
}

impl Keyer {
    pub fn new(config: &gatehouse_model::gateway::plugins::oauth2_introspection::Config) -> Self {
        Self::with_secret(config, process_secret())
    }

    fn with_secret(config: &gatehouse_model::gateway::plugins::oauth2_introspection::Config, secret: &[u8]) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        // Every input framed unambiguously (lengths, counts, a tag for the optional hint), so no two different
        // configurations feed the same bytes.
        let mut field = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        let count = |n: usize| (n as u64).to_be_bytes();
        field(secret);
        field(config.introspection_url.as_bytes());
        field(config.authorization_value.expose().as_bytes());
        match config.token_type_hint.as_deref() {
            None => field(b"none"),
            Some(hint) => {
                field(b"some");
                field(hint.as_bytes());
            }
        }
        field(&count(config.custom_introspection_headers.len()));
        for (name, value) in &config.custom_introspection_headers {
            field(name.as_bytes());
            field(value.expose().as_bytes());
        }
        field(&count(config.custom_claims_forward.len()));
        for claim in &config.custom_claims_forward {
            field(claim.as_bytes());
        }
        let digest = ctx.finish();
        let half = |range: std::ops::Range<usize>| {
            u64::from_le_bytes(digest.as_ref()[range].try_into().expect("a SHA-256 digest has 32 bytes"))
        };
        Self { k0: half(0..8), k1: half(8..16) }
    }

    pub fn key(&self, token: &[u8]) -> Key {
        let mut hasher = SipHasher24::new_with_keys(self.k0, self.k1);
        // One write: SipHash's final block carries the total length, so no framing is needed.
        hasher.write(token);
        hasher.finish128().as_u128()
    }
}

/// How long an answer may be kept: `ttl` (0 = as long as the token lives) capped at the token's `exp`; an inactive
/// answer for `negative_ttl`.
pub fn keep_for(answer: &Introspected, ttl: Duration, negative_ttl: Duration, now: Timestamp) -> Duration {
    if !answer.active {
        return negative_ttl;
    }
    match answer.expires {
        Some(exp) => {
            let left = Duration::from_micros(u64::try_from(exp.micros().saturating_sub(now.micros())).unwrap_or(0));
            if ttl.is_zero() { left } else { ttl.min(left) }
        }
        None => ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// When the tests' answers arrive, on the clock the cache is given (any instant will do: nothing reads the
    /// machine's clock).
    const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn at(secs: i64) -> Timestamp {
        T0.plus_secs(secs)
    }

    /// One microsecond before `t`: the last instant an answer that lasts until `t` may be used.
    fn just_before(t: Timestamp) -> Timestamp {
        Timestamp::from_micros(t.micros() - 1)
    }

    fn answer(active: bool, expires: Option<Timestamp>) -> Introspected {
        Introspected { active, headers: HeaderMap::new(), username: None, client_id: None, expires }
    }

    fn with_headers(active: bool, expires: Option<Timestamp>) -> Introspected {
        let mut value = HeaderValue::from_static("read write");
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.append(HeaderName::from_static("x-credential-scope"), value);
        headers.append(HeaderName::from_bytes(b"x-credential-claim").unwrap(), HeaderValue::from_bytes(b"a").unwrap());
        Introspected { active, headers, username: Some("u".into()), client_id: Some("c".into()), expires }
    }

    #[test]
    fn recent_answers_are_private_copies_until_the_same_deadline() {
        let recent = RecentAnswers::default();
        let shared = Arc::new(Entry::new(with_headers(true, None), Duration::from_secs(60), T0));
        let copy = recent.keep(1, &shared, T0);
        assert_eq!(copy.answer.headers, shared.answer.headers);
        assert_eq!((copy.answer.username.as_deref(), copy.answer.client_id.as_deref()), (Some("u"), Some("c")));
        assert_eq!(copy.until, shared.until, "the shared entry's deadline");
        assert!(copy.answer.headers["x-credential-scope"].is_sensitive());
        for ((name, value), (shared_name, shared_value)) in copy.answer.headers.iter().zip(&shared.answer.headers) {
            assert_ne!(value.as_bytes().as_ptr(), shared_value.as_bytes().as_ptr(), "no shared buffer");
            assert_eq!(name, shared_name);
        }
        let found = recent.get(&1, T0).expect("kept");
        assert!(Arc::ptr_eq(&found, &copy));
        assert!(recent.get(&2, T0).is_none());
    }

    /// Deadlines are read from the clock the cache is given, to the microsecond: no waiting, nothing a loaded
    /// machine can stretch. (This test used to sleep 60 ms past a 40 ms deadline on the machine's clock.)
    #[test]
    fn recent_answers_expire_and_are_bounded() {
        let recent = RecentAnswers::default();
        let shared = |answer, keep_for| Arc::new(Entry::new(answer, keep_for, T0));
        // Not kept: nothing to keep, or a token already past its exp whatever the entry says.
        recent.keep(1, &shared(with_headers(true, None), Duration::ZERO), T0);
        recent.keep(2, &shared(with_headers(true, Some(at(-1))), Duration::from_secs(60)), T0);
        recent.keep(3, &shared(with_headers(true, Some(T0)), Duration::from_secs(60)), T0);
        assert_eq!(recent.len(), 0);
        // Kept until the entry's deadline, or the token's exp if sooner.
        recent.keep(4, &shared(with_headers(false, None), Duration::from_secs(40)), T0);
        recent.keep(5, &shared(with_headers(true, Some(at(40))), Duration::from_secs(60)), T0);
        // A copy made later than its entry still ends at the entry's deadline, not `keep_for` after the copy.
        recent.keep(6, &shared(with_headers(true, None), Duration::from_secs(40)), at(30));
        for key in [4, 5, 6] {
            assert!(recent.get(&key, just_before(at(40))).is_some(), "{key}: usable until its deadline");
        }
        for key in [4, 5, 6] {
            assert!(recent.get(&key, at(40)).is_none(), "{key}: not at its deadline");
        }
        assert_eq!(recent.len(), 0, "expired copies are dropped when looked up");
        assert!(recent.keep(7, &shared(with_headers(true, None), Duration::from_secs(40)), at(40)).until <= at(40));
        assert_eq!(recent.len(), 0, "an entry past its deadline when it would be copied is not");
        for key in 0..=RECENT_ANSWERS as Key {
            recent.keep(key, &shared(answer(true, None), Duration::from_secs(60)), T0);
        }
        assert!(recent.len() <= RECENT_ANSWERS);
    }

    /// What the allocator holds for `make`'s result, which is returned with it (only this thread is counted).
    fn allocated<T>(make: impl FnOnce() -> T) -> (T, usize) {
        let mut made = None;
        let info = allocation_counter::measure(|| made = Some(make()));
        (made.expect("made"), usize::try_from(info.bytes_current).unwrap_or(0))
    }

    /// An entry costs what its answer holds, as the allocator sees it, and its footprint says so within a few per
    /// cent. Before, every answer (inactive ones included) came with a 48-bucket header map, about 5.8 KB, and
    /// each worker's copy cost as much again.
    #[test]
    fn entries_cost_what_their_answer_holds() {
        let claims = super::super::idp::claim_headers(&["groups".into(), "tenant".into()]);
        // Claim names are shared with the entries made from them from their first clone on: take it here.
        drop(claims.clone());
        let active = json!({"active": true, "scope": "read write", "client_id": "client-1", "username": "alice",
            "token_type": "Bearer", "exp": 4_102_444_800_u64, "iat": 1_700_000_000, "nbf": 1_700_000_000,
            "sub": "alice", "aud": ["api", "admin"], "iss": "https://idp.example.com/", "tenant": "t-1",
            "jti": "0190a0a0-0000-7000-8000-000000000001", "groups": ["readers", "writers"]});
        let inactive = json!({"active": false});
        for (answer, at_most) in [(&inactive, 300), (&active, 3_000)] {
            let answer = answer.as_object().unwrap();
            let (entry, real) = allocated(|| {
                Arc::new(Entry::new(Introspected::from_answer(answer, &claims), Duration::from_secs(60), T0))
            });
            assert!(real <= at_most, "an entry for {answer:?} holds {real} bytes");
            let estimate = entry.footprint();
            assert!(estimate.abs_diff(real) * 20 <= real, "footprint {estimate} against {real} allocated");
            if entry.answer.active {
                assert_eq!(
                    entry.answer.headers.len(),
                    15,
                    "11 standard headers, 2 claims; aud and groups have two values"
                );
                assert_eq!(
                    entry.answer.headers.capacity(),
                    super::super::idp::credential_map().capacity(),
                    "the index keeps its room, so a request's headers move in without growing it"
                );
            }

            let recent = RecentAnswers::default();
            // The map's own table is made by the first copy; the second is measured alone.
            recent.keep(1, &entry, T0);
            let (copy, real) = allocated(|| recent.keep(2, &entry, T0));
            assert!(real <= at_most, "a worker's copy of {answer:?} holds {real} bytes");
            assert!(copy.footprint().abs_diff(real) * 20 <= real, "footprint {} against {real}", copy.footprint());
            assert_eq!(copy.answer.headers, entry.answer.headers);
            assert_eq!(recent.bytes(), 2 * (copy.footprint() + RECENT_SLOT_BYTES));
        }
    }

    /// Random tokens with `negative_ttl` fill the node's cache with inactive answers: the byte bound stops them,
    /// and the entry bound still holds.
    #[tokio::test]
    async fn the_node_cache_is_bounded_by_bytes_and_entries() {
        let limits = CacheLimits { entries: 1_000_000, bytes: 256 << 10 };
        let cache = AnswerCache::new(limits);
        let inactive = || async { Ok(Entry::new(answer(false, None), Duration::from_secs(60), T0)) };
        for key in 0..5_000 {
            cache.get_or_fetch(key, T0, inactive()).await.unwrap();
        }
        let per_entry = Entry::new(answer(false, None), Duration::ZERO, T0).footprint() + MOKA_BYTES_PER_ENTRY;
        let kept = cache.len().await;
        assert!(cache.weighted_size().await <= limits.bytes);
        assert!(kept <= limits.bytes / per_entry as u64, "{kept} entries of {per_entry} bytes");
        assert!(kept >= limits.bytes / per_entry as u64 / 2, "the bound is used: {kept}");

        let cache = AnswerCache::new(CacheLimits { entries: 100, bytes: 64 << 20 });
        for key in 0..1_000 {
            cache.get_or_fetch(key, T0, inactive()).await.unwrap();
        }
        assert!((50..=100).contains(&cache.len().await), "{}", cache.len().await);
        assert!(!AnswerCache::new(CacheLimits { entries: 100, bytes: 0 }).keeps_answers());
        assert!(!AnswerCache::new(CacheLimits { entries: 0, bytes: 1 << 20 }).keeps_answers());
    }

    /// Each worker's copies are bounded by bytes too: large answers (a 4 KiB claim each) stop well before 4,096.
    #[test]
    fn worker_copies_are_bounded_by_bytes() {
        let recent = RecentAnswers::default();
        let large = || {
            let mut headers = HeaderMap::new();
            headers.append("x-credential-groups", HeaderValue::from_bytes(&[b'g'; 4096]).unwrap());
            let answer = Introspected { active: true, headers, username: None, client_id: None, expires: None };
            Arc::new(Entry::new(answer, Duration::from_secs(60), T0))
        };
        for key in 0..RECENT_ANSWERS as Key {
            recent.keep(key, &large(), T0);
            assert!(recent.bytes() <= RECENT_ANSWERS_BYTES);
        }
        assert!(recent.len() <= RECENT_ANSWERS_BYTES / 4096, "{} copies of 4 KiB answers", recent.len());
        assert!(recent.get(&(RECENT_ANSWERS as Key - 1), T0).is_some(), "the latest is kept");
    }

    #[test]
    fn all_copies_on_the_node_are_bounded_however_many_instances() {
        let budget = Arc::new(CopyBudget::default());
        let large = |key: Key| {
            let mut headers = HeaderMap::new();
            headers.append("x-credential-groups", HeaderValue::from_bytes(&[b'g'; 4096]).unwrap());
            let answer = Introspected { active: true, headers, username: None, client_id: None, expires: None };
            (key, Arc::new(Entry::new(answer, Duration::from_secs(60), T0)))
        };
        // Twenty instances (a route each, say) filling their own 4 MiB would hold 80 MiB.
        let instances: Vec<RecentAnswers> = (0..20).map(|_| RecentAnswers::new(budget.clone())).collect();
        for (i, recent) in instances.iter().enumerate() {
            for key in 0..1024 {
                let (key, entry) = large(key);
                recent.keep(key, &entry, T0);
                assert!(budget.held() <= ALL_RECENT_ANSWERS_BYTES, "instance {i}");
            }
        }
        let held: usize = instances.iter().map(RecentAnswers::bytes).sum();
        assert_eq!(held, budget.held(), "the budget counts exactly what the instances hold");
        assert!(instances.last().unwrap().len() > 0, "a busy instance still gets copies");
        drop(instances);
        assert_eq!(budget.held(), 0, "dropped instances give their bytes back");
    }

    #[test]
    fn lifetimes() {
        let now = Timestamp::from_secs(1000);
        let s = Duration::from_secs;
        let exp = |t| Some(Timestamp::from_secs(t));
        assert_eq!(keep_for(&answer(true, exp(1005)), s(30), s(0), now), s(5), "capped at exp");
        assert_eq!(keep_for(&answer(true, exp(2000)), s(30), s(0), now), s(30));
        assert_eq!(keep_for(&answer(true, exp(2000)), s(0), s(0), now), s(1000), "ttl 0: until exp");
        assert_eq!(keep_for(&answer(true, None), s(0), s(9), now), s(0), "no exp and ttl 0: not kept");
        assert_eq!(keep_for(&answer(true, exp(900)), s(30), s(0), now), s(0), "already expired");
        assert_eq!(keep_for(&answer(false, exp(2000)), s(30), s(7), now), s(7), "inactive: negative_ttl");
    }

    fn config() -> gatehouse_model::gateway::plugins::oauth2_introspection::Config {
        serde_json::from_value(serde_json::json!({"introspection_url": "http://a/i", "ttl": 30,
            "authorization_value": "Basic x", "timeout": 1, "keepalive": 1, "introspect_request": false,
            "hide_credentials": false, "run_on_preflight": true, "anonymous": "", "consumer_by": "username",
            "custom_introspection_headers": {}, "custom_claims_forward": [], "token_type_hint": null}))
        .unwrap()
    }

    #[test]
    fn keys_depend_on_every_input() {
        let base = config();
        let key = |c: &gatehouse_model::gateway::plugins::oauth2_introspection::Config| Keyer::new(c).key(b"t");
        let mut variants = vec![key(&base)];
        let mut c = base.clone();
        c.introspection_url = "http://b/i".into();
        variants.push(key(&c));
        let mut c = base.clone();
        c.authorization_value = gatehouse_model::secret::SecretString::new("Basic y".into());
        variants.push(key(&c));
        let mut c = base.clone();
        c.token_type_hint = Some("access_token".into());
        variants.push(key(&c));
        let mut c = base.clone();
        c.custom_introspection_headers.insert("x".into(), gatehouse_model::secret::SecretString::new("1".into()));
        variants.push(key(&c));
        let mut c = base.clone();
        c.custom_claims_forward.push("x".into());
        variants.push(key(&c));
        // Inputs that would run together without framing: a header named like a marker against claims, and a
        // missing hint against a hint that spells a marker.
        let mut c = base.clone();
        c.custom_introspection_headers.insert("claims".into(), gatehouse_model::secret::SecretString::new("a".into()));
        variants.push(key(&c));
        let mut c = base.clone();
        c.custom_claims_forward.extend(["a".into(), "claims".into()]);
        variants.push(key(&c));
        let mut c = base.clone();
        c.token_type_hint = Some("\0none".into());
        variants.push(key(&c));
        let mut c = base.clone();
        c.token_type_hint = Some("none".into());
        variants.push(key(&c));
        variants.push(Keyer::new(&base).key(b"u"));
        variants.push(Keyer::new(&base).key(b"t\0"));
        variants.push(Keyer::new(&base).key(b""));
        let distinct: std::collections::HashSet<_> = variants.iter().collect();
        assert_eq!(distinct.len(), variants.len());
        let mut same = base.clone();
        same.ttl = 99.0;
        assert_eq!(key(&same), key(&base), "settings that do not change the answer share entries");
    }

    #[test]
    fn keys_are_secret_to_the_process_and_never_printed() {
        let base = config();
        let here = Keyer::new(&base);
        assert_eq!(here.key(b"t"), Keyer::new(&base).key(b"t"), "one secret per process");
        let elsewhere = Keyer::with_secret(&base, &[7; 32]);
        assert_ne!(here.key(b"t"), elsewhere.key(b"t"), "another process (another secret) gets other keys");
        assert_ne!(Keyer::with_secret(&base, &[8; 32]).key(b"t"), elsewhere.key(b"t"));
        assert_eq!(format!("{here:?}"), "Keyer([redacted])");
    }

    // Paused: the slow IdP's 50 ms pass at once. Every caller is polled (and waits on the first) before any sleep
    // can end, so the count does not depend on timing.
    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_fetch_once_and_failures_are_not_kept() {
        let cache = AnswerCache::new(CacheLimits { entries: 100, bytes: 1 << 20 });
        let calls = Arc::new(AtomicUsize::new(0));
        let fetch = |calls: Arc<AtomicUsize>| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Entry::new(answer(true, None), Duration::from_secs(60), T0))
        };
        let waits: Vec<_> = (0..50).map(|_| cache.get_or_fetch(1, T0, fetch(calls.clone()))).collect();
        for r in futures_util::future::join_all(waits).await {
            assert!(r.unwrap().answer.active);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let failing = || async { Err::<Entry, _>(IdpFailure::Timeout(Duration::from_secs(1))) };
        assert!(cache.get_or_fetch(2, T0, failing()).await.is_err());
        assert_eq!(cache.len().await, 1, "the failure was not kept");

        let zero = || async { Ok(Entry::new(answer(true, None), Duration::ZERO, T0)) };
        cache.get_or_fetch(3, T0, zero()).await.unwrap();
        calls.store(0, Ordering::SeqCst);
        cache.get_or_fetch(3, T0, fetch(calls.clone())).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "an entry kept for zero is fetched again");
    }

    /// Where answers came from, as `gatehouse_introspection_cache_total` counts them: one caller fetched, the
    /// others waited for it, and the next found it cached.
    #[tokio::test(start_paused = true)]
    async fn sources_tell_the_fetch_from_the_waits_and_the_hits() {
        let cache = AnswerCache::new(CacheLimits { entries: 100, bytes: 1 << 20 });
        let fetch = || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Entry::new(answer(true, None), Duration::from_secs(60), T0))
        };
        let waits: Vec<_> = (0..5).map(|_| cache.get_or_fetch_from(1, T0, fetch())).collect();
        let mut sources: Vec<_> = futures_util::future::join_all(waits).await.into_iter().map(|(_, s)| s).collect();
        sources.sort_by_key(|s| *s as usize);
        assert_eq!(
            sources,
            [
                CacheResult::Miss,
                CacheResult::Coalesced,
                CacheResult::Coalesced,
                CacheResult::Coalesced,
                CacheResult::Coalesced
            ]
        );
        assert_eq!(cache.get_or_fetch_from(1, T0, fetch()).await.1, CacheResult::Hit);
        let failing = || async { Err::<Entry, _>(IdpFailure::Timeout(Duration::from_secs(1))) };
        assert_eq!(cache.get_or_fetch_from(2, T0, failing()).await.1, CacheResult::Miss, "a failed fetch is a miss");
    }

    /// Whether a node's entry may be used is decided by the clock the cache is given, on every hit: moka's own
    /// expiry (its monotonic time) would keep these entries for an hour.
    #[tokio::test]
    async fn an_answer_is_never_used_past_exp_or_its_deadline_by_the_nodes_clock() {
        let cache = AnswerCache::new(CacheLimits { entries: 100, bytes: 1 << 20 });
        let fetches = Arc::new(AtomicUsize::new(0));
        let fetch = |active, expires, keep_for| {
            let fetches = fetches.clone();
            async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                Ok(Entry::new(answer(active, expires), keep_for, T0))
            }
        };
        let hour = Duration::from_secs(3600);
        // Kept for an hour by mistake, but the token's exp (T0 + 10 s) comes first.
        assert!(cache.get_or_fetch(4, T0, fetch(true, Some(at(10)), hour)).await.unwrap().answer.active);
        let hit = cache.get_or_fetch(4, just_before(at(10)), fetch(false, None, Duration::ZERO)).await.unwrap();
        assert!(hit.answer.active, "served from the cache until exp");
        let refetched = cache.get_or_fetch(4, at(10), fetch(false, None, Duration::ZERO)).await.unwrap();
        assert!(!refetched.answer.active, "fetched again at exp");
        // `ttl` (30 s, no exp) is the node's clock's too.
        assert!(cache.get_or_fetch(5, T0, fetch(true, None, Duration::from_secs(30))).await.unwrap().answer.active);
        assert!(cache.get_or_fetch(5, at(29), fetch(false, None, hour)).await.unwrap().answer.active);
        assert!(!cache.get_or_fetch(5, at(30), fetch(false, None, hour)).await.unwrap().answer.active);
        assert_eq!(fetches.load(Ordering::SeqCst), 4, "two misses, two lapses; the hits fetched nothing");
    }
}
