//! Ingress checks: what the proxy refuses or strips before routing and before any plugin runs (nginx's and Kong's
//! rules, and the hop-by-hop headers of the message as received), and the read-ahead of bodies of unknown length.

use super::*;

pub(super) const HOP_BY_HOP_COUNT: usize = 8;
/// Hop-by-hop headers (RFC 9110 §7.6.1) and their historical companions: never forwarded. `Connection` first.
pub(super) const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// The host a request is for, from [`check_head`].
#[derive(Debug)]
pub(super) struct TargetHost {
    pub(super) value: Option<HeaderValue>,
    /// The request target carried the host and the `Host` header (if any) differs or is missing.
    pub(super) replaces_header: bool,
}

/// Refuses what nginx (and so Kong) refuses before routing, and finds the request's host (RFC 9112 §3.2): the
/// request target's authority when it has one, else the one `Host` header, which an HTTP/1.1 request must
/// have. Two `Host` or `Authorization` headers are refused too: a proxy
/// and its upstream could each read a different one.
pub(super) fn check_head(parts: &http::request::Parts) -> Result<TargetHost, ProxyError> {
    check_method(&parts.method)?;
    let headers = &parts.headers;
    // Only a map with some name twice can have two of these; most have none, and the counts are free.
    if headers.len() != headers.keys_len()
        && (headers.get_all(header::HOST).iter().nth(1).is_some()
            || headers.get_all(header::AUTHORIZATION).iter().nth(1).is_some())
    {
        return Err(ProxyError::BadRequest);
    }
    let host = headers.get(header::HOST);
    if host.is_some_and(|h| !valid_host(h.as_bytes())) {
        return Err(ProxyError::BadRequest);
    }
    let target = parts.uri.authority().filter(|_| parts.version < http::Version::HTTP_2 || host.is_none());
    match target {
        // HTTP/1's absolute form names the host, and a proxy must prefer it to `Host` (RFC 9112 §3.2.2). An
        // HTTP/2 request's `:authority` counts only without a `Host` header, which nginx (so Kong) routes on.
        Some(authority) => {
            let named = authority.as_str();
            if !valid_host(named.as_bytes()) {
                return Err(ProxyError::BadRequest);
            }
            let differs = host.is_none_or(|h| !h.as_bytes().eq_ignore_ascii_case(named.as_bytes()));
            let value = HeaderValue::from_str(named).map_err(|_| ProxyError::BadRequest)?;
            Ok(TargetHost { value: Some(value), replaces_header: differs })
        }
        None if host.is_none() && parts.version == http::Version::HTTP_11 => Err(ProxyError::BadRequest),
        None => Ok(TargetHost { value: host.cloned(), replaces_header: false }),
    }
}

/// nginx reads a method as upper-case letters, `_` and `-` (so `get` is 400) and refuses `CONNECT` and
/// `TRACE` with 405.
pub(super) fn check_method(method: &http::Method) -> Result<(), ProxyError> {
    use http::Method;
    match *method {
        Method::GET | Method::POST | Method::PUT | Method::DELETE | Method::HEAD | Method::OPTIONS | Method::PATCH => {
            Ok(())
        }
        Method::CONNECT | Method::TRACE => Err(ProxyError::MethodNotAllowed),
        _ if method.as_str().bytes().all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-') => Ok(()),
        _ => Err(ProxyError::BadRequest),
    }
}

/// A host and optional port as RFC 3986 allows them (reg-name, IP literal): no `/`, `@`, space or control
/// character that could make two parsers read two hosts. Empty is allowed (RFC 9110 §7.2).
pub(super) fn valid_host(host: &[u8]) -> bool {
    host.iter().all(|&b| HOST_BYTES[usize::from(b)])
}

/// The bytes [`valid_host`] allows, as a table: every request's host goes through it.
pub(super) const HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=%:[]";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// Whether a (lower-case, dash-spelled) header name is one the gateway sets or vouches for.
pub(super) fn owned_by_gateway(name: &str) -> bool {
    ["x-consumer-", "x-credential-", "x-forwarded-", "x-kong-"].iter().any(|prefix| name.starts_with(prefix))
        || matches!(name, "x-anonymous-consumer" | "x-real-ip" | "via" | "forwarded")
}

/// Drops header names with `_` (unless allowed, and then still those that spell a name the gateway owns once
/// `_` reads as `-`: CGI-style upstreams merge `X_Consumer_ID` with `X-Consumer-ID`), and `Forwarded` from a
/// peer that is not a trusted proxy, whose `X-Forwarded-*` are replaced too.
pub(super) fn drop_unsafe_names(headers: &mut HeaderMap, allow_underscores: bool, trusted: bool) {
    let mut doomed: SmallVec<[HeaderName; 2]> = SmallVec::new();
    for name in headers.keys() {
        let text = name.as_str();
        // A plain loop: header names are short, and `str::contains` costs more to set up than to run on them.
        let drop = if text.bytes().any(|b| b == b'_') {
            !allow_underscores || owned_by_gateway(&text.replace('_', "-"))
        } else {
            !trusted && name == names::FORWARDED
        };
        if drop {
            doomed.push(name.clone());
        }
    }
    if doomed.is_empty() {
        return;
    }
    for name in doomed {
        tracing::debug!(header = name.as_str(), "dropped a request header");
        headers.remove(name);
    }
}

/// What [`read_ahead`] found.
pub(super) enum ReadAhead {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// The body is larger: what was read, and the rest.
    Partial(Bytes, Incoming),
}

/// Reads a body of unknown length until it ends or passes [`INSPECTED_BODY_LIMIT`]; a client that pauses
/// longer than `timeout` gets 408, a broken body (malformed chunks, a reset) 400, and nothing goes upstream.
pub(super) async fn read_ahead(
    mut body: Incoming,
    sleeps: &Sleeps,
    timeout: Duration,
) -> Result<ReadAhead, ProxyError> {
    let mut read = bytes::BytesMut::new();
    while !body.is_end_stream() {
        match sleeps.timeout(timeout, body.frame()).await {
            Err(_) => return Err(ProxyError::RequestTimeout),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(ProxyError::BadRequest),
            // Request trailers are not forwarded (nor are they by nginx).
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                    if read.len() > INSPECTED_BODY_LIMIT {
                        return Ok(ReadAhead::Partial(read.freeze(), body));
                    }
                }
            }
        }
    }
    Ok(ReadAhead::Whole(read.freeze()))
}

pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present finds which of the eight to remove; most messages carry none of them, or
    // only `Connection: keep-alive` (every nginx response), and a removal is a hash lookup.
    let mut present = [false; HOP_BY_HOP_COUNT];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[i] = true;
        }
    }
    // `Connection` (HOP_BY_HOP[0]) may name further headers; options that name one of the eight (`keep-alive`,
    // `upgrade`, `te`, ...) need no lookup of their own.
    if present[0] {
        let names_others = headers.get_all(header::CONNECTION).iter().any(|value| {
            value.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii).any(|option| {
                !option.is_empty() && !HOP_BY_HOP.iter().any(|hop| option.eq_ignore_ascii_case(hop.as_str().as_bytes()))
            })
        });
        if names_others {
            let listed: Vec<HeaderName> = headers
                .get_all(header::CONNECTION)
                .iter()
                .flat_map(|v| v.as_bytes().split(|&b| b == b','))
                .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
                .collect();
            // The message's own framing and target are not the sender's to withdraw: a `preserve_host` route would
            // otherwise send a request with no `Host`.
            for name in listed.iter().filter(|name| **name != header::HOST && **name != header::CONTENT_LENGTH) {
                headers.remove(name);
            }
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, present)| *present) {
        headers.remove(name);
    }
}
