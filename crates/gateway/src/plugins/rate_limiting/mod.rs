//! `rate-limiting` (priority 910): counts requests per identifier in Kong's calendar windows (second … year) and
//! answers `error_code` once a window's limit is spent, with Kong's `RateLimit-*`, `X-RateLimit-*-<Period>` and
//! `Retry-After` headers.
//!
//! Where the counts live is the policy's business (`crate::counters`); this module decides what is counted and
//! when a request is over. The decision is made on the value an atomic increment returns, never on a value read
//! earlier, so concurrent requests (32 connections, two workers, several nodes on one store) cannot all slip
//! under the limit: a window accepts exactly `limit` requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderName, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value, json};
use smallvec::SmallVec;

use gatehouse_model::SharedClock;
use gatehouse_model::gateway::plugins::rate_limiting::{Config, INFO, LimitBy, NAME, PolicyName};

use super::{Credential, Flow, Phases, Plugin, PluginDef, RequestContext, ResponseContext, Shared};
use crate::counters::{CounterError, CounterKey, Counters, Period, Policy, RedisSettings};
use crate::error::ProxyError;

#[cfg(test)]
mod tests;

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: true, response: true, rewrite: false, log: false },
    build: |config, shared| Ok(Arc::new(RateLimiting::new(config, shared)?)),
};

/// Kong's window lengths (`expiration.lua`), which also order two periods with equal remaining requests when the
/// `RateLimit-*` headers choose one: the longer window wins.
const fn window_length(period: Period) -> i64 {
    match period {
        Period::Second => 1,
        Period::Minute => 60,
        Period::Hour => 3600,
        Period::Day => 86400,
        Period::Month => 2_592_000,
        Period::Year => 31_536_000,
    }
}

// Statics, not consts: indexing a const array builds (and drops) the whole array at every use.
static LIMIT_HEADERS: [HeaderName; 6] = [
    HeaderName::from_static("x-ratelimit-limit-second"),
    HeaderName::from_static("x-ratelimit-limit-minute"),
    HeaderName::from_static("x-ratelimit-limit-hour"),
    HeaderName::from_static("x-ratelimit-limit-day"),
    HeaderName::from_static("x-ratelimit-limit-month"),
    HeaderName::from_static("x-ratelimit-limit-year"),
];
static REMAINING_HEADERS: [HeaderName; 6] = [
    HeaderName::from_static("x-ratelimit-remaining-second"),
    HeaderName::from_static("x-ratelimit-remaining-minute"),
    HeaderName::from_static("x-ratelimit-remaining-hour"),
    HeaderName::from_static("x-ratelimit-remaining-day"),
    HeaderName::from_static("x-ratelimit-remaining-month"),
    HeaderName::from_static("x-ratelimit-remaining-year"),
];
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// What every instance on the node shares: failures of a counters' store are logged at most once per
/// [`FailureLog::INTERVAL_SECS`], however many requests hit them.
#[derive(Debug, Default)]
pub struct NodeState {
    pub failures: FailureLog,
}

#[derive(Debug, Default)]
pub struct FailureLog {
    /// The second from which the next failure is logged.
    next_at: AtomicI64,
    /// Failures not logged since the last line.
    suppressed: AtomicU64,
}

impl FailureLog {
    pub const INTERVAL_SECS: i64 = 10;

    /// Whether a failure at `now` (unix seconds) is logged: `Some(failures left unlogged since the last line)`.
    pub fn should_log(&self, now: i64) -> Option<u64> {
        let next = self.next_at.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_at
                .compare_exchange(next, now.saturating_add(Self::INTERVAL_SECS), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[derive(Debug)]
pub struct RateLimiting {
    /// The configured periods, shortest first, with their limits.
    limits: SmallVec<[(Period, f64); 6]>,
    /// The limits as the header values that announce them, by period.
    limit_values: [Option<HeaderValue>; 6],
    limit_by: LimitBy,
    header_name: Option<HeaderName>,
    path: Option<String>,
    /// The instance's scope: its counters are its own (Kong's `conf.route_id` / `conf.service_id`).
    route_id: Option<uuid::Uuid>,
    service_id: Option<uuid::Uuid>,
    counters: Arc<dyn Counters>,
    /// Kong's redis policy counts every request, refused ones too (its usage query increments); the others
    /// count only what they let through.
    counts_refused: bool,
    fault_tolerant: bool,
    hide_client_headers: bool,
    error_code: StatusCode,
    error_message: String,
    clock: SharedClock,
    node: Arc<NodeState>,
}

impl RateLimiting {
    pub fn new(config: &Map<String, Value>, shared: &Shared) -> Result<Self, String> {
        let scope = |key: &str| -> Result<Option<uuid::Uuid>, String> {
            match config.get(key).and_then(Value::as_str) {
                Some(id) => id.parse().map(Some).map_err(|_| format!("{key} is not a UUID")),
                None => Ok(None),
            }
        };
        let (route_id, service_id) = (scope("route_id")?, scope("service_id")?);
        let parsed: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let limits: SmallVec<[(Period, f64); 6]> =
            Period::ALL.into_iter().zip(parsed.limits()).filter_map(|(p, l)| Some((p, l?))).collect();
        if limits.is_empty() {
            return Err("no limit is configured (second … year)".into());
        }
        let header_name = match (&parsed.limit_by, &parsed.header_name) {
            // Kong reads it as nginx's `$http_<name>`, where `_` stands for `-`: `X_Tenant` is `X-Tenant`.
            (LimitBy::Header, Some(name)) => {
                Some(HeaderName::try_from(name.replace('_', "-")).map_err(|_| format!("invalid header_name: {name}"))?)
            }
            _ => None,
        };
        let policy = match parsed.policy {
            PolicyName::Local => Policy::Local,
            PolicyName::Cluster => Policy::Cluster,
            PolicyName::Redis => {
                let redis = &parsed.redis;
                Policy::Redis(RedisSettings {
                    host: redis.host.clone().ok_or("redis.host is required by the redis policy")?,
                    port: redis.port,
                    username: redis.username.clone(),
                    password: redis.password.clone(),
                    database: redis.database,
                    timeout_ms: redis.timeout,
                    ssl: redis.ssl,
                    ssl_verify: redis.ssl_verify,
                    server_name: redis.server_name.clone(),
                })
            }
        };
        let counters = shared.counters.get(&policy, parsed.sync_rate)?;
        let error_code = u16::try_from(parsed.error_code as i64)
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or_else(|| format!("error_code {} is not an HTTP status", parsed.error_code))?;
        let mut limit_values: [Option<HeaderValue>; 6] = Default::default();
        for &(period, limit) in &limits {
            limit_values[period as usize] = Some(number(limit));
        }
        Ok(Self {
            limits,
            limit_values,
            limit_by: parsed.limit_by,
            header_name,
            path: parsed.path,
            route_id,
            service_id,
            counters,
            counts_refused: parsed.policy == PolicyName::Redis,
            fault_tolerant: parsed.fault_tolerant,
            hide_client_headers: parsed.hide_client_headers,
            error_code,
            error_message: parsed.error_message,
            clock: shared.clock.clone(),
            node: shared.rate_limiting.clone(),
        })
    }

    /// What the request is counted by, with Kong's fallback to the client address (`get_identifier`).
    fn identifier(&self, ctx: &RequestContext<'_>) -> String {
        let found = match self.limit_by {
            LimitBy::Ip => None,
            LimitBy::Service => ctx.route.service_id.map(|id| id.to_string()),
            LimitBy::Consumer => {
                ctx.consumer.as_ref().map(|c| c.id.to_string()).or_else(|| ctx.credential.as_ref().map(credential_id))
            }
            LimitBy::Credential => ctx.credential.as_ref().map(credential_id),
            LimitBy::Header => self.header_name.as_ref().and_then(|name| ctx.headers.get(name)).map(|v| {
                // A client chooses this value: past a bound, its digest stands in, so a count costs the same
                // whatever the client sends.
                if v.len() > MAX_IDENTIFIER {
                    digest_hex(v.as_bytes())
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                }
            }),
            LimitBy::Path => (self.path.as_deref() == Some(ctx.path)).then(|| ctx.path.to_owned()),
        };
        found.unwrap_or_else(|| ctx.client_ip.to_string())
    }

    /// The request's counts before it, per configured period (in `limits` order); refused requests of the
    /// local and cluster policies are not counted, as in Kong.
    async fn usage(&self, keys: &[CounterKey]) -> Result<Usage, CounterError> {
        if !self.counts_refused {
            // Refused requests are not counted: the store checks and counts in one step where it can.
            let limits: SmallVec<[f64; 6]> = self.limits.iter().map(|&(_, limit)| limit).collect();
            let before = self.counters.count_within(keys, &limits).await?;
            return Ok(self.usage_of(&before));
        }
        let after = self.counters.increment(keys, 1).await?;
        let before: SmallVec<[u64; 6]> = after.iter().map(|v| v.saturating_sub(1)).collect();
        Ok(self.usage_of(&before))
    }

    fn usage_of(&self, before: &[u64]) -> Usage {
        let mut usage = Usage::default();
        for (&(period, limit), &count) in self.limits.iter().zip(before) {
            // Kong compares what is left before this request: nothing left stops it (a fractional limit lets
            // through the request that starts below it).
            let remaining = limit - count as f64;
            usage.stopped |= remaining <= 0.0;
            usage.periods.push((period, limit, remaining));
        }
        usage
    }

    fn fail(&self, ctx: &RequestContext<'_>, now: i64, error: &CounterError) -> Flow {
        if let Some(suppressed) = self.node.failures.should_log(now) {
            tracing::error!(request_id = ctx.request_id, %error, suppressed, fault_tolerant = self.fault_tolerant,
                "rate-limiting: the counters' store failed; requests are {} (logged once per {}s)",
                if self.fault_tolerant { "let through unlimited" } else { "answered 500" }, FailureLog::INTERVAL_SECS);
        }
        if self.fault_tolerant {
            Flow::Continue
        } else {
            Flow::Respond(ProxyError::Internal.to_response(ctx.request_id))
        }
    }
}

/// The longest header value counted by itself (`limit_by = header`); longer ones are counted by their digest.
const MAX_IDENTIFIER: usize = 128;

/// Kong keys `limit_by = credential` on the credential's id; a token plugin's credential is the token itself,
/// which must not become a key in a shared store (Redis, the database), so its SHA-256 stands in for it.
fn credential_id(credential: &Credential) -> String {
    digest_hex(credential.expose_bytes())
}

/// The first 128 bits of `bytes`' SHA-256, in hex.
fn digest_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut id = String::with_capacity(32);
    for byte in &digest.as_ref()[..16] {
        id.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        id.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    id
}

/// The counts of one request, and the headers they make.
#[derive(Debug, Default)]
struct Usage {
    /// (period, limit, remaining before this request), in `limits` order.
    periods: SmallVec<[(Period, f64, f64); 6]>,
    stopped: bool,
}

/// Kong's client headers, kept in the plugin's slot between `access` and `response`.
#[derive(Debug)]
struct ClientHeaders {
    /// (period, remaining after this request) for every configured period.
    periods: SmallVec<[(Period, f64); 6]>,
    /// The period with the least remaining (ties: the longer window), its remaining and seconds to its end.
    chosen: Period,
    remaining: f64,
    reset: i64,
}

impl Usage {
    fn headers(&self, now: i64) -> ClientHeaders {
        let mut chosen: Option<(Period, f64, i64, i64)> = None;
        let mut periods = SmallVec::new();
        for &(period, _, remaining) in &self.periods {
            // A request that passes counts against every period; a stopped one only against those spent.
            let shown = if !self.stopped || remaining <= 0.0 { remaining - 1.0 } else { remaining };
            let shown = shown.max(0.0);
            let window = window_length(period);
            let better =
                chosen.is_none_or(|(_, least, longest, _)| shown < least || (shown == least && window > longest));
            if better {
                let (_, end) = bounds(period, now);
                chosen = Some((period, shown, window, (end - now).max(1)));
            }
            periods.push((period, shown));
        }
        let (chosen, remaining, _, reset) = chosen.unwrap_or((Period::Second, 0.0, 0, 1));
        ClientHeaders { periods, chosen, remaining, reset }
    }
}

impl ClientHeaders {
    /// `limits`: the instance's limits as header values, by period (made once, when the instance is built).
    fn apply(&self, limits: &[Option<HeaderValue>; 6], headers: &mut HeaderMap) {
        let limit = |period: Period| limits[period as usize].clone().unwrap_or(HeaderValue::from_static("0"));
        for &(period, remaining) in &self.periods {
            let i = period as usize;
            headers.insert(LIMIT_HEADERS[i].clone(), limit(period));
            headers.insert(REMAINING_HEADERS[i].clone(), number(remaining));
        }
        headers.insert(RATELIMIT_LIMIT, limit(self.chosen));
        headers.insert(RATELIMIT_REMAINING, number(self.remaining));
        headers.insert(RATELIMIT_RESET, HeaderValue::from(self.reset));
    }
}

/// A limit as Kong prints it (`tostring`): whole numbers without a fraction.
fn number(n: f64) -> HeaderValue {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        HeaderValue::from(n as i64)
    } else {
        HeaderValue::from_str(&n.to_string()).unwrap_or(HeaderValue::from_static("0"))
    }
}

/// The window of `period` that holds `now` (unix seconds, UTC), as Kong's `timestamp.get_timestamps` aligns
/// it: on the second, minute, hour, day, first of the month, first of the year. Returns (start, end).
pub fn bounds(period: Period, now: i64) -> (i64, i64) {
    let aligned = |len: i64| {
        let start = now - now.rem_euclid(len);
        (start, start + len)
    };
    match period {
        Period::Second => (now, now + 1),
        Period::Minute => aligned(60),
        Period::Hour => aligned(3600),
        Period::Day => aligned(86400),
        Period::Month => {
            let (year, month, _) = civil_from_days(now.div_euclid(86400));
            let next = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
            (days_from_civil(year, month, 1) * 86400, days_from_civil(next.0, next.1, 1) * 86400)
        }
        Period::Year => {
            let (year, _, _) = civil_from_days(now.div_euclid(86400));
            (days_from_civil(year, 1, 1) * 86400, days_from_civil(year + 1, 1, 1) * 86400)
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[async_trait]
impl Plugin for RateLimiting {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        let now = self.clock.get().now().secs();
        let mut identifier = Some(self.identifier(ctx));
        let last = self.limits.len() - 1;
        let keys: SmallVec<[CounterKey; 2]> = self
            .limits
            .iter()
            .enumerate()
            .map(|(i, &(period, _))| {
                let (window_start, expires_at) = bounds(period, now);
                // Each key owns its identifier; the last one takes it, so a single limit copies nothing.
                let identifier = if i == last { identifier.take() } else { identifier.clone() }.unwrap_or_default();
                CounterKey {
                    route_id: self.route_id,
                    service_id: self.service_id,
                    identifier,
                    period,
                    window_start,
                    expires_at,
                }
            })
            .collect();
        let usage = match self.usage(&keys).await {
            Ok(usage) => usage,
            Err(error) => return self.fail(ctx, now, &error),
        };
        let headers = (!self.hide_client_headers).then(|| usage.headers(now));
        if usage.stopped {
            let body = json!({"message": self.error_message, "request_id": ctx.request_id});
            let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
            *response.status_mut() = self.error_code;
            let h = response.headers_mut();
            h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
            if let Some(headers) = headers {
                headers.apply(&self.limit_values, h);
                h.insert(RETRY_AFTER, HeaderValue::from(headers.reset));
            }
            return Flow::Respond(response);
        }
        if let Some(headers) = headers {
            ctx.slots.set(NAME, headers);
        }
        Flow::Continue
    }

    fn response(&self, ctx: &mut ResponseContext<'_>) {
        if let Some(headers) = ctx.slots.get::<ClientHeaders>(NAME) {
            headers.apply(&self.limit_values, ctx.headers);
        }
    }
}
