//! What the proxy answers when it fails on its own, in Kong's shape: `{"message": …, "request_id": …}` with
//! Kong's messages, so log parsers and clients that read them keep working.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use gatehouse_model::kong::ProxyErrorBody;

/// Why a configuration snapshot could not be compiled; the previous one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("service {0}: host is not a valid authority")]
    ServiceHost(uuid::Uuid),
    #[error(transparent)]
    Router(#[from] crate::router::RouterError),
    #[error("plugin {name}: {reason}")]
    Plugin { name: String, reason: String },
}

/// Bodies the proxy inspects (for plugins that read a token from them) are bounded; larger ones stream through.
pub const INSPECTED_BODY_LIMIT: usize = 64 * 1024;

/// Which side of the proxy a failure belongs to: what operators look at first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something the gateway refuses, or stalled.
    Client,
    /// The gateway's own configuration or state (no route, no service, a disabled service).
    Gateway,
    /// The service: unreachable, too slow, or not speaking HTTP.
    Upstream,
}

/// A failure of the proxy: the answer it gets ([`ProxyError`], Kong's status and message), the side at fault,
/// whether the request could be sent again without risk (nothing of it reached the upstream), and the cause,
/// for the log. Made where the failure is detected, so a timeout is known to be one without reading error text.
#[derive(Debug)]
pub struct GatewayError {
    pub kind: ProxyError,
    pub side: Side,
    pub retry_safe: bool,
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl GatewayError {
    pub fn new(kind: ProxyError, side: Side) -> Self {
        Self { kind, side, retry_safe: false, cause: None }
    }

    /// Nothing of the request was sent: a new connection may take it.
    pub fn retry_safe(mut self) -> Self {
        self.retry_safe = true;
        self
    }

    pub fn caused_by(mut self, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.cause = Some(cause.into());
        self
    }
}

impl From<ProxyError> for GatewayError {
    fn from(kind: ProxyError) -> Self {
        Self::new(kind, kind.side())
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?} side)", self.kind.message(), self.side)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
            let mut source = cause.source();
            while let Some(inner) = source {
                write!(f, ": {inner}")?;
                source = inner.source();
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// No route matches the request.
    NoRoute,
    /// The route has no service (and no plugin answered).
    NoService,
    /// The request is malformed (e.g. conflicting `Content-Length` and `Transfer-Encoding`).
    BadRequest,
    /// The client paused longer than the body timeout while sending its body.
    RequestTimeout,
    /// A method no proxy forwards (`CONNECT`, `TRACE`), as nginx refuses them.
    MethodNotAllowed,
    /// A body that must be read whole is over the limit.
    PayloadTooLarge,
    /// A streamed body grew past `request-size-limiting`'s limit (Kong's 413 and message).
    SizeLimitExceeded,
    /// The upstream answered with something that is not HTTP, or reset the connection.
    BadGateway,
    /// No upstream connection could be made.
    Unavailable,
    /// The upstream did not answer in time.
    GatewayTimeout,
    /// The service names an upstream none of whose targets can take the request (Kong's balancer message).
    NoPeer,
    Internal,
}

impl ProxyError {
    /// The side a failure of this kind usually belongs to, when the place it was found does not say.
    pub fn side(self) -> Side {
        match self {
            ProxyError::BadRequest | ProxyError::RequestTimeout | ProxyError::MethodNotAllowed => Side::Client,
            ProxyError::PayloadTooLarge | ProxyError::SizeLimitExceeded => Side::Client,
            ProxyError::BadGateway | ProxyError::GatewayTimeout | ProxyError::NoPeer => Side::Upstream,
            ProxyError::NoRoute | ProxyError::NoService | ProxyError::Unavailable | ProxyError::Internal => {
                Side::Gateway
            }
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoService => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BadRequest => StatusCode::BAD_REQUEST,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::PayloadTooLarge | ProxyError::SizeLimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadGateway => StatusCode::BAD_GATEWAY,
            ProxyError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::NoPeer => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no Route matched with those values",
            ProxyError::NoService => "no Service found with those values",
            ProxyError::BadRequest => "Bad request",
            ProxyError::MethodNotAllowed => "Method not allowed",
            ProxyError::RequestTimeout => "Request timeout",
            ProxyError::PayloadTooLarge => "Payload too large",
            ProxyError::SizeLimitExceeded => "Request size limit exceeded",
            ProxyError::BadGateway => "An invalid response was received from the upstream server",
            ProxyError::Unavailable => "Service unavailable",
            ProxyError::GatewayTimeout => "The upstream server is timing out",
            ProxyError::NoPeer => "failure to get a peer from the ring-balancer",
            ProxyError::Internal => "An unexpected error occurred",
        }
    }

    pub fn to_response(self, request_id: &str) -> Response<Full<Bytes>> {
        let body = ProxyErrorBody { message: self.message().to_owned(), request_id: request_id.to_owned() };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(bytes)));
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        response
    }
}

/// Whether a failure was a timeout, judged by type along its causes: the gateway's idle timers
/// ([`crate::body::IdleTimeout`]) and I/O `TimedOut` (a connector's connect timeout).
pub fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<crate::body::IdleTimeout>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn kong_shaped_bodies() {
        for (e, status, message) in [
            (ProxyError::NoRoute, 404, "no Route matched with those values"),
            (ProxyError::PayloadTooLarge, 413, "Payload too large"),
            (ProxyError::SizeLimitExceeded, 413, "Request size limit exceeded"),
            (ProxyError::MethodNotAllowed, 405, "Method not allowed"),
            (ProxyError::RequestTimeout, 408, "Request timeout"),
            (ProxyError::BadGateway, 502, "An invalid response was received from the upstream server"),
            (ProxyError::Unavailable, 503, "Service unavailable"),
            (ProxyError::GatewayTimeout, 504, "The upstream server is timing out"),
        ] {
            let res = e.to_response("abc123");
            assert_eq!(res.status().as_u16(), status);
            assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json; charset=utf-8");
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v, serde_json::json!({"message": message, "request_id": "abc123"}));
        }
    }

    const EVERY_ERROR: [ProxyError; 12] = [
        ProxyError::NoRoute,
        ProxyError::NoService,
        ProxyError::BadRequest,
        ProxyError::RequestTimeout,
        ProxyError::MethodNotAllowed,
        ProxyError::PayloadTooLarge,
        ProxyError::SizeLimitExceeded,
        ProxyError::BadGateway,
        ProxyError::Unavailable,
        ProxyError::GatewayTimeout,
        ProxyError::NoPeer,
        ProxyError::Internal,
    ];

    /// A variant added to `ProxyError` fails to compile here until it is listed in [`EVERY_ERROR`] too.
    #[allow(dead_code)]
    fn listed(e: ProxyError) {
        match e {
            ProxyError::NoRoute
            | ProxyError::NoService
            | ProxyError::BadRequest
            | ProxyError::RequestTimeout
            | ProxyError::MethodNotAllowed
            | ProxyError::PayloadTooLarge
            | ProxyError::SizeLimitExceeded
            | ProxyError::BadGateway
            | ProxyError::Unavailable
            | ProxyError::GatewayTimeout
            | ProxyError::NoPeer
            | ProxyError::Internal => {}
        }
    }

    /// Every body the proxy answers on its own, as a snapshot (`src/snapshots/`): status, content type and
    /// body. The request id differs per request, so it is redacted once its shape is checked.
    #[tokio::test]
    async fn every_error_body() {
        for e in EVERY_ERROR {
            let request_id = "5f0e3a1c9b2d4e6f000000000000002a";
            let res = e.to_response(request_id);
            let status = res.status().as_u16();
            let content_type = res.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body["request_id"], request_id);
            let seen = serde_json::json!({"status": status, "content-type": content_type, "body": body});
            insta::assert_json_snapshot!(format!("proxy_error_{e:?}"), seen, {".body.request_id" => "[request id]"});
        }
    }
}
