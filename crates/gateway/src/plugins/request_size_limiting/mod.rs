//! `request-size-limiting` (priority 951): refuses request bodies larger than the configured size with Kong's
//! 413 (417 when the client asked `Expect: 100-continue`, so it never sends the body).
//!
//! A declared `Content-Length` is judged before anything is read; a body without one is judged by its size when
//! the proxy read it whole, and otherwise counted while it streams upstream: past the limit the upstream request
//! is cut off and the client gets the 413, unless the upstream answered first.

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::request_size_limiting::{Config, INFO};
use gatehouse_model::kong::ProxyErrorBody;

use super::{Flow, Framing, Phases, Plugin, PluginDef, RequestContext, Shared};

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: true, rewrite: false, response: false, log: false },
    build: |config, _shared: &Shared| Ok(std::sync::Arc::new(RequestSizeLimiting::new(config)?)),
};

#[derive(Debug)]
pub struct RequestSizeLimiting {
    /// In bytes; `None` (a negative size in Kong's config) refuses every request, as Kong's `length > size` does.
    limit: Option<u64>,
    require_content_length: bool,
}

impl RequestSizeLimiting {
    pub fn new(config: &Map<String, Value>) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        Ok(Self { limit: config.limit(), require_content_length: config.require_content_length })
    }

    fn too_large(&self, length: u64) -> bool {
        self.limit.is_none_or(|limit| length > limit)
    }
}

/// Kong's `kong.response.error`: its JSON body with the request id.
pub(crate) fn error(status: StatusCode, message: &str, request_id: &str) -> Flow {
    let body = ProxyErrorBody { message: message.to_owned(), request_id: request_id.to_owned() };
    let mut response = Response::new(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap_or_default())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    Flow::Respond(response)
}

fn expects_continue(ctx: &RequestContext<'_>) -> bool {
    ctx.headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

#[async_trait]
impl Plugin for RequestSizeLimiting {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        let length = match ctx.framing {
            Framing::Length(n) => Some(n),
            Framing::Chunked | Framing::Unannounced => {
                if self.require_content_length && ctx.framing != Framing::Chunked {
                    return error(
                        StatusCode::LENGTH_REQUIRED,
                        "A valid Content-Length header is required",
                        ctx.request_id,
                    );
                }
                ctx.body.as_ref().map(|b| b.len() as u64)
            }
        };
        match (length, self.limit) {
            (Some(n), _) if self.too_large(n) => {
                let status =
                    if expects_continue(ctx) { StatusCode::EXPECTATION_FAILED } else { StatusCode::PAYLOAD_TOO_LARGE };
                error(status, "Request size limit exceeded", ctx.request_id)
            }
            (Some(_), _) => Flow::Continue,
            // Streamed: counted as it goes; a limit below zero refuses even an empty body, as in Kong.
            (None, Some(limit)) => {
                ctx.body_limit = Some(ctx.body_limit.map_or(limit, |l| l.min(limit)));
                Flow::Continue
            }
            (None, None) => error(StatusCode::PAYLOAD_TOO_LARGE, "Request size limit exceeded", ctx.request_id),
        }
    }
}

#[cfg(test)]
mod tests;
