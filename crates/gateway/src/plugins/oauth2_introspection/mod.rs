//! `oauth2-introspection` (priority 1700). Its configuration is accepted and stored; the behaviour arrives with its
//! own change. Until then it fails closed: a route it protects answers 500 rather than letting requests through
//! unauthenticated.

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use gatehouse_model::gateway::plugins::oauth2_introspection::{Config, NAME, PRIORITY};

use super::{Flow, Plugin, RequestContext};

#[derive(Debug)]
pub struct OAuth2Introspection {
    #[allow(dead_code)]
    config: Config,
}

impl OAuth2Introspection {
    pub fn new(config: &Value) -> Result<Self, String> {
        serde_json::from_value(config.clone()).map(|config| Self { config }).map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Plugin for OAuth2Introspection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn priority(&self) -> i32 {
        PRIORITY
    }

    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        tracing::error!(
            request_id = ctx.request_id,
            "oauth2-introspection is configured but not available in this build"
        );
        let body = json!({"message": "An unexpected error occurred", "request_id": ctx.request_id}).to_string();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        Flow::Respond(response)
    }
}
