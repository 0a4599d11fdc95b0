//! Who the client is when proxies stand in front of a listener: one answer for the gateway's proxy (its
//! `X-Forwarded-*` headers, access log, plugins) and the issuer's brute-force limits, which used to differ.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The client's address: the peer, unless the peer is a trusted proxy; then `X-Forwarded-For` (every such header,
/// in order, as one list) is read from the right, each trusted hop passed over, and the first hop that is not
/// trusted is the client (nginx's `real_ip_recursive on`). When every hop is trusted, the leftmost is. A hop that
/// is not an address ends the walk at the last address read: whatever stands to its left was written by someone
/// no trusted proxy vouches for.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let values: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    let mut address = peer;
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Ok(hop) = hop.trim().parse::<IpAddr>() else { break };
        address = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    address
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = forwarded(&["1.2.3.4, 5.6.7.8, 10.1.1.1"]);
        assert_eq!(client_address(ip("10.0.0.9"), &h, &trusted), ip("5.6.7.8"), "the nearest untrusted hop");
        assert_eq!(client_address(ip("9.9.9.9"), &h, &trusted), ip("9.9.9.9"), "an untrusted peer is the client");
        assert_eq!(client_address(ip("10.0.0.9"), &HeaderMap::new(), &trusted), ip("10.0.0.9"));
        assert_eq!(client_address(ip("10.0.0.9"), &h, &[]), ip("10.0.0.9"));
    }

    #[test]
    fn several_headers_read_as_one_list_and_garbage_stops_the_walk() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let two = forwarded(&["1.2.3.4", "10.1.1.1, 10.2.2.2"]);
        assert_eq!(client_address(ip("10.0.0.9"), &two, &trusted), ip("1.2.3.4"));
        let all_trusted = forwarded(&["10.3.3.3, 10.1.1.1"]);
        assert_eq!(client_address(ip("10.0.0.9"), &all_trusted, &trusted), ip("10.3.3.3"), "the leftmost");
        let garbage = forwarded(&["1.2.3.4, not-an-ip, 10.1.1.1"]);
        assert_eq!(client_address(ip("10.0.0.9"), &garbage, &trusted), ip("10.1.1.1"), "not past the garbage");
        let v6 = forwarded(&["2001:db8::1"]);
        assert_eq!(client_address(ip("10.0.0.9"), &v6, &trusted), ip("2001:db8::1"));
    }
}
