//! Field checks that several plugins' schemas share: what a plugin sends to an IdP (a URL, header names and values)
//! must be valid before it reaches the proxy.

use serde_json::Value;

/// An absolute `http` or `https` URL with a host.
pub(super) fn http_url(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        Ok(_) => Err("missing host in url".into()),
        Err(_) => Err(format!("invalid url: {s}")),
    }
}

/// Sent as a header value, so it must be one: visible ASCII, spaces and tabs only.
pub(super) fn header_value(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err("invalid header value: only visible ASCII characters, spaces and tabs are allowed".into())
    }
}

/// Sent as a header name: an RFC 9110 token.
pub(super) fn header_token(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !s.is_empty() && s.bytes().all(token) { Ok(()) } else { Err(format!("invalid header name: {s}")) }
}
