//! `upstream-oauth` (priority 760, `access` and `response` phases): the gateway gets a token for itself from an
//! OAuth token endpoint (client credentials) and sends it to the upstream as `Bearer <token>`, as Kong's Enterprise
//! plugin does. Tokens come from the node's [`TokenClient`](super::token_client::TokenClient): cached per
//! `config.oauth` until shortly before they lapse, fetched once however many requests miss at once.
//!
//! When no token can be had, the client gets Kong's configurable answer (`behavior.idp_error_response_*`: 502 and
//! `{ "code": "502", "message": "Failed to authenticate request to upstream" }` by default); what the IdP said is
//! logged with the request id, never sent. An upstream status listed in
//! `behavior.purge_token_on_upstream_status_codes` (401 by default) drops the token the request carried, so the
//! next request fetches a new one. With `cache.strategy: redis` tokens are also kept in Redis (on the node's
//! connection for that server, shared with `rate-limiting`), so nodes share them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use gatehouse_model::gateway::plugins::upstream_oauth::{AuthMethod, Config, GrantType, INFO, NAME, Strategy};

use super::token_client::{ClientAuth, Grant, Prepared, SharedStore, Token, TokenClient, TokenRequest};
use super::{Flow, Phases, Plugin, PluginDef, RequestContext, ResponseContext, Shared};
use crate::counters::RedisSettings;

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: true, response: true, rewrite: false, log: false },
    build: |config, shared| Ok(Arc::new(UpstreamOAuth::new(config, shared)?)),
};

#[derive(Debug)]
pub struct UpstreamOAuth {
    request: Prepared,
    tokens: Arc<TokenClient>,
    header: HeaderName,
    purge_on: Vec<u16>,
    failure: Failure,
}

/// The answer when no token could be had, rendered once from the config.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl UpstreamOAuth {
    pub fn new(config: &serde_json::Map<String, Value>, shared: &Shared) -> Result<Self, String> {
        let tokens = &shared.tokens;
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        // The schema refuses these; a configuration that got past it anyway must not run as something else.
        if config.oauth.grant_type != GrantType::ClientCredentials {
            return Err("only the client_credentials grant is supported".into());
        }
        let auth = match config.client.auth_method {
            AuthMethod::ClientSecretBasic => ClientAuth::ClientSecretBasic,
            AuthMethod::ClientSecretPost => ClientAuth::ClientSecretPost,
            AuthMethod::None => ClientAuth::None,
            AuthMethod::ClientSecretJwt => return Err("client_secret_jwt is not supported".into()),
        };
        let pairs = |map: &Option<std::collections::BTreeMap<String, String>>| {
            map.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()
        };
        let shared_store = match config.cache.strategy {
            Strategy::Memory => None,
            Strategy::Redis => {
                let redis = &config.cache.redis;
                let settings = RedisSettings {
                    host: redis.host.clone(),
                    port: redis.port,
                    username: redis.username.clone(),
                    password: redis.password.clone(),
                    database: redis.database,
                    timeout_ms: redis.connect_timeout.max(redis.read_timeout).max(redis.send_timeout),
                    ssl: false,
                    ssl_verify: redis.ssl_verify,
                    server_name: None,
                };
                Some(shared.counters.redis(&settings)? as Arc<dyn SharedStore>)
            }
        };
        let request = TokenRequest {
            token_endpoint: config.oauth.token_endpoint.clone(),
            grant: Grant::ClientCredentials,
            auth,
            client_id: config.oauth.client_id.clone(),
            client_secret: config.oauth.client_secret.clone(),
            scopes: config.oauth.scopes.clone(),
            audience: config.oauth.audience.clone(),
            post_args: pairs(&config.oauth.token_post_args),
            headers: pairs(&config.oauth.token_headers),
            // Kong's 0 leaves OpenResty's sockets on their default (60 s); a zero deadline would fail every fetch.
            timeout: Duration::from_millis(if config.client.timeout == 0 { 60_000 } else { config.client.timeout }),
            keep_alive: config.client.keep_alive,
            verify_tls: config.client.ssl_verify,
            default_lifetime: Duration::try_from_secs_f64(config.cache.default_ttl.min(10.0 * 365.0 * 86_400.0))
                .unwrap_or(Duration::from_secs(3600)),
            renew_margin: Duration::from_secs(config.cache.eagerly_expire),
            shared_store,
            cache_salt: None,
        };
        let request = tokens.prepare(&request).map_err(|e| e.to_string())?;
        let behavior = &config.behavior;
        let header = HeaderName::from_bytes(behavior.upstream_access_token_header_name.as_bytes())
            .map_err(|_| "upstream_access_token_header_name is not a header name".to_owned())?;
        let status = StatusCode::from_u16(behavior.idp_error_response_status_code).unwrap_or(StatusCode::BAD_GATEWAY);
        let body = behavior
            .idp_error_response_body_template
            .replace("{{status}}", status.as_str())
            .replace("{{message}}", &behavior.idp_error_response_message);
        Ok(Self {
            request,
            tokens: tokens.clone(),
            header,
            purge_on: behavior.purge_token_on_upstream_status_codes.clone(),
            failure: Failure {
                status,
                content_type: HeaderValue::from_str(&behavior.idp_error_response_content_type).ok(),
                body: Bytes::from(body),
            },
        })
    }

    fn failed(&self) -> Flow {
        let mut response = Response::new(Full::new(self.failure.body.clone()));
        *response.status_mut() = self.failure.status;
        if let Some(content_type) = &self.failure.content_type {
            response.headers_mut().insert(header::CONTENT_TYPE, content_type.clone());
        }
        Flow::Respond(response)
    }
}

#[async_trait]
impl Plugin for UpstreamOAuth {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        match self.tokens.token(&self.request).await {
            Ok(token) => {
                // Replaces whatever the client sent under that name: the upstream trusts the gateway's token.
                ctx.headers.insert(self.header.clone(), token.bearer().clone());
                if !self.purge_on.is_empty() {
                    ctx.slots.set(NAME, token);
                }
                Flow::Continue
            }
            Err(error) => {
                // The detail (status, OAuth error code, body digest) is for operators; the client gets the
                // configured answer.
                tracing::warn!(request_id = ctx.request_id, error = %error, "upstream-oauth: no token from the IdP");
                self.failed()
            }
        }
    }

    fn response(&self, ctx: &mut ResponseContext<'_>) {
        if self.purge_on.contains(&ctx.status.as_u16())
            && let Some(token) = ctx.slots.get::<Arc<Token>>(NAME)
        {
            tracing::info!(request_id = ctx.request_id, status = ctx.status.as_u16(), "upstream-oauth: token purged");
            self.tokens.invalidate(&self.request, token);
        }
    }
}

#[cfg(test)]
mod tests;
