//! Kong's `traditional_compatible` router: every field a route sets must match (any one value per field; every
//! header), and among matching routes the one with the highest priority wins. The priority follows Kong's
//! ordering: how many fields the route sets, plain hosts only, number of headers, regex paths over prefixes, then
//! `regex_priority` (regex routes only), then the longest path. A route with several paths competes once per path.
//!
//! Regex paths run on the `regex` crate's linear-time engine, so no path can make matching blow up; they are read
//! as Kong's PCRE router reads them (literal braces, named groups) by `model`'s `route_regex`, which the entity
//! validation uses too.

use std::borrow::Cow;
use std::sync::Arc;

use http::HeaderMap;
use regex::Regex;

/// What the router and the proxy need to know about a route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub id: uuid::Uuid,
    pub name: Option<String>,
    pub service_id: Option<uuid::Uuid>,
    pub protocols: Vec<String>,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub https_redirect_status_code: u16,
    /// Whether a body of unknown length is read (up to the inspected-body limit) before the request goes
    /// upstream, so that a broken body is refused before anything is sent.
    pub request_buffering: bool,
    /// The `prometheus` plugin's handles to this route's series, made on its first recorded request.
    pub prometheus: crate::plugins::prometheus::RouteSeriesCell,
    /// The route as configured, for the log serializer's `route`: kept only when the configuration has a
    /// plugin that serializes requests.
    pub entity: Option<Box<gatehouse_model::gateway::snapshot::Route>>,
}

#[derive(Debug, Clone)]
pub struct RouteRules {
    pub hosts: Vec<String>,
    /// Server names the route is for over TLS.
    pub snis: Vec<String>,
    pub methods: Vec<String>,
    pub headers: Vec<(String, Vec<String>)>,
    pub paths: Vec<String>,
    pub regex_priority: i64,
}

#[derive(Debug)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: the stored suffix is `.example.com`.
    Suffix(String),
    /// `example.*`: the stored prefix is `example.`.
    Prefix(String),
}

#[derive(Debug)]
struct HostRule {
    pattern: HostPattern,
    port: Option<u16>,
}

impl HostPattern {
    /// `host` lower-cased, without port: `*.` + domain, domain + `.*`, or a plain name.
    fn parse(host: String) -> Self {
        if let Some(rest) = host.strip_prefix('*') {
            HostPattern::Suffix(rest.to_owned())
        } else if let Some(rest) = host.strip_suffix('*') {
            HostPattern::Prefix(rest.to_owned())
        } else {
            HostPattern::Exact(host)
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Suffix(s) => host.len() > s.len() && host.to_ascii_lowercase().ends_with(s.as_str()),
            HostPattern::Prefix(p) => host.len() > p.len() && host.to_ascii_lowercase().starts_with(p.as_str()),
        }
    }

    /// A route's SNI: Kong drops a final dot, which a fully qualified name may carry.
    fn sni(name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        let trimmed = match lower.strip_suffix('.') {
            Some(bare) if !bare.is_empty() => bare.to_owned(),
            _ => lower,
        };
        Self::parse(trimmed)
    }
}

impl HostRule {
    fn parse(s: &str) -> Self {
        let lower = s.to_ascii_lowercase();
        let (host, port) = match lower.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), p.parse().ok()),
            _ => (lower.clone(), None),
        };
        Self { pattern: HostPattern::parse(host), port }
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        self.pattern.matches(host)
    }

    fn is_wildcard(&self) -> bool {
        !matches!(self.pattern, HostPattern::Exact(_))
    }
}

#[derive(Debug)]
enum ValueRule {
    /// Compared case-insensitively.
    Exact(String),
    /// `~*` values: a case-insensitive regex.
    Regex(Regex),
}

#[derive(Debug)]
struct HeaderRule {
    name: http::HeaderName,
    values: Vec<ValueRule>,
}

#[derive(Debug)]
enum PathRule {
    Prefix(String),
    Regex(Regex),
}

/// The parts of a route shared by all its paths.
#[derive(Debug)]
struct Rules {
    hosts: Vec<HostRule>,
    snis: Vec<HostPattern>,
    /// Whether `protocols` has `https` or `grpcs`: the route can be taken on the TLS listener. A route without
    /// them is not a candidate there, so the next matching route is; a route without `http` is still one on the
    /// plain listener, where it answers with its `https_redirect_status_code`.
    over_tls: bool,
    methods: Vec<String>,
    headers: Vec<HeaderRule>,
}

#[derive(Debug)]
struct Candidate {
    route: Arc<RouteConfig>,
    rules: Arc<Rules>,
    path: Option<PathRule>,
    priority: (u8, bool, usize, bool, i64, usize),
}

/// What the router looks at in a request. The headers have their own lifetime so that a match (which borrows the
/// path) does not keep them borrowed: the proxy moves them into the upstream request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a, 'h> {
    pub method: &'a str,
    /// Lower-case host without port.
    pub host: &'a str,
    pub port: u16,
    /// The normalized path, without query.
    pub path: &'a str,
    pub headers: &'h HeaderMap,
    /// Whether the request came over TLS, and the server name the client sent in its handshake (if any).
    pub tls: bool,
    pub sni: Option<&'a str>,
}

/// A route and what it matched: the route borrows the router's configuration (`'s`), the matched part the
/// request's path (`'r`).
#[derive(Debug)]
pub struct RouteMatch<'s, 'r> {
    pub route: &'s Arc<RouteConfig>,
    /// The part of the path the route matched (the whole regex match, or the prefix).
    pub matched: Option<&'r str>,
    /// The regex path that matched, for plugins that read its captures.
    pub regex: Option<&'s Regex>,
}

#[derive(Debug, Default)]
pub struct Router {
    candidates: Vec<Candidate>,
    /// With many candidates, the plain-prefix ones by their prefix; `None` scans every candidate in order.
    index: Option<PrefixIndex>,
}

/// A request can only match a plain-prefix candidate whose prefix is the start of its path, so the router looks up
/// the request path's starts that have the length of some indexed prefix (a handful of lengths, however many
/// routes) and scans only the candidates it finds, plus those the index cannot place (regex paths, no path, short
/// prefixes). Positions are the candidates' places in priority order, and the lowest matching one wins, exactly
/// as in the scan.
#[derive(Debug, Default)]
struct PrefixIndex {
    by_prefix: std::collections::HashMap<Box<str>, Vec<u32>>,
    /// The distinct lengths of the indexed prefixes, ascending.
    lengths: Vec<usize>,
    /// Every other candidate, ascending.
    rest: Vec<u32>,
}

impl PrefixIndex {
    /// Up to this many candidates the router scans them all, which is cheaper than hashing.
    const SCANNED: usize = 16;
    /// Prefixes shorter than this (`/`, `/a`) would gather many routes under one key; they are scanned.
    const SHORTEST: usize = 3;

    fn new(candidates: &[Candidate]) -> Option<Self> {
        if candidates.len() <= Self::SCANNED {
            return None;
        }
        let mut index = Self::default();
        for (at, c) in candidates.iter().enumerate() {
            let at = u32::try_from(at).ok()?;
            match &c.path {
                Some(PathRule::Prefix(p)) if p.len() >= Self::SHORTEST => {
                    index.by_prefix.entry(p.as_str().into()).or_default().push(at);
                    if let Err(place) = index.lengths.binary_search(&p.len()) {
                        index.lengths.insert(place, p.len());
                    }
                }
                _ => index.rest.push(at),
            }
        }
        Some(index)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("route {route}: invalid regex {pattern}: {error}")]
pub struct RouterError {
    pub route: uuid::Uuid,
    pub pattern: String,
    pub error: String,
}

impl Router {
    pub fn new(routes: Vec<(Arc<RouteConfig>, RouteRules)>) -> Result<Self, RouterError> {
        let mut candidates = Vec::new();
        for (route, rules) in routes {
            let hosts: Vec<HostRule> = rules.hosts.iter().map(|h| HostRule::parse(h)).collect();
            let headers = rules
                .headers
                .iter()
                .filter_map(|(name, values)| {
                    let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
                    let values = values
                        .iter()
                        .map(|v| match v.strip_prefix("~*") {
                            Some(pattern) => Regex::new(&format!("(?i){pattern}"))
                                .map(ValueRule::Regex)
                                .map_err(|e| RouterError { route: route.id, pattern: v.clone(), error: e.to_string() }),
                            None => Ok(ValueRule::Exact(v.clone())),
                        })
                        .collect::<Result<Vec<_>, _>>();
                    Some(values.map(|values| HeaderRule { name, values }))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let header_count = headers.len();
            let snis: Vec<HostPattern> = rules.snis.iter().map(|name| HostPattern::sni(name)).collect();
            let weight = [
                !hosts.is_empty(),
                !rules.methods.is_empty(),
                !headers.is_empty(),
                !rules.paths.is_empty(),
                !snis.is_empty(),
            ]
            .iter()
            .filter(|set| **set)
            .count() as u8;
            let plain_hosts = !hosts.is_empty() && hosts.iter().all(|h| !h.is_wildcard());
            let over_tls = route.protocols.iter().any(|p| matches!(p.as_str(), "https" | "grpcs"));
            let shared = Arc::new(Rules { hosts, snis, over_tls, methods: rules.methods.clone(), headers });
            let paths: Vec<Option<&String>> =
                if rules.paths.is_empty() { vec![None] } else { rules.paths.iter().map(Some).collect() };
            for path in paths {
                let (rule, is_regex, len) = match path {
                    None => (None, false, 0),
                    Some(p) => match p.strip_prefix('~') {
                        Some(pattern) => {
                            let re = gatehouse_model::gateway::route_regex::compile(pattern)
                                .map_err(|error| RouterError { route: route.id, pattern: p.clone(), error })?;
                            (Some(PathRule::Regex(re)), true, pattern.len())
                        }
                        None => (Some(PathRule::Prefix(p.clone())), false, p.len()),
                    },
                };
                let regex_priority = if is_regex { rules.regex_priority } else { 0 };
                candidates.push(Candidate {
                    route: route.clone(),
                    rules: shared.clone(),
                    path: rule,
                    priority: (weight, plain_hosts, header_count, is_regex, regex_priority, len),
                });
            }
        }
        // Highest priority first; equal priorities fall back to the route id, as Kong's ATC router does.
        candidates.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.route.id.cmp(&b.route.id)));
        let index = PrefixIndex::new(&candidates);
        Ok(Self { candidates, index })
    }

    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    pub fn find<'s, 'r>(&'s self, req: &RequestFacts<'r, '_>) -> Option<RouteMatch<'s, 'r>> {
        let Some(index) = &self.index else {
            return self.candidates.iter().find_map(|c| Self::check(c, req));
        };
        let mut best: Option<(u32, RouteMatch<'s, 'r>)> = None;
        // Scans `positions` (ascending) for the first match that comes before the best so far.
        let scan = |positions: &[u32], best: &mut Option<(u32, RouteMatch<'s, 'r>)>| {
            for &at in positions {
                if best.as_ref().is_some_and(|(b, _)| *b <= at) {
                    return;
                }
                if let Some(found) = self.candidates.get(at as usize).and_then(|c| Self::check(c, req)) {
                    *best = Some((at, found));
                    return;
                }
            }
        };
        for &len in &index.lengths {
            if len > req.path.len() {
                break;
            }
            // A length that cuts a character cannot start the path: a prefix is whole characters.
            if let Some(positions) = req.path.get(..len).and_then(|start| index.by_prefix.get(start)) {
                scan(positions, &mut best);
            }
        }
        scan(&index.rest, &mut best);
        best.map(|(_, found)| found)
    }

    /// Whether candidate `c` matches the request, and what it matched.
    fn check<'s, 'r>(c: &'s Candidate, req: &RequestFacts<'r, '_>) -> Option<RouteMatch<'s, 'r>> {
        let rules = &c.rules;
        if req.tls && !rules.over_tls {
            return None;
        }
        // Kong's `(net.protocol != "https" || tls.sni == …)`: a route's SNIs count over TLS only.
        if req.tls
            && !rules.snis.is_empty()
            && !req.sni.is_some_and(|sni| {
                let sni = sni.strip_suffix('.').unwrap_or(sni);
                rules.snis.iter().any(|pattern| pattern.matches(sni))
            })
        {
            return None;
        }
        if !rules.methods.is_empty() && !rules.methods.iter().any(|m| m == req.method) {
            return None;
        }
        if !rules.hosts.is_empty() && !rules.hosts.iter().any(|h| h.matches(req.host, req.port)) {
            return None;
        }
        for rule in &rules.headers {
            let mut values = req.headers.get_all(&rule.name).iter().filter_map(|v| v.to_str().ok());
            let ok = values.any(|v| {
                rule.values.iter().any(|want| match want {
                    ValueRule::Exact(w) => w.eq_ignore_ascii_case(v),
                    ValueRule::Regex(re) => re.is_match(v),
                })
            });
            if !ok {
                return None;
            }
        }
        let (matched, regex) = match &c.path {
            None => (None, None),
            Some(PathRule::Prefix(p)) => {
                (Some(&req.path[..req.path.starts_with(p.as_str()).then_some(p.len())?]), None)
            }
            Some(PathRule::Regex(re)) => (Some(&req.path[..re.find(req.path)?.end()]), Some(re)),
        };
        Some(RouteMatch { route: &c.route, matched, regex })
    }
}

/// Normalizes a request path as Kong does before matching: percent-escapes of unreserved characters decoded, other
/// escapes upper-cased, dot segments removed, repeated slashes merged. `None` for a malformed escape. Most paths
/// are normal already and come back borrowed.
pub fn normalize_path(raw: &str) -> Option<Cow<'_, str>> {
    if is_normal(raw) { Some(Cow::Borrowed(raw)) } else { normalize_slowly(raw).map(Cow::Owned) }
}

/// Whether normalizing would leave `raw` as it is: it starts with `/`, has no escape, no empty segment but a final
/// one (a trailing slash) and no dot segment.
fn is_normal(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else { return false };
    if raw.contains('%') {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment == "." || segment == ".." {
            return false;
        }
    }
    true
}

fn normalize_slowly(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                decoded.push(v as char);
            } else {
                decoded.push('%');
                decoded.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            decoded.push(b as char);
            i += 1;
        }
    }
    // Remove dot segments (RFC 3986 §5.2.4) and merge empty segments.
    let mut out: Vec<&str> = Vec::new();
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = format!("/{}", out.join("/"));
    if trailing && path.len() > 1 {
        path.push('/');
    }
    Some(path)
}

/// Kong's upstream path (`path_handling` v0): the service path as base (with a trailing slash), then, with
/// `strip_path`, what follows the matched part; without it, the whole request path. The query, if any, follows.
/// Built in one allocation of the exact size, so the URI made from it takes the buffer as it is.
pub fn upstream_path(
    service_path: Option<&str>,
    strip_path: bool,
    matched: Option<&str>,
    request_path: &str,
    query: Option<&str>,
) -> String {
    let base = match service_path {
        None | Some("") => "/",
        Some(p) => p,
    };
    // The base is `trimmed` + "/".
    let trimmed = base.strip_suffix('/').unwrap_or(base);
    let (slash, tail) = if strip_path {
        let matched_len = matched.map_or(0, str::len);
        let postfix = &request_path[matched_len.min(request_path.len())..];
        let postfix = postfix.strip_prefix("./").or_else(|| postfix.strip_prefix("../")).unwrap_or(postfix);
        if postfix.is_empty() {
            (trimmed.is_empty() || request_path.ends_with('/'), "")
        } else {
            (!postfix.starts_with('/'), postfix)
        }
    } else {
        (true, &request_path[1.min(request_path.len())..])
    };
    let query_len = query.map_or(0, |q| q.len() + 1);
    let mut out = String::with_capacity(trimmed.len() + usize::from(slash) + tail.len() + query_len);
    out.push_str(trimmed);
    if slash {
        out.push('/');
    }
    out.push_str(tail);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests;
