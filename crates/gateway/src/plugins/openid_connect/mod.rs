//! `openid-connect` (priority 1050, `access` phase), its bearer-token path: a JWT is validated locally against the
//! issuer's published keys (no IdP call on the hot path); an opaque token, or every JWT with
//! `introspect_jwt_tokens`, is checked at the introspection endpoint. The claims then decide the consumer, the
//! credential, and what goes upstream, as Kong's Enterprise plugin does.
//!
//! Local validation means a revoked token keeps validating until it expires; `introspect_jwt_tokens` (or the
//! `oauth2-introspection` plugin) is the answer when that matters.
//!
//! The token comes from the request ([`token`]) or, with the `client_credentials` method, from the token endpoint:
//! the caller presents a client id and secret ([`client_credentials`]), the plugin obtains a token for that client
//! (cached per credential by the node's token client) and validates it like a bearer token, with the same
//! [`OpenidConnect::claims_of`], consumer mapping and upstream headers. The upstream gets the obtained token, never
//! the caller's credentials. As in Kong, a bearer token takes precedence: the credentials are looked for only when
//! the request carries no bearer token (or `bearer` and `introspection` are both disabled).

mod claims;
mod client_credentials;
mod http;
mod introspect;
mod keys;
mod token;

use std::sync::Arc;
use std::time::Duration;

use ::http::header::{self, HeaderName, HeaderValue};
use ::http::{Method, Response, StatusCode};
use async_trait::async_trait;
use base64::Engine;
use serde_json::{Map, Value, json};
use siphasher::sip128::{Hasher128 as _, SipHasher24};

use gatehouse_model::gateway::plugins::openid_connect::{Config, INFO, NAME};
use gatehouse_model::{Clock, SharedClock, Timestamp};

use super::token_client::{ClientAuth, Grant, Token, TokenClient, TokenError, TokenRequest};
use super::{Credential, Flow, Phases, Plugin, PluginDef, RequestContext, auth};
use crate::consumers::Consumer;
use crate::error::ProxyError;

pub use http::Clients;

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: true, rewrite: false, response: false, log: false },
    build: |config, shared| Ok(Arc::new(OpenidConnect::new(config, &shared.openid_connect, &shared.tokens)?)),
};

/// The most verified tokens the node keeps (each until its `exp`).
const VERIFIED_TOKENS: u64 = 50_000;
/// The most private copies one instance (one proxy worker) keeps.
const RECENT_VERIFIED: usize = 1024;

/// What every instance on the node shares, kept across configuration changes: issuers' keys, HTTP clients,
/// introspection answers and verified tokens, and the clock tokens expire by.
#[derive(Debug)]
pub struct Shared {
    pub issuers: keys::Issuers,
    pub clients: Clients,
    pub introspection: introspect::AnswerCache,
    /// Tokens whose signature verified, by a keyed digest of the token and of what it was verified against: a
    /// repeated token costs a lookup instead of a signature check. Claims are checked again on every request.
    verified: moka::sync::Cache<u128, Arc<Verified>>,
    /// The digest's key, random per node, so no one can aim tokens at one entry.
    digest_key: [u8; 16],
    pub clock: SharedClock,
}

impl Shared {
    pub fn new(clock: SharedClock) -> Self {
        let mut digest_key = [0u8; 16];
        // A failing system RNG leaves the key zero: digests stay 128-bit, only predictable.
        let _ = getrandom::fill(&mut digest_key);
        Self {
            issuers: keys::Issuers::default(),
            clients: Clients::default(),
            introspection: introspect::AnswerCache::default(),
            verified: moka::sync::Cache::builder().max_capacity(VERIFIED_TOKENS).build(),
            digest_key,
            clock,
        }
    }
}

/// A token whose signature verified, with its claims.
#[derive(Debug)]
struct Verified {
    claims: Arc<Map<String, Value>>,
    /// The `exp` claim, for the cache: an entry is never used after it.
    exp: Option<f64>,
    /// The issuer whose keys verified it (its discovered `iss`).
    issuer: String,
}

/// An obtained token is not handed out once it expires within this margin: it has to outlive the request.
const RENEW_MARGIN: Duration = Duration::from_secs(5);
/// The lifetime of an obtained token whose answer says neither `expires_in` nor (a JWT's) `exp`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// Why a request is not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No token: 401 without an error code.
    Missing,
    /// 401 `invalid_token`, with a reason only `display_errors` shows.
    Invalid(&'static str),
    /// 403 `insufficient_scope`.
    Forbidden(&'static str),
    /// The IdP could not be reached and nothing is known of it: Kong's 500.
    Unavailable,
}

/// How the `client_credentials` method finds the caller's credentials and asks for a token with them.
#[derive(Debug)]
struct GrantSettings {
    sources: client_credentials::Sources,
    auth: ClientAuth,
    scopes: Vec<String>,
}

#[derive(Debug)]
pub struct OpenidConnect {
    config: Config,
    sources: token::Sources,
    /// The configured issuer, normalised (no discovery suffix, no trailing slash).
    issuer: String,
    keys: Arc<keys::IssuerKeys>,
    client: http::IdpClient,
    refresh: keys::Refresh,
    leeway: f64,
    introspector: introspect::Introspector,
    consumer_claims: Vec<Vec<String>>,
    upstream_headers: Vec<(String, HeaderName)>,
    /// `upstream_access_token_header`: the header, and whether the value is prefixed with `Bearer `.
    access_token_header: Option<(HeaderName, bool)>,
    anonymous: String,
    /// The `WWW-Authenticate` challenges: no token, an invalid one, a forbidden one.
    challenges: [HeaderValue; 3],
    /// Keys the verified-token digests of this instance's trust (issuer, allowed issuers, signature checks).
    verified_seed: u128,
    /// The `client_credentials` method, when enabled.
    grant: Option<GrantSettings>,
    tokens: Arc<TokenClient>,
    /// Private copies of the verified tokens this instance (one per proxy worker) served lately, in front of the
    /// node's cache: a hit then touches no structure or reference count another core is using.
    recent: std::sync::Mutex<std::collections::HashMap<u128, Arc<Verified>>>,
    shared: Arc<Shared>,
}

/// Seconds as configured (fractions allowed) to a duration; absurd values are capped at a year.
fn seconds(value: f64) -> Duration {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    Duration::try_from_secs_f64(value.clamp(0.0, YEAR)).unwrap_or(Duration::ZERO)
}

/// `t` plus `d`, saturating.
fn later(t: Timestamp, d: Duration) -> Timestamp {
    let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    Timestamp::from_micros(t.micros().saturating_add(micros))
}

fn now_secs(clock: &SharedClock) -> f64 {
    clock.now().micros() as f64 / 1e6
}

impl OpenidConnect {
    pub fn new(config: &Map<String, Value>, shared: &Arc<Shared>, tokens: &Arc<TokenClient>) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let sources = token::Sources::new(&config.bearer_token_param_type, config.bearer_token_header_name.as_deref())?;
        let (issuer, _) = keys::normalise(&config.issuer);
        let host = url::Url::parse(&issuer).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        let challenge = |error: Option<&str>| {
            let mut value = format!("Bearer realm=\"{host}\"");
            if let Some(error) = error {
                value.push_str(&format!(", error=\"{error}\""));
            }
            HeaderValue::from_str(&value).map_err(|_| "issuer: the host cannot be a header value".to_owned())
        };
        let challenges = [challenge(None)?, challenge(Some("invalid_token"))?, challenge(Some("insufficient_scope"))?];
        let names = config.upstream_headers_names.clone().unwrap_or_default();
        let mut upstream_headers = Vec::new();
        for (claim, name) in config.upstream_headers_claims.clone().unwrap_or_default().into_iter().zip(names) {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("upstream_headers_names: invalid header name {name}"))?;
            upstream_headers.push((claim, name));
        }
        let access_token_header = match config.upstream_access_token_header.as_deref() {
            None | Some("") => None,
            Some(spec) => {
                let (name, kind) = spec.split_once(':').unwrap_or((spec, ""));
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| format!("upstream_access_token_header: invalid header name {name}"))?;
                Some((name, kind.trim().eq_ignore_ascii_case("bearer")))
            }
        };
        let verified_seed = {
            let mut h = SipHasher24::new_with_key(&shared.digest_key);
            std::hash::Hasher::write(&mut h, issuer.as_bytes());
            for allowed in config.issuers_allowed.iter().flatten() {
                std::hash::Hasher::write(&mut h, &[0]);
                std::hash::Hasher::write(&mut h, allowed.as_bytes());
            }
            std::hash::Hasher::write(&mut h, &[u8::from(config.verify_signature)]);
            h.finish128().as_u128()
        };
        let grant = config.allows("client_credentials").then(|| GrantSettings {
            sources: client_credentials::Sources::new(&config.client_credentials_param_type, &config.client_arg),
            // `token_endpoint_auth_method` is the token endpoint's own setting; else the first client's.
            auth: match config
                .token_endpoint_auth_method
                .as_deref()
                .or_else(|| config.client_auth.as_ref().and_then(|a| a.first()).map(String::as_str))
            {
                Some("client_secret_post") => ClientAuth::ClientSecretPost,
                Some("none") => ClientAuth::None,
                _ => ClientAuth::ClientSecretBasic,
            },
            // `openid` asks for an ID token, which a client without a user has no use for and which Kong Identity
            // (and Gatehouse's issuer) refuse for this grant; Kong's default `scopes` is exactly that.
            scopes: config.scopes.iter().filter(|s| *s != "openid").cloned().collect(),
        });
        Ok(Self {
            grant,
            tokens: tokens.clone(),
            sources,
            keys: shared.issuers.get(&issuer, config.ssl_verify),
            client: shared.clients.get(seconds(config.timeout / 1000.0), config.keepalive, config.ssl_verify),
            refresh: keys::Refresh {
                max_age: seconds(config.cache_ttl),
                min_interval: seconds(config.rediscovery_lifetime),
            },
            leeway: config.leeway.max(0.0),
            introspector: introspect::Introspector::new(&config),
            consumer_claims: config.consumer_claims.clone().unwrap_or_default(),
            upstream_headers,
            access_token_header,
            anonymous: config.anonymous.clone().unwrap_or_default(),
            challenges,
            verified_seed,
            recent: std::sync::Mutex::default(),
            issuer,
            shared: shared.clone(),
            config,
        })
    }

    /// The token's claims, once it is valid: a JWT validated locally (and introspected too with
    /// `introspect_jwt_tokens`), anything else introspected when `introspection` is enabled. A JWT the plugin
    /// `obtained` itself (`client_credentials`) is validated locally even when `bearer` is not enabled.
    async fn claims_of(&self, token: &str, obtained: bool) -> Result<Arc<Map<String, Value>>, Refusal> {
        let is_jwt = memchr::memchr_iter(b'.', token.as_bytes()).count() == 2;
        if !is_jwt || !(obtained || self.config.allows("bearer")) {
            if self.config.allows("introspection") {
                return self.introspected(token).await;
            }
            return Err(Refusal::Invalid("the token is not a JWT"));
        }
        let verified = self.verified(token).await?;
        self.check_standard_claims(&verified)?;
        if self.config.introspect_jwt_tokens {
            self.introspected(token).await?;
        }
        Ok(verified.claims.clone())
    }

    async fn introspected(&self, token: &str) -> Result<Arc<Map<String, Value>>, Refusal> {
        let endpoint = match &self.introspector.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => {
                let set = self.key_set(&self.keys).await?;
                set.introspection_endpoint.clone().ok_or_else(|| {
                    tracing::warn!(issuer = %self.issuer, "openid-connect: no introspection endpoint is configured or discovered");
                    Refusal::Invalid("the token cannot be introspected")
                })?
            }
        };
        let shared = &self.shared;
        let claims = self
            .introspector
            .introspect(&endpoint, token, &self.client, &shared.introspection, &shared.clock)
            .await
            .map_err(|e| {
                tracing::info!(error = %e, "openid-connect: introspection refused the token");
                Refusal::Invalid("the token is not active")
            })?;
        let exp = claims.get("exp").and_then(Value::as_f64);
        let verified = Verified { claims: claims.clone(), exp, issuer: String::new() };
        self.check_times(&verified)?;
        Ok(claims)
    }

    async fn key_set(&self, keys: &keys::IssuerKeys) -> Result<Arc<keys::KeySet>, Refusal> {
        keys.set(&self.client, &self.shared.clock, &self.refresh).await.map_err(|e| {
            tracing::error!(issuer = %self.issuer, error = %e, "openid-connect: the issuer is unavailable");
            Refusal::Unavailable
        })
    }

    /// The token's signature checked against its issuer's keys (or taken from the node's verified tokens).
    async fn verified(&self, token: &str) -> Result<Arc<Verified>, Refusal> {
        let key = {
            let mut h = SipHasher24::new_with_key(&self.verified_seed.to_le_bytes());
            std::hash::Hasher::write(&mut h, token.as_bytes());
            h.finish128().as_u128()
        };
        let now = now_secs(&self.shared.clock);
        let live = |v: &Verified| v.exp.is_some_and(|exp| exp + self.leeway > now);
        if let Some(hit) = self.recent_get(key)
            && live(&hit)
        {
            return Ok(hit);
        }
        if let Some(hit) = self.shared.verified.get(&key) {
            if live(&hit) {
                return Ok(self.keep_recent(key, &hit));
            }
            self.shared.verified.invalidate(&key);
        }
        let verified = Arc::new(self.verify(token).await?);
        // Only tokens that expire are kept, and only while they are valid.
        if live(&verified) {
            self.shared.verified.insert(key, verified.clone());
            return Ok(self.keep_recent(key, &verified));
        }
        Ok(verified)
    }

    fn recent_get(&self, key: u128) -> Option<Arc<Verified>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned()
    }

    /// A copy of `verified` sharing no memory with the node's entry, kept for this worker. Past
    /// [`RECENT_VERIFIED`] copies, all go (the node's cache still has them).
    fn keep_recent(&self, key: u128, verified: &Verified) -> Arc<Verified> {
        let copy = Arc::new(Verified {
            claims: Arc::new((*verified.claims).clone()),
            exp: verified.exp,
            issuer: verified.issuer.clone(),
        });
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_VERIFIED {
            recent.clear();
        }
        recent.insert(key, copy.clone());
        copy
    }

    async fn verify(&self, token: &str) -> Result<Verified, Refusal> {
        let (message, signature) = token.rsplit_once('.').ok_or(Refusal::Invalid("the token is not a JWT"))?;
        let (_, payload) = message.split_once('.').ok_or(Refusal::Invalid("the token is not a JWT"))?;
        // `alg: none` and unknown algorithms fail here: jsonwebtoken's header knows signing algorithms only.
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Refusal::Invalid("the token's header is invalid"))?;
        if let Some(typ) = &header.typ
            && !["JWT", "at+jwt", "application/at+jwt"].iter().any(|t| typ.eq_ignore_ascii_case(t))
        {
            return Err(Refusal::Invalid("the token's type is not an access token"));
        }
        let claims: Map<String, Value> = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(Refusal::Invalid("the token's claims are invalid"))?;
        let exp = claims.get("exp").and_then(Value::as_f64);
        let iss = claims.get("iss").and_then(Value::as_str);
        if !self.config.verify_signature {
            return Ok(Verified { exp, issuer: iss.unwrap_or_default().to_owned(), claims: Arc::new(claims) });
        }
        let main = self.key_set(&self.keys).await?;
        // A token from another allowed issuer is checked with that issuer's keys, discovered from it.
        let other = iss.filter(|iss| {
            *iss != main.issuer
                && *iss != self.issuer
                && self.config.issuers_allowed.iter().flatten().any(|allowed| allowed == iss)
        });
        let (owner, set) = match other {
            Some(iss) => {
                let owner = self.shared.issuers.get(iss, self.config.ssl_verify);
                let set = self.key_set(&owner).await?;
                (owner, set)
            }
            None => (self.keys.clone(), main),
        };
        let issuer = set.issuer.clone();
        let candidates = owner.find(set, header.kid.as_deref(), &self.client, &self.shared.clock, &self.refresh).await;
        if candidates.is_empty() {
            return Err(Refusal::Invalid("the token's key is unknown"));
        }
        let verifies = candidates.iter().any(|key| {
            key.algorithms.contains(&header.alg)
                && jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.decoding, header.alg)
                    .unwrap_or(false)
        });
        if !verifies {
            return Err(Refusal::Invalid("the token's signature is invalid"));
        }
        Ok(Verified { claims: Arc::new(claims), exp, issuer })
    }

    /// `iss`, `exp`, `nbf` and the audience, with `verify_claims`.
    fn check_standard_claims(&self, verified: &Verified) -> Result<(), Refusal> {
        if !self.config.verify_claims {
            return Ok(());
        }
        let claims = &verified.claims;
        let iss = claims.get("iss").and_then(Value::as_str).ok_or(Refusal::Invalid("the token has no issuer"))?;
        let allowed = match self.config.issuers_allowed.as_deref() {
            Some(list) if !list.is_empty() => list.iter().any(|a| a == iss),
            _ => iss == self.issuer || (!verified.issuer.is_empty() && iss == verified.issuer),
        };
        if !allowed {
            return Err(Refusal::Invalid("the token's issuer is not allowed"));
        }
        if verified.exp.is_none() {
            return Err(Refusal::Invalid("the token does not expire"));
        }
        self.check_times(verified)?;
        if let Some(audience) = self.config.audience.as_deref().filter(|a| !a.is_empty()) {
            let aud = claims::values(claims::at(claims, &self.config.audience_claim));
            if !audience.iter().any(|a| aud.contains(&a.as_str())) {
                return Err(Refusal::Invalid("the token's audience is not accepted"));
            }
        }
        Ok(())
    }

    fn check_times(&self, verified: &Verified) -> Result<(), Refusal> {
        let now = now_secs(&self.shared.clock);
        if verified.exp.is_some_and(|exp| now >= exp + self.leeway) {
            return Err(Refusal::Invalid("the token has expired"));
        }
        if let Some(nbf) = verified.claims.get("nbf").and_then(Value::as_f64)
            && now + self.leeway < nbf
        {
            return Err(Refusal::Invalid("the token is not valid yet"));
        }
        Ok(())
    }

    /// `audience_required` and `scopes_required`: a valid token without them is forbidden.
    fn check_required(&self, claims: &Map<String, Value>) -> Result<(), Refusal> {
        if let Some(required) = self.config.audience_required.as_deref().filter(|r| !r.is_empty()) {
            let aud = claims::values(claims::at(claims, &self.config.audience_claim));
            if !claims::satisfies(&aud, required) {
                return Err(Refusal::Forbidden("the token's audience is insufficient"));
            }
        }
        if let Some(required) = self.config.scopes_required.as_deref().filter(|r| !r.is_empty()) {
            let scopes = claims::values(claims::at(claims, &self.config.scopes_claim));
            if !claims::satisfies(&scopes, required) {
                return Err(Refusal::Forbidden("the token's scopes are insufficient"));
            }
        }
        Ok(())
    }

    /// The consumer `consumer_claims` names, matched by `consumer_by` in order. `Ok(None)`: no mapping is
    /// configured, or none matched and `consumer_optional` allows that.
    fn consumer_of(
        &self,
        ctx: &RequestContext<'_>,
        claims: &Map<String, Value>,
    ) -> Result<Option<Arc<Consumer>>, Refusal> {
        if self.consumer_claims.is_empty() {
            return Ok(None);
        }
        let value = self.consumer_claims.iter().find_map(|path| claims::at(claims, path)).and_then(claims::text);
        let found = value.and_then(|value| {
            self.config.consumer_by.iter().find_map(|by| match by.as_str() {
                "id" => value.parse::<uuid::Uuid>().ok().and_then(|id| ctx.consumers.by_id(&id)).cloned(),
                "custom_id" => ctx.consumers.by_custom_id(&value).cloned(),
                "username" if self.config.by_username_ignore_case => {
                    ctx.consumers.by_username(&value).or_else(|| ctx.consumers.by_username_ignore_case(&value)).cloned()
                }
                "username" => ctx.consumers.by_username(&value).cloned(),
                _ => None,
            })
        });
        match found {
            Some(consumer) => Ok(Some(consumer)),
            None if self.config.consumer_optional => Ok(None),
            None => Err(Refusal::Forbidden("no consumer matches the token")),
        }
    }

    /// Authentication failed: with `anonymous`, the request goes on as that consumer (except when the IdP is
    /// unavailable, which is the gateway's failure, not the client's); without, Kong's 401, 403 or 500.
    fn fail(&self, ctx: &mut RequestContext<'_>, refusal: Refusal) -> Flow {
        if refusal == Refusal::Unavailable {
            let (parts, body) = ProxyError::Internal.to_response(ctx.request_id).into_parts();
            return Flow::Respond(Response::from_parts(parts, body));
        }
        if !self.anonymous.is_empty() {
            return auth::as_anonymous(ctx, &self.anonymous, NAME);
        }
        let (status, message, challenge, reason) = match refusal {
            Refusal::Missing => {
                (StatusCode::UNAUTHORIZED, &self.config.unauthorized_error_message, &self.challenges[0], None)
            }
            Refusal::Invalid(reason) => {
                (StatusCode::UNAUTHORIZED, &self.config.unauthorized_error_message, &self.challenges[1], Some(reason))
            }
            Refusal::Forbidden(reason) => {
                (StatusCode::FORBIDDEN, &self.config.forbidden_error_message, &self.challenges[2], Some(reason))
            }
            // Answered above.
            Refusal::Unavailable => {
                (StatusCode::FORBIDDEN, &self.config.forbidden_error_message, &self.challenges[2], None)
            }
        };
        tracing::info!(request_id = ctx.request_id, reason = reason.unwrap_or("no token"), "openid-connect: refused");
        let (message, challenge) = match reason.filter(|_| self.config.display_errors) {
            // The reasons are the plugin's own fixed texts, never the IdP's.
            Some(reason) => {
                let detailed = format!("{}, error_description=\"{reason}\"", challenge.to_str().unwrap_or_default());
                (
                    format!("{message} ({reason})"),
                    HeaderValue::from_str(&detailed).unwrap_or_else(|_| challenge.clone()),
                )
            }
            None => (message.clone(), challenge.clone()),
        };
        Flow::Respond(auth::json_response(status, &json!({"message": message}), Some(challenge)))
    }

    /// What goes upstream for an accepted token: claims as headers, and the token in its header.
    fn forward(&self, ctx: &mut RequestContext<'_>, claims: &Map<String, Value>, token: &str) {
        for (claim, name) in &self.upstream_headers {
            match claims.get(claim).and_then(claims::header_value) {
                Some(value) => {
                    ctx.headers.insert(name.clone(), value);
                }
                None => {
                    ctx.headers.remove(name);
                }
            }
        }
        let Some((name, bearer)) = &self.access_token_header else { return };
        let current = ctx.headers.get(name).map(HeaderValue::as_bytes);
        let already = current.is_some_and(|v| {
            let rest = if *bearer { v.strip_prefix(b"Bearer ") } else { Some(v) };
            rest == Some(token.as_bytes())
        });
        if already {
            return;
        }
        let value = if *bearer { format!("Bearer {token}") } else { token.to_owned() };
        if let Ok(mut value) = HeaderValue::from_str(&value) {
            value.set_sensitive(true);
            ctx.headers.insert(name.clone(), value);
        }
    }
}

#[async_trait]
impl Plugin for OpenidConnect {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        // "Logical OR": with `anonymous` set, a request another authentication plugin already accepted passes.
        if auth::accepted_by_another(&self.anonymous, ctx) {
            return Flow::Continue;
        }
        auth::remove_spoofed(ctx.headers);
        if !self.config.run_on_preflight && ctx.method == Method::OPTIONS {
            return Flow::Continue;
        }
        let bearer = self.config.allows("bearer") || self.config.allows("introspection");
        let found = match if bearer { token::find(ctx, &self.sources).await } else { Ok(None) } {
            Ok(Some(found)) => found,
            Ok(None) => return self.with_client_credentials(ctx).await,
            Err(e) => return bad_request(ctx, &e),
        };
        // Hidden as soon as found, whatever the outcome: a request that goes on as the anonymous consumer must
        // not carry a token the operator asked to hide either.
        let default_header = found.source == crate::plugins::oauth2_introspection::token::Source::Header
            && self.sources.header_name.is_none()
            && self
                .access_token_header
                .as_ref()
                .is_some_and(|(name, bearer)| *name == header::AUTHORIZATION && *bearer);
        // The common case (token in `Authorization`, sent upstream there) keeps the header as it is.
        if self.config.hide_credentials
            && !default_header
            && let Err(e) = token::hide(ctx, &found, &self.sources).await
        {
            return bad_request(ctx, &e);
        }
        let accepted = match self.claims_of(found.token.expose(), false).await {
            Ok(claims) => self.check_required(&claims).and_then(|()| Ok((self.consumer_of(ctx, &claims)?, claims))),
            Err(refusal) => Err(refusal),
        };
        let (consumer, claims) = match accepted {
            Ok(accepted) => accepted,
            Err(refusal) => {
                if self.config.hide_credentials && default_header {
                    ctx.headers.remove(header::AUTHORIZATION);
                }
                return self.fail(ctx, refusal);
            }
        };
        if let Some(consumer) = &consumer {
            auth::set_consumer_headers(ctx.headers, consumer);
        }
        ctx.consumer = consumer;
        self.forward(ctx, &claims, found.token.expose());
        // Kong's virtual credential: the `credential_claim`'s value, else the token.
        let credential = claims::at(&claims, &self.config.credential_claim).and_then(claims::text);
        ctx.credential = Some(credential.map_or(found.token, Credential::owned));
        Flow::Continue
    }
}

impl OpenidConnect {
    /// No bearer token: the `client_credentials` method, if enabled and the request carries credentials.
    async fn with_client_credentials(&self, ctx: &mut RequestContext<'_>) -> Flow {
        let Some(grant) = &self.grant else { return self.fail(ctx, Refusal::Missing) };
        let caller = match client_credentials::find(ctx, &grant.sources).await {
            Ok(Some(caller)) => caller,
            Ok(None) => return self.fail(ctx, Refusal::Missing),
            Err(e) => return bad_request(ctx, &e),
        };
        // Hidden whatever the outcome, as the bearer path does.
        if self.config.hide_credentials
            && let Err(e) = client_credentials::hide(ctx, &caller, &grant.sources).await
        {
            return bad_request(ctx, &e);
        }
        let token = match self.obtain(grant, &caller).await {
            Ok(token) => token,
            Err(refusal) => return self.fail(ctx, refusal),
        };
        let accepted = match self.claims_of(token.access_token(), true).await {
            Ok(claims) => self.check_required(&claims).and_then(|()| Ok((self.consumer_of(ctx, &claims)?, claims))),
            Err(refusal) => Err(refusal),
        };
        let (consumer, claims) = match accepted {
            Ok(accepted) => accepted,
            Err(refusal) => return self.fail(ctx, refusal),
        };
        if let Some(consumer) = &consumer {
            auth::set_consumer_headers(ctx.headers, consumer);
        }
        ctx.consumer = consumer;
        self.forward(ctx, &claims, token.access_token());
        let credential = claims::at(&claims, &self.config.credential_claim).and_then(claims::text);
        ctx.credential = Some(Credential::owned(credential.unwrap_or_else(|| token.access_token().to_owned())));
        Flow::Continue
    }

    /// A token for the caller's client from the token endpoint (configured, else discovered), through the node's
    /// token client: cached per credential digest (with `cache_tokens_salt`) unless `cache_tokens` is off.
    async fn obtain(&self, grant: &GrantSettings, caller: &client_credentials::Caller) -> Result<Arc<Token>, Refusal> {
        let endpoint = match self.config.token_endpoint.as_deref().filter(|e| !e.is_empty()) {
            Some(endpoint) => endpoint.to_owned(),
            None => self.key_set(&self.keys).await?.token_endpoint.clone().ok_or_else(|| {
                tracing::error!(issuer = %self.issuer, "openid-connect: no token endpoint is configured or discovered");
                Refusal::Unavailable
            })?,
        };
        let request = TokenRequest {
            token_endpoint: endpoint,
            grant: Grant::ClientCredentials,
            auth: grant.auth,
            client_id: Some(caller.id.clone()),
            client_secret: Some(caller.secret.clone()),
            scopes: grant.scopes.clone(),
            audience: Vec::new(),
            post_args: Vec::new(),
            headers: Vec::new(),
            timeout: seconds(self.config.timeout / 1000.0),
            keep_alive: self.config.keepalive,
            verify_tls: self.config.ssl_verify,
            default_lifetime: DEFAULT_TOKEN_LIFETIME,
            renew_margin: RENEW_MARGIN,
            shared_store: None,
            cache_salt: self.config.cache_tokens_salt.clone(),
        };
        let prepared = self.tokens.prepare(&request).map_err(|e| {
            tracing::error!(error = %e, "openid-connect: the token endpoint cannot be used");
            Refusal::Unavailable
        })?;
        match self.tokens.token(&prepared).await {
            Ok(token) => {
                if !self.config.cache_tokens {
                    self.tokens.invalidate(&prepared, &token);
                }
                Ok(token)
            }
            // The IdP refused the client (RFC 6749 §5.2: 400 or 401): the caller's failure, Kong's 401.
            Err(e) => match &*e {
                TokenError::Refused { status: status @ (400 | 401), error, .. } => {
                    tracing::info!(status, error = %error, "openid-connect: the token endpoint refused the client credentials");
                    Err(Refusal::Invalid("the client credentials were refused"))
                }
                other => {
                    tracing::error!(error = %other, "openid-connect: no token could be obtained");
                    Err(Refusal::Unavailable)
                }
            },
        }
    }
}

fn bad_request(ctx: &RequestContext<'_>, error: &crate::plugins::oauth2_introspection::token::BadBody) -> Flow {
    tracing::info!(request_id = ctx.request_id, error = %error, "openid-connect: unreadable body");
    let (parts, body) = ProxyError::BadRequest.to_response(ctx.request_id).into_parts();
    Flow::Respond(Response::from_parts(parts, body))
}
