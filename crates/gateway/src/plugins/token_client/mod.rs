//! An OAuth 2.0 client of a token endpoint, for plugins that get tokens for the gateway itself (`upstream-oauth`)
//! or on a caller's behalf (`openid-connect`'s `client_credentials` auth method).
//!
//! A caller describes what to ask for in a [`TokenRequest`], turns it once into a [`Prepared`] request (the URL
//! parsed, the headers and form built, the cache key computed) and calls [`TokenClient::token`] on every request.
//! The node has one [`TokenClient`] (`plugins::Shared::tokens`); tokens are kept per cache key, which is a SHA-256
//! over everything that changes the answer (endpoint, grant, client authentication, client id and secret, scopes,
//! audience, extra arguments and headers): two plugin instances that ask the same IdP the same thing share a token,
//! as Kong's do, and the secret is never a key or a log field in clear.
//!
//! - A token is handed out only while `now + renew_margin` is before its expiry (the earlier of the answer's
//!   `expires_in`, counted from when the request was sent, and the `exp` of a JWT access token), so no request
//!   carries a token about to lapse: the first request past that point fetches a new one.
//! - However many requests miss at once, one request goes to the IdP (a per-key single flight): the others wait for
//!   it and share its result, a failure included, so a failing IdP gets one call per wave of requests, not one per
//!   request. Failures are never cached.
//! - The number of keys is bounded ([`TokenClient::new`]); the least used are dropped first. A [`Prepared`] request
//!   holds its key's slot, so a hit costs no map lookup; a slot dropped from the map for room stays with the
//!   requests prepared with it (a later `prepare` of the same key starts a new one).
//! - With a [`SharedStore`] (Kong's `redis` strategy), a miss first looks there, and a fetched token is put there
//!   until it lapses, so nodes share tokens. The store failing is logged and the IdP asked, as if it were empty.
//! - Time is the node's injectable clock.
//! - Errors are typed ([`TokenError`]); their text names the IdP's status, an RFC 6749 error code and a digest of
//!   the body, never the body itself or a credential, so it can be logged. It is never meant for a client.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;

use gatehouse_model::secret::SecretString;
use gatehouse_model::{Clock, SharedClock, Timestamp};

use super::oauth2_introspection::BodySummary;

/// A token endpoint answer larger than this is a failure, not something to buffer.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The default bound on the cache: distinct (endpoint, client, scopes, …) combinations, not requests.
pub const DEFAULT_CAPACITY: u64 = 10_000;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The OAuth grant asked for. Only `client_credentials` is run today; the type is open for `password`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Grant {
    ClientCredentials,
}

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1, OIDC Core §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic base64(form-encoded id ":" form-encoded secret)`.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// `client_id` only, in the form body (a public client).
    None,
}

/// What to ask a token endpoint for, independent of any plugin's config types. `Debug` shows the names of the extra
/// arguments and headers, not their values (often API keys), and never the secret.
#[derive(Clone)]
pub struct TokenRequest {
    pub token_endpoint: String,
    pub grant: Grant,
    pub auth: ClientAuth,
    pub client_id: Option<SecretString>,
    pub client_secret: Option<SecretString>,
    /// Sent space-separated as `scope` when not empty.
    pub scopes: Vec<String>,
    /// Each one sent as an `audience` form argument.
    pub audience: Vec<String>,
    /// Further form arguments, after the standard ones.
    pub post_args: Vec<(String, String)>,
    /// Further headers; they may replace the standard ones (`Accept`).
    pub headers: Vec<(String, String)>,
    /// The whole exchange (connect, send, answer) must fit in it.
    pub timeout: Duration,
    /// Keep idle connections to the endpoint for reuse.
    pub keep_alive: bool,
    /// Verify the endpoint's certificate (web PKI roots).
    pub verify_tls: bool,
    /// The lifetime of a token whose answer has no `expires_in`.
    pub default_lifetime: Duration,
    /// A token is not handed out once it expires within this margin (Kong's `eagerly_expire`).
    pub renew_margin: Duration,
    /// Where nodes share tokens; `None` keeps them in this node only.
    pub shared_store: Option<Arc<dyn SharedStore>>,
    /// Mixed into the cache key only, never sent (`openid-connect`'s `cache_tokens_salt`).
    pub cache_salt: Option<SecretString>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |pairs: &[(String, String)]| pairs.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>();
        f.debug_struct("TokenRequest")
            .field("token_endpoint", &self.token_endpoint)
            .field("grant", &self.grant)
            .field("auth", &self.auth)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("post_args", &names(&self.post_args))
            .field("headers", &names(&self.headers))
            .field("timeout", &self.timeout)
            .field("shared_store", &self.shared_store.is_some())
            .field("cache_salt", &self.cache_salt.is_some())
            .finish_non_exhaustive()
    }
}

/// A store that nodes share tokens through (Redis). The client writes and reads its own values; a value it cannot
/// read is a miss.
#[async_trait::async_trait]
pub trait SharedStore: Send + Sync + std::fmt::Debug {
    async fn get(&self, key: &str) -> Result<Option<String>, String>;
    /// Keeps `value` under `key` for `ttl`.
    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), String>;
}

/// A request ready to be made: built once per plugin instance, used for every request.
#[derive(Debug)]
pub struct Prepared {
    key: [u8; 32],
    /// The key's slot, looked up once: a cache hit then touches neither moka nor the key.
    slot: Arc<Slot>,
    uri: Uri,
    /// The form body, which may hold the client secret: its `Debug` is redacted.
    form: SecretString,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: HttpClient,
    timeout: Duration,
    default_lifetime: Duration,
    renew_margin: Duration,
    shared_store: Option<Arc<dyn SharedStore>>,
}

/// Why a [`TokenRequest`] cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrepareError {
    #[error("the token endpoint is not an http(s) URL with a host")]
    Endpoint,
    #[error("token header {0:?} is not a valid header")]
    Header(String),
}

/// Why no token was obtained. Safe to log (no body, no credential); never sent to a client as is.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token endpoint could not be reached: {0}")]
    Unreachable(String),
    #[error("the token endpoint did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the token endpoint answered {status} (error {error}, {body})")]
    Refused {
        status: u16,
        /// The answer's RFC 6749 `error` code when it looks like one (`invalid_client`), else `-`.
        error: String,
        body: BodySummary,
    },
    #[error("the token endpoint's answer has no usable access token ({0})")]
    Malformed(BodySummary),
}

/// A token from the endpoint. `Debug` never shows it.
pub struct Token {
    access_token: SecretString,
    bearer: HeaderValue,
    obtained_at: Timestamp,
    expires_at: Timestamp,
}

impl Token {
    pub fn access_token(&self) -> &str {
        self.access_token.expose()
    }

    /// `Bearer <token>`, marked sensitive (never indexed by HTTP/2, `Debug` hidden).
    pub fn bearer(&self) -> &HeaderValue {
        &self.bearer
    }

    /// When the request that got it was sent (the node's clock).
    pub fn obtained_at(&self) -> Timestamp {
        self.obtained_at
    }

    /// When it lapses: the earliest of `expires_in` (or the default lifetime) and a JWT's `exp`.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// The token as a shared store keeps it.
    fn stored(&self) -> String {
        serde_json::json!({"access_token": self.access_token.expose(), "obtained_at": self.obtained_at.micros(),
            "expires_at": self.expires_at.micros()})
        .to_string()
    }

    fn from_stored(value: &str) -> Option<Self> {
        let value: Value = serde_json::from_str(value).ok()?;
        let access_token = value.get("access_token")?.as_str().filter(|t| !t.is_empty())?;
        let mut bearer = HeaderValue::from_str(&format!("Bearer {access_token}")).ok()?;
        bearer.set_sensitive(true);
        Some(Self {
            access_token: SecretString::new(access_token.to_owned()),
            bearer,
            obtained_at: Timestamp::from_micros(value.get("obtained_at")?.as_i64()?),
            expires_at: Timestamp::from_micros(value.get("expires_at")?.as_i64()?),
        })
    }

    fn usable_at(&self, now: Timestamp, margin: Duration) -> bool {
        plus(now, margin) < self.expires_at
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[redacted]")
            .field("obtained_at", &self.obtained_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

type Outcome = Result<Arc<Token>, Arc<TokenError>>;

/// One cache key's state: the current token, and the single flight that renews it.
#[derive(Debug, Default)]
struct Slot {
    current: RwLock<Option<Arc<Token>>>,
    flight: tokio::sync::Mutex<()>,
    /// Completed fetches; a waiter that saw fewer before queueing takes the last one's outcome.
    fetches: AtomicU64,
    last: Mutex<Option<Outcome>>,
}

impl Slot {
    fn usable(&self, now: Timestamp, margin: Duration) -> Option<Arc<Token>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|t| t.usable_at(now, margin)).cloned()
    }
}

/// The node's token cache and HTTP clients to token endpoints.
#[derive(Debug)]
pub struct TokenClient {
    slots: moka::sync::Cache<[u8; 32], Arc<Slot>>,
    /// One HTTP client per (timeout, keep-alive, verify) so idle connections survive configuration changes.
    clients: Mutex<BTreeMap<(u64, bool, bool), HttpClient>>,
    clock: SharedClock,
    /// Requests sent to token endpoints, for tests and metrics.
    fetches: AtomicU64,
    /// Callers queued behind a fetch in flight.
    waiting: AtomicU64,
}

impl TokenClient {
    /// A client keeping tokens for at most `capacity` keys; `clock` decides when they lapse.
    pub fn new(capacity: u64, clock: SharedClock) -> Self {
        Self {
            slots: moka::sync::Cache::builder().max_capacity(capacity).build(),
            clients: Mutex::default(),
            clock,
            fetches: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
        }
    }

    /// Requests sent to token endpoints so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Callers waiting for a fetch in flight now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    pub fn prepare(&self, request: &TokenRequest) -> Result<Prepared, PrepareError> {
        let uri = endpoint_uri(&request.token_endpoint).ok_or(PrepareError::Endpoint)?;
        let expose = |s: &Option<SecretString>| s.as_ref().map(SecretString::expose).unwrap_or_default().to_owned();
        let (id, secret) = (expose(&request.client_id), expose(&request.client_secret));
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair(
            "grant_type",
            match request.grant {
                Grant::ClientCredentials => "client_credentials",
            },
        );
        let mut headers = vec![
            (header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded")),
            (header::ACCEPT, HeaderValue::from_static("application/json")),
        ];
        match request.auth {
            ClientAuth::ClientSecretBasic => {
                let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let credentials = STANDARD.encode(format!("{}:{}", encode(&id), encode(&secret)));
                let mut value = HeaderValue::from_str(&format!("Basic {credentials}"))
                    .map_err(|_| PrepareError::Header("authorization".into()))?;
                value.set_sensitive(true);
                headers.push((header::AUTHORIZATION, value));
            }
            ClientAuth::ClientSecretPost => {
                form.append_pair("client_id", &id);
                form.append_pair("client_secret", &secret);
            }
            ClientAuth::None => {
                form.append_pair("client_id", &id);
            }
        }
        if !request.scopes.is_empty() {
            form.append_pair("scope", &request.scopes.join(" "));
        }
        for audience in &request.audience {
            form.append_pair("audience", audience);
        }
        for (name, value) in &request.post_args {
            form.append_pair(name, value);
        }
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| PrepareError::Header(name.clone()))?;
            let mut value = HeaderValue::from_str(value).map_err(|_| PrepareError::Header(name.to_string()))?;
            // Often an API key for the IdP.
            value.set_sensitive(true);
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value));
        }
        let key = cache_key(request, &id, &secret);
        Ok(Prepared {
            slot: self.slots.get_with(key, Arc::default),
            key,
            uri,
            form: SecretString::new(form.finish()),
            headers,
            client: self.http_client(request),
            timeout: request.timeout,
            default_lifetime: request.default_lifetime,
            renew_margin: request.renew_margin,
            shared_store: request.shared_store.clone(),
        })
    }

    /// A token for `request`: the cached one while it is usable, else one fetched now (one fetch per key however
    /// many callers ask at once; they all get its outcome).
    pub async fn token(&self, request: &Prepared) -> Result<Arc<Token>, Arc<TokenError>> {
        let slot = &request.slot;
        if let Some(token) = slot.usable(self.clock.now(), request.renew_margin) {
            return Ok(token);
        }
        let seen = slot.fetches.load(Ordering::Acquire);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _flight = slot.flight.lock().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if slot.fetches.load(Ordering::Acquire) != seen {
            // A fetch ended while this caller queued: its outcome is as fresh as one of our own.
            let last = slot.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(outcome) = last {
                return outcome;
            }
        }
        if let Some(token) = slot.usable(self.clock.now(), request.renew_margin) {
            return Ok(token);
        }
        let outcome = self.obtain(request).await;
        if let Ok(token) = &outcome {
            *slot.current.write().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        }
        *slot.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome.clone());
        slot.fetches.fetch_add(1, Ordering::Release);
        outcome
    }

    /// Drops `token` from the cache (the upstream refused it), unless it was already replaced.
    pub fn invalidate(&self, request: &Prepared, token: &Arc<Token>) {
        let mut current = request.slot.current.write().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, token)) {
            *current = None;
        }
    }

    /// From the shared store when it has a usable token, else from the IdP (and then into the store).
    async fn obtain(&self, request: &Prepared) -> Outcome {
        let Some(store) = &request.shared_store else {
            return self.fetch(request).await.map(Arc::new).map_err(Arc::new);
        };
        let name = store_key(&request.key);
        match store.get(&name).await {
            Ok(Some(value)) => {
                if let Some(token) = Token::from_stored(&value)
                    && token.usable_at(self.clock.now(), request.renew_margin)
                {
                    return Ok(Arc::new(token));
                }
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "token client: the shared store failed; asking the IdP"),
        }
        let token = Arc::new(self.fetch(request).await.map_err(Arc::new)?);
        let ttl = token.expires_at.micros().saturating_sub(self.clock.now().micros());
        if ttl > 0 {
            let ttl = Duration::from_micros(u64::try_from(ttl).unwrap_or_default());
            if let Err(error) = store.put(&name, &token.stored(), ttl).await {
                tracing::warn!(%error, "token client: the shared store failed; the token is kept on this node only");
            }
        }
        Ok(token)
    }

    async fn fetch(&self, request: &Prepared) -> Result<Token, TokenError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut req = Request::new(Full::new(Bytes::from(request.form.expose().to_owned())));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = request.uri.clone();
        for (name, value) in &request.headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        // Counted from before the request: the IdP's `expires_in` starts no earlier than that.
        let sent_at = self.clock.now();
        // A traced request's call becomes a `kong.internal.request` span under the plugin's phase.
        let traced = crate::trace::recording_calls().then(tokio::time::Instant::now);
        let exchange = async {
            let response = request.client.request(req).await.map_err(|e| TokenError::Unreachable(chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| TokenError::Unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, TokenError>((status, body))
        };
        let answer = tokio::time::timeout(request.timeout, exchange).await;
        if let Some(start) = traced {
            let status = match &answer {
                Ok(Ok((status, _))) => Some(status.as_u16()),
                _ => None,
            };
            crate::trace::record_call("POST", &request.uri, (start, tokio::time::Instant::now()), status);
        }
        let (status, body) = answer.map_err(|_| TokenError::Timeout(request.timeout))??;
        let answer = serde_json::from_slice::<Value>(&body).ok();
        if status != http::StatusCode::OK {
            let error = answer
                .as_ref()
                .and_then(|a| a.get("error")?.as_str())
                .filter(|e| e.len() <= 40 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .unwrap_or("-")
                .to_owned();
            return Err(TokenError::Refused { status: status.as_u16(), error, body: BodySummary::of(&body) });
        }
        let malformed = || TokenError::Malformed(BodySummary::of(&body));
        let access_token = answer
            .as_ref()
            .and_then(|a| a.get("access_token")?.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(malformed)?;
        let mut bearer = HeaderValue::from_str(&format!("Bearer {access_token}")).map_err(|_| malformed())?;
        bearer.set_sensitive(true);
        let lifetime = answer
            .as_ref()
            .and_then(|a| a.get("expires_in"))
            .and_then(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()))
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(request.default_lifetime, |s| Duration::from_secs_f64(s.min(10.0 * 365.0 * 86_400.0)));
        let mut expires_at = plus(sent_at, lifetime);
        if let Some(exp) = jwt_exp(access_token) {
            expires_at = expires_at.min(exp);
        }
        Ok(Token { access_token: SecretString::new(access_token.to_owned()), bearer, obtained_at: sent_at, expires_at })
    }

    fn http_client(&self, request: &TokenRequest) -> HttpClient {
        let timeout_ms = u64::try_from(request.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry((timeout_ms, request.keep_alive, request.verify_tls))
            .or_insert_with(|| {
                let connector = crate::upstream::connector(timeout_ms, request.verify_tls);
                let mut builder = Client::builder(TokioExecutor::new());
                builder.pool_timer(TokioTimer::new()).timer(TokioTimer::new());
                if request.keep_alive {
                    builder.pool_idle_timeout(Duration::from_secs(60));
                } else {
                    builder.pool_max_idle_per_host(0);
                }
                builder.build(connector)
            })
            .clone()
    }
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_micros(t.micros().saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
}

/// The error and its sources, one line (hyper's own message is only "client error (Connect)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}

fn endpoint_uri(endpoint: &str) -> Option<Uri> {
    let url = url::Url::parse(endpoint).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.host_str()?;
    // `url` has normalised it; `Uri` takes the same text (the fragment is not sent).
    let mut text = url.to_string();
    if let Some(at) = text.find('#') {
        text.truncate(at);
    }
    text.parse().ok()
}

/// The shared store's name for a cache key: the digest in hex, never anything in clear.
fn store_key(key: &[u8; 32]) -> String {
    let mut name = String::from("gatehouse:oauth_token:");
    for b in key {
        let _ = write!(name, "{b:02x}");
    }
    name
}

/// SHA-256 over every input that changes the answer, each length-prefixed so no two inputs collide.
fn cache_key(request: &TokenRequest, id: &str, secret: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut put = |part: &str| {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    };
    put(&request.token_endpoint);
    put(match request.grant {
        Grant::ClientCredentials => "client_credentials",
    });
    put(match request.auth {
        ClientAuth::ClientSecretBasic => "basic",
        ClientAuth::ClientSecretPost => "post",
        ClientAuth::None => "none",
    });
    put(id);
    put(secret);
    for (tag, list) in [("scopes", &request.scopes), ("audience", &request.audience)] {
        put(tag);
        put(&list.len().to_string());
        list.iter().for_each(|s| put(s));
    }
    for (tag, pairs) in [("args", &request.post_args), ("headers", &request.headers)] {
        put(tag);
        put(&pairs.len().to_string());
        for (name, value) in pairs {
            put(name);
            put(value);
        }
    }
    put(&request.default_lifetime.as_micros().to_string());
    if let Some(salt) = &request.cache_salt {
        put("salt");
        put(salt.expose());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// A JWT access token's `exp`, read without verifying it: it only ever shortens how long the token is used.
fn jwt_exp(token: &str) -> Option<Timestamp> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let payload = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let exp = serde_json::from_slice::<Value>(&payload).ok()?.get("exp")?.as_f64()?;
    (0.0..1e12).contains(&exp).then(|| Timestamp::from_micros((exp * 1e6) as i64))
}

#[cfg(test)]
pub(crate) mod stand_in;
#[cfg(test)]
mod tests;
