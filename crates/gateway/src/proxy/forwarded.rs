//! The headers the proxy adds on the way upstream: the client's address behind trusted proxies,
//! `X-Forwarded-*`, `X-Real-IP` and `Via`.

use super::*;

impl Proxy {
    pub(super) fn client_address(&self, conn: &ClientConnection, headers: &HeaderMap) -> IpAddr {
        let peer = conn.peer.ip();
        if !conn.trusted {
            return peer;
        }
        gatehouse_net::client_address(peer, headers, &self.settings.trusted_ips)
    }

    /// A trusted proxy in front says the client reached it over HTTPS (Kong's `forwarded_proto`).
    pub(super) fn forwarded_https(&self, conn: &ClientConnection, headers: &HeaderMap) -> bool {
        conn.trusted
            && headers.get(&names::X_FORWARDED_PROTO).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
    }

    /// The host a trusted proxy in front says the client asked for (Kong's `forwarded_host`).
    pub(super) fn forwarded_host<'h>(&self, conn: &ClientConnection, headers: &'h HeaderMap) -> Option<&'h str> {
        if !conn.trusted {
            return None;
        }
        headers.get(&names::X_FORWARDED_HOST)?.to_str().ok().filter(|h| !h.is_empty() && valid_host(h.as_bytes()))
    }

    pub(super) fn trusted(&self, ip: IpAddr) -> bool {
        self.settings.trusted_ips.iter().any(|n| n.contains(&ip))
    }

    /// `host` is the client's `Host` without its port, lower-cased. `X-Forwarded-Port` is the port the client
    /// connected to (Kong's `server_port`), not one its `Host` names.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forwarded_headers(
        &self,
        headers: &mut HeaderMap,
        conn: &ClientConnection,
        client: IpAddr,
        host: &str,
        path: &str,
        strip_path: bool,
        matched: Option<&str>,
    ) {
        // From an untrusted peer, every X-Forwarded-* value is the client's claim and is replaced.
        let trusted = conn.trusted;
        let keep = |h: &HeaderMap, name: &HeaderName| trusted && h.contains_key(name);
        let appended = match headers.get(&names::X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(existing) if trusted => HeaderValue::from_str(&format!("{existing}, {}", conn.peer.ip())).ok(),
            _ => None,
        };
        headers.insert(names::X_FORWARDED_FOR, appended.unwrap_or_else(|| conn.peer_value.clone()));
        if !keep(headers, &names::X_FORWARDED_PROTO) {
            let proto = if conn.tls { "https" } else { "http" };
            headers.insert(names::X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
        if !keep(headers, &names::X_FORWARDED_HOST) {
            put(headers, names::X_FORWARDED_HOST, host);
        }
        if !keep(headers, &names::X_FORWARDED_PORT) {
            headers.insert(names::X_FORWARDED_PORT, conn.local_port_value.clone());
        }
        if !keep(headers, &names::X_FORWARDED_PATH) {
            put(headers, names::X_FORWARDED_PATH, path);
        }
        match matched {
            Some(prefix) if strip_path && prefix != "/" && !keep(headers, &names::X_FORWARDED_PREFIX) => {
                put(headers, names::X_FORWARDED_PREFIX, prefix);
            }
            _ if !keep(headers, &names::X_FORWARDED_PREFIX) => {
                headers.remove(&names::X_FORWARDED_PREFIX);
            }
            _ => {}
        }
        if client == conn.peer.ip() {
            headers.insert(names::X_REAL_IP, conn.peer_value.clone());
        } else {
            put(headers, names::X_REAL_IP, &client.to_string());
        }
        append_via(headers);
    }
}

/// Adds this gateway to `Via`, after any proxies already listed.
pub(super) fn append_via(headers: &mut HeaderMap) {
    let appended = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(existing) => HeaderValue::from_str(&format!("{existing}, {VIA}")).ok(),
        None => None,
    };
    headers.insert(header::VIA, appended.unwrap_or(HeaderValue::from_static(VIA)));
}
