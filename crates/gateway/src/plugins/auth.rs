//! What every authentication plugin shares, as Kong's authentication plugins behave: spoofed identity headers
//! removed, the consumer's `X-Consumer-*` headers, Kong's "logical OR" between authentication plugins, the
//! anonymous fallback and Kong's 401 bodies. A new authentication plugin (key-auth, openid-connect) calls these
//! rather than repeating them.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use super::{Flow, RequestContext};
use crate::consumers::Consumer;

pub const X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
pub const X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
pub const X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
pub const X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");

/// Identity headers are only ever set by the gateway: whatever the client sent under these names goes.
pub fn remove_spoofed(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            n.starts_with("x-credential-") || n.starts_with("x-consumer-") || n == "x-anonymous-consumer"
        })
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// The consumer's `X-Consumer-Id`, `-Custom-Id` and `-Username`; a field the consumer lacks removes its header.
pub fn set_consumer_headers(headers: &mut HeaderMap, consumer: &Consumer) {
    let mut set = |name: HeaderName, value: &Option<HeaderValue>| match value {
        Some(v) => {
            headers.insert(name, v.clone());
        }
        None => {
            headers.remove(name);
        }
    };
    set(X_CONSUMER_ID, &consumer.headers.id);
    set(X_CONSUMER_CUSTOM_ID, &consumer.headers.custom_id);
    set(X_CONSUMER_USERNAME, &consumer.headers.username);
}

/// Kong's "logical OR": a plugin configured with `anonymous` lets through a request that another
/// authentication plugin has already accepted.
pub fn accepted_by_another(anonymous: &str, ctx: &RequestContext<'_>) -> bool {
    !anonymous.is_empty() && ctx.credential.is_some()
}

/// Authentication failed and the plugin has `anonymous` (a consumer id or username): the request goes on as that
/// consumer, marked `X-Anonymous-Consumer: true`. A missing anonymous consumer is Kong's 500.
pub fn as_anonymous(ctx: &mut RequestContext<'_>, anonymous: &str, plugin: &str) -> Flow {
    let Some(consumer) = ctx.consumers.by_id_or_username(anonymous).cloned() else {
        tracing::error!(request_id = ctx.request_id, anonymous, plugin, "the anonymous consumer does not exist");
        let message = format!("anonymous consumer {anonymous} is configured but doesn't exist");
        let body = json!({"message": message, "request_id": ctx.request_id});
        return Flow::Respond(json_response(StatusCode::INTERNAL_SERVER_ERROR, &body, None));
    };
    set_consumer_headers(ctx.headers, &consumer);
    ctx.headers.insert(X_ANONYMOUS_CONSUMER, HeaderValue::from_static("true"));
    ctx.consumer = Some(consumer);
    Flow::Continue
}

/// Kong's 401: a JSON body and the plugin's `WWW-Authenticate` challenge.
pub fn unauthorized(body: &Value, challenge: &'static str) -> Flow {
    Flow::Respond(json_response(StatusCode::UNAUTHORIZED, body, Some(HeaderValue::from_static(challenge))))
}

pub fn json_response(status: StatusCode, body: &Value, challenge: Option<HeaderValue>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    if let Some(challenge) = challenge {
        h.insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}
