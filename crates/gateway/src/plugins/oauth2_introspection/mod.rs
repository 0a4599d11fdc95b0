//! `oauth2-introspection` (priority 1700, `access` phase): authenticates a request by asking an RFC 7662
//! introspection endpoint about its bearer token, maps the answer to a consumer and passes it upstream as
//! `X-Credential-*` / `X-Consumer-*` headers, as Kong's Enterprise plugin does.
//!
//! Where Kong's plugin is weak, this one is safe by default (SPEC §4.1): the cache in [`cache`], IdP failures that
//! answer the generic `invalid_token` (their detail goes to the log), spoofed identity headers always removed, and
//! bodies looked into only when small and of a form, JSON or multipart type ([`token`]).

mod cache;
mod idp;
pub(crate) mod token;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::header::HeaderName;
use http::{Method, Response};
use serde_json::{Value, json};

use gatehouse_model::gateway::plugins::oauth2_introspection::{Config, ConsumerBy, INFO, NAME};
use gatehouse_model::metrics::gatehouse::{CacheResult, GatehouseMetrics};
use gatehouse_model::{Clock, SharedClock};

use super::{Credential, Flow, Phases, Plugin, PluginDef, RequestContext, auth};
use crate::consumers::Consumer;
use crate::error::ProxyError;

pub use cache::{AnswerCache, CacheLimits};
pub use idp::{BodySummary, Clients};

/// This request's IdP call, when traced: when it started and ended, the IdP's status, and whether it failed.
type IdpCall = std::sync::OnceLock<(tokio::time::Instant, tokio::time::Instant, Option<u16>, bool)>;

const MISSING_TOKEN: &str = "The access token is missing";
const INVALID_TOKEN: &str = "The access token is invalid or has expired";

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: true, rewrite: false, response: false, log: false },
    build: |config, shared| Ok(Arc::new(OAuth2Introspection::new(config, &shared.introspection)?)),
};

/// What every instance on the node shares: the answer cache and the HTTP clients, both kept across configuration
/// changes, and the clock that decides when an answer has expired.
#[derive(Debug)]
pub struct Shared {
    pub cache: AnswerCache,
    pub clients: Arc<Clients>,
    /// What the workers' private copies hold, across every instance.
    pub copies: Arc<cache::CopyBudget>,
    /// Wall time, against which answers' `exp` and deadlines are checked on every hit.
    pub clock: SharedClock,
    /// The node's `gatehouse_introspection_…` families: where answers came from, the IdP's latency and failures.
    pub metrics: Arc<GatehouseMetrics>,
}

impl Shared {
    pub fn new(limits: CacheLimits, clock: SharedClock, metrics: Arc<GatehouseMetrics>) -> Self {
        Self { cache: AnswerCache::new(limits), clients: Arc::default(), copies: Arc::default(), clock, metrics }
    }
}

#[derive(Debug)]
pub struct OAuth2Introspection {
    config: Config,
    idp: idp::Idp,
    keyer: cache::Keyer,
    recent: cache::RecentAnswers,
    claims: Vec<(String, HeaderName)>,
    ttl: Duration,
    negative_ttl: Duration,
    shared: Arc<Shared>,
}

/// Seconds as configured (fractions allowed) to a duration; absurd values are capped at a year.
fn seconds(value: f64) -> Duration {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    Duration::try_from_secs_f64(value.clamp(0.0, YEAR)).unwrap_or(Duration::ZERO)
}

impl OAuth2Introspection {
    pub fn new(config: &serde_json::Map<String, Value>, shared: &Arc<Shared>) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        Ok(Self {
            idp: idp::Idp::new(&shared.clients, &config)?,
            keyer: cache::Keyer::new(&config),
            recent: cache::RecentAnswers::new(shared.copies.clone()),
            claims: idp::claim_headers(&config.custom_claims_forward),
            ttl: seconds(config.ttl),
            negative_ttl: seconds(config.negative_ttl),
            shared: shared.clone(),
            config,
        })
    }

    /// The answer for `token`: from this worker's recent answers, else from the node's cache or the IdP (one call
    /// however many requests ask at once). With `introspect_request` the answer depends on the request, so it is
    /// neither cached nor shared.
    ///
    /// `call`, given when the request is traced, is filled if this request's own IdP call was made (not when the
    /// answer was cached or another request's call was awaited).
    async fn answer(
        &self,
        ctx: &RequestContext<'_>,
        token: &Credential,
        call: Option<&IdpCall>,
    ) -> Result<Arc<cache::Entry>, Arc<idp::IdpFailure>> {
        if self.config.introspect_request {
            self.shared.metrics.record_cache(CacheResult::Uncached);
            let fetch = self.fetch(token.expose(), Some((ctx.method, ctx.path)), ctx.request_id, call);
            return Box::pin(fetch).await.map(Arc::new).map_err(Arc::new);
        }
        let key = self.keyer.key(token.expose_bytes());
        let now = self.shared.clock.now();
        if let Some(recent) = self.recent.get(&key, now) {
            self.shared.metrics.record_cache(CacheResult::Hit);
            return Ok(recent);
        }
        // Boxed: the cache's and the HTTP client's futures are large, and a hit should not carry them.
        Box::pin(self.answer_from_node(key, now, token.expose(), ctx.request_id, call)).await
    }

    async fn answer_from_node(
        &self,
        key: cache::Key,
        now: gatehouse_model::Timestamp,
        token: &str,
        request_id: &str,
        call: Option<&IdpCall>,
    ) -> Result<Arc<cache::Entry>, Arc<idp::IdpFailure>> {
        let fetch = self.fetch(token, None, request_id, call);
        let (entry, source) = self.shared.cache.get_or_fetch_from(key, now, fetch).await;
        self.shared.metrics.record_cache(source);
        let entry = entry?;
        if !self.shared.cache.keeps_answers() {
            return Ok(entry);
        }
        // Read again: the IdP may have taken a while, and a copy must not outlive what the clock says now.
        Ok(self.recent.keep(key, &entry, self.shared.clock.now()))
    }

    /// Asks the IdP; `request_id` is the proxied request's, so the IdP's log line for the call carries it.
    async fn fetch(
        &self,
        token: &str,
        request: Option<(&Method, &str)>,
        request_id: &str,
        call: Option<&IdpCall>,
    ) -> Result<cache::Entry, idp::IdpFailure> {
        let started = tokio::time::Instant::now();
        let answer = self.idp.introspect(token, request, request_id).await;
        let metrics = &self.shared.metrics;
        metrics.introspection_idp.observe(&[], started.elapsed().as_secs_f64());
        if let Err(failure) = &answer {
            metrics.introspection_idp_failures.add(failure.metric_kind(), 1);
        }
        if let Some(call) = call {
            let status = match &answer {
                Ok(_) => Some(200),
                Err(idp::IdpFailure::Status { status, .. }) => Some(*status),
                Err(_) => None,
            };
            let _ = call.set((started, tokio::time::Instant::now(), status, answer.is_err()));
        }
        let answer = answer?;
        let answer = idp::Introspected::from_answer(&answer, &self.claims);
        let arrived = self.shared.clock.now();
        let keep_for = cache::keep_for(&answer, self.ttl, self.negative_ttl, arrived);
        Ok(cache::Entry::new(answer, keep_for, arrived))
    }

    /// Authentication failed: with `anonymous`, the request goes on as that consumer; without, Kong's 401.
    fn fail(&self, ctx: &mut RequestContext<'_>, invalid: bool) -> Flow {
        if !self.config.anonymous.is_empty() {
            return auth::as_anonymous(ctx, &self.config.anonymous, NAME);
        }
        if invalid {
            auth::unauthorized(
                &json!({"error": "invalid_token", "error_description": INVALID_TOKEN}),
                // Kong's header, separators and all.
                concat!(
                    r#"Bearer realm="service" error="invalid_token" "#,
                    r#"error_description="The access token is invalid or has expired""#
                ),
            )
        } else {
            auth::unauthorized(
                &json!({"error": "invalid_request", "error_description": MISSING_TOKEN}),
                r#"Bearer realm="service""#,
            )
        }
    }

    fn consumer_of(&self, ctx: &RequestContext<'_>, answer: &idp::Introspected) -> Option<Arc<Consumer>> {
        match self.config.consumer_by {
            ConsumerBy::Username => ctx.consumers.by_username(answer.username.as_deref()?),
            ConsumerBy::ClientId => ctx.consumers.by_custom_id(answer.client_id.as_deref()?),
        }
        .cloned()
    }
}

#[async_trait]
impl Plugin for OAuth2Introspection {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        // "Logical OR": with `anonymous` set, a request another authentication plugin already accepted passes.
        if auth::accepted_by_another(&self.config.anonymous, ctx) {
            return Flow::Continue;
        }
        auth::remove_spoofed(ctx.headers);
        if !self.config.run_on_preflight && ctx.method == Method::OPTIONS {
            return Flow::Continue;
        }
        let found = match token::find(ctx).await {
            Ok(found) => found,
            Err(e) => return bad_request(ctx, &e),
        };
        let Some(found) = found else {
            tracing::debug!(request_id = ctx.request_id, "oauth2-introspection: no access token");
            return self.fail(ctx, false);
        };
        // As in Kong, the token is hidden as soon as it is found, whatever its answer: a request that goes on as
        // the anonymous consumer must not carry a token the operator asked to hide either.
        if self.config.hide_credentials
            && let Err(e) = token::hide(ctx, found.source).await
        {
            return bad_request(ctx, &e);
        }
        let call = ctx.trace.is_some().then(IdpCall::new);
        let entry = self.answer(ctx, &found.token, call.as_ref()).await;
        if let (Some(trace), Some(&(start, end, status, error))) =
            (ctx.trace.as_mut(), call.as_ref().and_then(|c| c.get()))
        {
            trace.internal_request(start, end, self.idp.span_attributes(status), error);
        }
        let entry = match entry {
            Ok(entry) => entry,
            Err(failure) => {
                // The detail (the IdP's status and body) is for operators; the client gets the generic answer.
                tracing::warn!(request_id = ctx.request_id, error = %failure, "oauth2-introspection: introspection failed");
                return self.fail(ctx, true);
            }
        };
        let answer = &entry.answer;
        if !answer.active {
            tracing::info!(request_id = ctx.request_id, "oauth2-introspection: inactive token");
            return self.fail(ctx, true);
        }
        if !answer.headers.is_empty() {
            idp::with_credentials(ctx.headers, &answer.headers);
        }
        let consumer = self.consumer_of(ctx, answer);
        if let Some(consumer) = &consumer {
            auth::set_consumer_headers(ctx.headers, consumer);
        }
        ctx.consumer = consumer;
        // Kong's credential id is the token itself (rate limiting by credential keys on it).
        ctx.credential = Some(found.token);
        Flow::Continue
    }
}

fn bad_request(ctx: &RequestContext<'_>, error: &token::BadBody) -> Flow {
    tracing::info!(request_id = ctx.request_id, error = %error, "oauth2-introspection: unreadable body");
    let (parts, body) = ProxyError::BadRequest.to_response(ctx.request_id).into_parts();
    Flow::Respond(Response::from_parts(parts, body))
}
