//! "Try it": the issuer's token and introspection endpoints, called in process through the issuer listener's
//! router (as a request to the issuer URL would arrive), and a look inside the token it returns.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use crate::{ConsoleError, Result};

/// POSTs a form to `url` (an issuer URL: its host and path pick the auth server and endpoint).
pub(crate) async fn post_form(
    issuer: &Router,
    url: &str,
    authorization: Option<&str>,
    fields: &[(&str, &str)],
    peer: Option<SocketAddr>,
) -> Result<(StatusCode, Value)> {
    let uri: axum::http::Uri =
        url.parse().map_err(|_| ConsoleError::Failed(StatusCode::BAD_GATEWAY, format!("bad issuer URL {url}")))?;
    let host = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
    let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    let mut request = Request::post(path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(a) = authorization {
        request = request.header(header::AUTHORIZATION, a);
    }
    let mut request = request
        .body(Body::from(body))
        .map_err(|e| ConsoleError::Failed(StatusCode::BAD_GATEWAY, format!("bad issuer request: {e}")))?;
    if let Some(peer) = peer {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    let (status, _, bytes) = crate::api::send(issuer, request).await;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// `Basic base64(id:secret)`, as the tutorial builds `authorization_value`.
pub(crate) fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// A JWT's header and claims, unverified (the introspection answer next to them says whether it is valid).
pub(crate) fn decode_jwt(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || {
        parts
            .next()
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let header = next();
    (header, next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_header_and_claims() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#);
        let c = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        let (header, claims) = decode_jwt(&format!("{h}.{c}.sig"));
        assert_eq!(header["alg"], "ES256");
        assert_eq!(claims["sub"], "x");
        assert_eq!(decode_jwt("junk"), (Value::Null, Value::Null));
        assert_eq!(basic("a", "b"), "Basic YTpi");
    }
}
