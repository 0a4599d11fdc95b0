//! Opaque tokens (and, with `introspect_jwt_tokens`, JWTs) checked at the IdP's RFC 7662 endpoint, with the
//! client authenticating by `client_secret_basic` (the default), `client_secret_post` or not at all. Active
//! answers are cached per node for `cache_ttl`, never past the token's `exp`, under a digest of the endpoint, the
//! client and the token (never the token itself); concurrent requests for one token make one call.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine;
use http::HeaderValue;
use moka::future::Cache;
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::openid_connect::Config;
use gatehouse_model::{Clock, SharedClock, Timestamp};

use super::http::{FetchError, IdpClient};

/// How the plugin authenticates to the endpoint.
enum ClientAuth {
    Header(HeaderValue),
    /// `client_id` and `client_secret` as form fields.
    Post(String, String),
    /// `client_id` alone, when there is one.
    None(Option<String>),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAuth::Header(_) => "Header([redacted])",
            ClientAuth::Post(..) => "Post([redacted])",
            ClientAuth::None(_) => "None",
        })
    }
}

#[derive(Debug)]
pub struct Introspector {
    /// The configured endpoint; unset, the discovered one is used.
    pub endpoint: Option<String>,
    auth: ClientAuth,
    client_id: String,
    hint: String,
    param: String,
    check_active: bool,
    cache: bool,
    ttl: Duration,
}

/// An answer, kept until `until`.
#[derive(Debug)]
pub struct Answer {
    pub claims: Arc<Map<String, Value>>,
    until: Timestamp,
}

/// Why introspection refused the token.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectionError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the token is not active")]
    Inactive,
}

/// The node's introspection answers.
#[derive(Debug)]
pub struct AnswerCache {
    answers: Cache<[u8; 32], Arc<Answer>>,
}

impl Default for AnswerCache {
    fn default() -> Self {
        Self { answers: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(24 * 3600)).build() }
    }
}

impl Introspector {
    pub fn new(config: &Config) -> Self {
        let first = |v: &Option<Vec<gatehouse_model::secret::SecretString>>| {
            v.as_ref().and_then(|v| v.first()).map(|s| s.expose().to_owned())
        };
        let (id, secret) = (first(&config.client_id), first(&config.client_secret));
        let method = config.introspection_endpoint_auth_method.as_deref().unwrap_or("client_secret_basic");
        let auth = match (method, &id, secret) {
            ("client_secret_post", Some(id), Some(secret)) => ClientAuth::Post(id.clone(), secret),
            ("client_secret_basic", Some(id), Some(secret)) => {
                let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", encode(id), encode(&secret));
                let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                match HeaderValue::from_str(&format!("Basic {basic}")) {
                    Ok(mut value) => {
                        value.set_sensitive(true);
                        ClientAuth::Header(value)
                    }
                    Err(_) => ClientAuth::None(Some(id.clone())),
                }
            }
            _ => ClientAuth::None(id.clone()),
        };
        Self {
            endpoint: config.introspection_endpoint.clone(),
            auth,
            client_id: id.unwrap_or_default(),
            hint: config.introspection_hint.clone(),
            param: config.introspection_token_param_name.clone(),
            check_active: config.introspection_check_active,
            cache: config.cache_introspection,
            ttl: super::seconds(config.cache_ttl),
        }
    }

    /// The claims the endpoint gives for an active `token`.
    pub async fn introspect(
        &self,
        endpoint: &str,
        token: &str,
        client: &IdpClient,
        cache: &AnswerCache,
        clock: &SharedClock,
    ) -> Result<Arc<Map<String, Value>>, Arc<IntrospectionError>> {
        if !self.cache {
            return self.fetch(endpoint, token, client, clock).await.map(|a| a.claims.clone()).map_err(Arc::new);
        }
        let key = {
            let mut ctx = digest::Context::new(&digest::SHA256);
            for part in [endpoint, &self.client_id, token] {
                ctx.update(part.as_bytes());
                ctx.update(&[0]);
            }
            let mut key = [0u8; 32];
            key.copy_from_slice(ctx.finish().as_ref());
            key
        };
        if let Some(hit) = cache.answers.get(&key).await {
            if hit.until > clock.now() {
                return Ok(hit.claims.clone());
            }
            cache.answers.invalidate(&key).await;
        }
        let answer = cache.answers.try_get_with(key, self.fetch(endpoint, token, client, clock)).await?;
        Ok(answer.claims.clone())
    }

    async fn fetch(
        &self,
        endpoint: &str,
        token: &str,
        client: &IdpClient,
        clock: &SharedClock,
    ) -> Result<Arc<Answer>, IntrospectionError> {
        // Built whole before the call: the serializer is not `Send`.
        let (body, header) = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair(&self.param, token);
            form.append_pair("token_type_hint", &self.hint);
            let header = match &self.auth {
                ClientAuth::Header(value) => Some(value),
                ClientAuth::Post(id, secret) => {
                    form.append_pair("client_id", id);
                    form.append_pair("client_secret", secret);
                    None
                }
                ClientAuth::None(id) => {
                    if let Some(id) = id {
                        form.append_pair("client_id", id);
                    }
                    None
                }
            };
            (form.finish(), header)
        };
        let claims = client.post_form("the introspection endpoint", endpoint, body, header).await?;
        let active = claims.get("active") == Some(&Value::Bool(true));
        if self.check_active && !active {
            return Err(IntrospectionError::Inactive);
        }
        let now = clock.now();
        let mut until = super::later(now, self.ttl);
        if let Some(exp) = claims.get("exp").and_then(Value::as_f64).filter(|e| e.is_finite()) {
            let exp = Timestamp::from_micros((exp * 1e6) as i64);
            if exp < until {
                until = exp;
            }
        }
        Ok(Arc::new(Answer { claims: Arc::new(claims), until }))
    }
}
