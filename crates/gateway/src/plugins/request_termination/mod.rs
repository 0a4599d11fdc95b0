//! `request-termination` (priority 2): answers with a fixed status and message or body instead of proxying, for
//! maintenance windows or to block a route for one consumer.

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use gatehouse_model::gateway::plugins::request_termination::{Config, INFO};

use super::{Flow, Phases, Plugin, PluginDef, RequestContext, Shared};

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: true, rewrite: false, response: false, log: false },
    build: |config, _shared: &Shared| Ok(std::sync::Arc::new(RequestTermination::new(config)?)),
};

#[derive(Debug)]
pub struct RequestTermination {
    config: Config,
}

impl RequestTermination {
    pub fn new(config: &Map<String, Value>) -> Result<Self, String> {
        serde_json::from_value(Value::Object(config.clone())).map(|config| Self { config }).map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Plugin for RequestTermination {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        if let Some(trigger) = &self.config.trigger {
            let in_query = ctx
                .query
                .as_deref()
                .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == trigger.as_str()));
            if !ctx.headers.contains_key(trigger.as_str()) && !in_query {
                return Flow::Continue;
            }
        }
        let status = StatusCode::from_u16(self.config.status_code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let (body, content_type) = if self.config.echo {
            let headers: serde_json::Map<String, Value> =
                ctx.headers.iter().map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("")))).collect();
            let echo = json!({"message": self.config.message, "request": {"method": ctx.method.as_str(), "path": ctx.path,
                "query": ctx.query, "headers": headers}});
            (echo.to_string(), "application/json; charset=utf-8".to_owned())
        } else if let Some(body) = &self.config.body {
            (body.clone(), self.config.content_type.clone().unwrap_or_else(|| "application/json; charset=utf-8".into()))
        } else {
            let message = self
                .config
                .message
                .clone()
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("Terminated").to_owned());
            (json!({"message": message}).to_string(), "application/json; charset=utf-8".to_owned())
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(v) = HeaderValue::from_str(&content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        Flow::Respond(response)
    }
}
