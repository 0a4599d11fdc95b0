//! What the proxy gives an upstream's balancer: the request's hash value for `consistent-hashing`, and the cookie
//! Kong sets when it hashes on one the client has not sent yet.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};

use crate::balancer::HashInput;
use crate::service::Balanced;

/// The request's hash value and the `Set-Cookie` value to add to the response, if any.
pub(super) fn hash_request(
    balanced: &Balanced,
    consumer: Option<uuid::Uuid>,
    client_ip: IpAddr,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
    path_regex: Option<&regex::Regex>,
) -> (Option<u64>, Option<HeaderValue>) {
    if !balanced.balancer.hashes() {
        return (None, None);
    }
    // Kong's `uri_capture`: a named group, or a numbered one.
    let captures = |name: &str| {
        let caps = path_regex?.captures(path)?;
        let group = match name.parse::<usize>() {
            Ok(n) => caps.get(n),
            Err(_) => caps.name(name),
        };
        group.map(|m| m.as_str().to_owned())
    };
    let mut input = HashInput { consumer, client_ip, headers, path, query, captures: &captures, chosen_cookie: None };
    let cookie = balanced.balancer.cookie_to_set(&input);
    if let Some((value, _)) = &cookie {
        input.chosen_cookie = Some(value);
    }
    (balanced.balancer.hash_value(&input), cookie.map(|(_, header)| header))
}
