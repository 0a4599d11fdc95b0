//! `cors` (priority 2000, so before authentication plugins): answers CORS preflights itself and adds the CORS
//! headers to every other response, following Kong's `handler.lua`.
//!
//! * A preflight is an `OPTIONS` request with a non-empty `Origin` and an `Access-Control-Request-Method`. In
//!   `access` it is answered 200 with `Access-Control-Allow-{Origin,Credentials,Headers,Methods,Private-Network}`
//!   and `Access-Control-Max-Age`, before any authentication plugin runs; with `preflight_continue` it goes on
//!   through the other plugins to the upstream. Either way the plugin adds nothing to that response afterwards.
//! * Any other response, whoever made it (the upstream, the gateway's 502, an authentication plugin's 401),
//!   gets `Access-Control-Allow-Origin` (plus `Vary: Origin` unless every origin is allowed),
//!   `Access-Control-Allow-Credentials` and `Access-Control-Expose-Headers` in the `response` phase, as Kong's
//!   `header_filter` runs for `kong.response.exit` too. The request's `Origin` is kept for that phase in the
//!   plugin's slot, only when the headers depend on it and the request carries one.
//! * Origins: none or `*` allow all; one entry that looks like a plain origin is sent as configured; otherwise
//!   the request's origin (normalised: scheme, host, port without the scheme's default) is sent back when it
//!   equals a plain entry or matches a regex entry. Kong anchors regexes at both ends (a leading `^` and a trailing
//!   `$` are optional) and matches entries without `:` against the origin's host only. Regexes are compiled here,
//!   once per configuration.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use regex::Regex;
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::cors::{Config, INFO, METHODS, NAME};

use super::{Flow, Phases, Plugin, PluginDef, RequestContext, ResponseContext, RewriteContext, Shared};

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    // `rewrite` keeps the origin for answers made before `access` (a 404 under a global instance).
    phases: Phases { rewrite: true, access: true, response: true, log: false },
    build: |config, _shared: &Shared| Ok(Arc::new(Cors::new(config)?)),
};

const ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
const ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");
const ANY: HeaderValue = HeaderValue::from_static("*");
const TRUE: HeaderValue = HeaderValue::from_static("true");
const ORIGIN: HeaderValue = HeaderValue::from_static("Origin");

#[derive(Debug)]
pub struct Cors {
    origins: Origins,
    credentials: bool,
    /// `Access-Control-Allow-Headers` when configured; otherwise the request's `Access-Control-Request-Headers`.
    allow_headers: Option<HeaderValue>,
    exposed_headers: Option<HeaderValue>,
    methods: HeaderValue,
    max_age: Option<HeaderValue>,
    private_network: bool,
    preflight_continue: bool,
    allow_origin_absent: bool,
    /// Whether the response phase's headers depend on the request's `Origin`. They do not for `*` without
    /// credentials or a single fixed origin (unless requests without one are left alone), and then nothing is
    /// kept per request.
    needs_origin: bool,
}

#[derive(Debug)]
enum Origins {
    /// No entry, or `*` alone.
    Any,
    /// One entry made only of letters, digits and `.:/-`: sent as configured, whatever the request's origin.
    Fixed(HeaderValue),
    /// Compared with the request's origin. `any`: an entry is `*`, which in Kong allows every origin (when the
    /// request has one) whatever the other entries say.
    List { any: bool, entries: Vec<Entry> },
}

#[derive(Debug)]
enum Entry {
    /// The normalised origin, compared whole.
    Exact(String),
    /// `by_host`: the entry has no `:`, so it is matched against the origin's host rather than the whole origin.
    Pattern { regex: Regex, by_host: bool },
}

/// What `access` leaves for `response`.
#[derive(Debug)]
enum Slot {
    /// A preflight: answered by the plugin, or passed on with `preflight_continue`; no headers added.
    Preflight,
    Origin(HeaderValue),
}

impl Cors {
    pub fn new(config: &Map<String, Value>) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let joined = |list: &Option<Vec<String>>| -> Result<Option<HeaderValue>, String> {
            match list.as_deref() {
                Some(items) if !items.is_empty() => {
                    HeaderValue::from_str(&items.join(",")).map(Some).map_err(|e| e.to_string())
                }
                _ => Ok(None),
            }
        };
        let methods = config.methods.as_ref().map_or_else(|| METHODS.join(","), |m| m.join(","));
        let origins = origins(config.origins.as_deref().unwrap_or_default())?;
        let needs_origin = match origins {
            Origins::Any => config.credentials,
            Origins::Fixed(_) => false,
            Origins::List { .. } => true,
        } || !config.allow_origin_absent;
        Ok(Self {
            origins,
            needs_origin,
            credentials: config.credentials,
            allow_headers: joined(&config.headers)?,
            exposed_headers: joined(&config.exposed_headers)?,
            methods: HeaderValue::from_str(&methods).map_err(|e| e.to_string())?,
            max_age: config
                .max_age
                .map(|age| HeaderValue::from_str(&lua_number(age)))
                .transpose()
                .map_err(|e| e.to_string())?,
            private_network: config.private_network,
            preflight_continue: config.preflight_continue,
            allow_origin_absent: config.allow_origin_absent,
        })
    }

    /// Kong's `configure_origin`: sets (or removes) `Access-Control-Allow-Origin` and `Vary`; true when every
    /// origin is allowed. `append_vary`: on a response, `Vary: Origin` joins the upstream's `Vary`; on a preflight
    /// it is the only one.
    fn allow_origin(&self, headers: &mut HeaderMap, append_vary: bool, origin: Option<&HeaderValue>) -> bool {
        let entries = match &self.origins {
            Origins::Any => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY);
                return true;
            }
            Origins::Fixed(value) => {
                vary(headers, append_vary);
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value.clone());
                return false;
            }
            Origins::List { any, entries } => {
                vary(headers, append_vary);
                if *any && origin.is_some() {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY);
                    return true;
                }
                entries
            }
        };
        if let Some(origin) = origin
            && let Ok(text) = origin.to_str()
        {
            let (domain, host) = normalize_origin(text);
            let found = entries.iter().any(|entry| match entry {
                Entry::Exact(allowed) => *allowed == domain,
                Entry::Pattern { regex, by_host: true } => regex.is_match(host),
                Entry::Pattern { regex, by_host: false } => regex.is_match(&domain),
            });
            if found {
                let value = match domain {
                    Cow::Borrowed(_) => Ok(origin.clone()),
                    Cow::Owned(domain) => HeaderValue::from_str(&domain),
                };
                if let Ok(value) = value {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
                    return false;
                }
            }
        }
        headers.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
        false
    }

    /// Kong's `configure_credentials`: a credentialed request may not see `*`, so the origin is sent back instead.
    fn allow_credentials(
        &self,
        headers: &mut HeaderMap,
        allow_all: bool,
        append_vary: bool,
        origin: Option<&HeaderValue>,
    ) {
        if !self.credentials {
            return;
        }
        if !allow_all {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
            return;
        }
        if let Some(origin) = origin {
            vary(headers, append_vary);
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
    }

    fn preflight(&self, request: &HeaderMap, origin: &HeaderValue) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        let allow_all = self.allow_origin(headers, false, Some(origin));
        self.allow_credentials(headers, allow_all, false, Some(origin));
        let allow_headers = self.allow_headers.as_ref().or_else(|| request.get(header::ACCESS_CONTROL_REQUEST_HEADERS));
        if let Some(allowed) = allow_headers {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed.clone());
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        if let Some(age) = &self.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        if self.private_network
            && request.get(ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK).is_some_and(|v| v.as_bytes() == b"true")
        {
            headers.insert(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, TRUE);
        }
        response
    }
}

fn vary(headers: &mut HeaderMap, append: bool) {
    if append {
        headers.append(header::VARY, ORIGIN);
    } else {
        headers.insert(header::VARY, ORIGIN);
    }
}

/// Kong treats an empty `Origin` as none.
fn origin_of(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers.get(header::ORIGIN).filter(|v| !v.is_empty())
}

fn origins(list: &[String]) -> Result<Origins, String> {
    match list {
        [] => return Ok(Origins::Any),
        [only] if only == "*" => return Ok(Origins::Any),
        [only] if !only.is_empty() && only.bytes().all(|b| b.is_ascii_alphanumeric() || b".:/-".contains(&b)) => {
            return HeaderValue::from_str(only).map(Origins::Fixed).map_err(|e| e.to_string());
        }
        _ => {}
    }
    let mut entries = Vec::with_capacity(list.len());
    for entry in list.iter().filter(|e| *e != "*") {
        let by_host = !entry.contains(':');
        if entry.bytes().all(|b| b.is_ascii_alphanumeric() || b".:/-".contains(&b)) {
            entries.push(Entry::Exact(normalize_origin(entry).0.into_owned()));
            continue;
        }
        // Kong appends `$` unless the entry ends with one, drops a leading `^`, and matches anchored at the start.
        // The group keeps that start anchor on every alternative, as PCRE's anchored flag does.
        let body = entry.strip_prefix('^').unwrap_or(entry);
        let end = if body.ends_with('$') { "" } else { "$" };
        let regex =
            Regex::new(&format!("^(?:{body}{end})")).map_err(|e| format!("'{entry}' is not a valid regex: {e}"))?;
        entries.push(Entry::Pattern { regex, by_host });
    }
    Ok(Origins::List { any: list.iter().any(|e| e == "*"), entries })
}

/// Kong's `normalize_origin` (LuaSocket's URL parser): for `scheme://[user@]host[:port][/…]`, the origin as
/// `scheme://host[:port]` without the scheme's default port, and the host; anything else is its own host.
fn normalize_origin(origin: &str) -> (Cow<'_, str>, &str) {
    let Some((scheme, rest)) = origin.split_once("://") else { return (Cow::Borrowed(origin), origin) };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal's colons are inside its brackets.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return (Cow::Borrowed(origin), origin);
    }
    let port = port.filter(|p| !matches!((scheme, *p), ("http", "80") | ("https", "443")));
    let length = scheme.len() + 3 + authority.len();
    let domain = match port {
        // Already `scheme://authority` with nothing dropped: no copy.
        Some(_) if origin.len() == length && !authority.contains('@') => Cow::Borrowed(origin),
        None if origin.len() == length && host.len() == authority.len() => Cow::Borrowed(origin),
        Some(port) => Cow::Owned(format!("{scheme}://{host}:{port}")),
        None => Cow::Owned(format!("{scheme}://{host}")),
    };
    (domain, host.trim_start_matches('[').trim_end_matches(']'))
}

/// Lua's `tostring` of a number, as Kong writes `max_age`: integers without a fraction.
fn lua_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}

#[async_trait]
impl Plugin for Cors {
    fn rewrite(&self, ctx: &mut RewriteContext<'_>) {
        if self.needs_origin
            && let Some(origin) = origin_of(ctx.headers)
        {
            ctx.slots.set(NAME, Slot::Origin(origin.clone()));
        }
    }

    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        let Some(origin) = origin_of(ctx.headers) else { return Flow::Continue };
        if *ctx.method == Method::OPTIONS && ctx.headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            ctx.slots.set(NAME, Slot::Preflight);
            if self.preflight_continue {
                return Flow::Continue;
            }
            return Flow::Respond(self.preflight(ctx.headers, origin));
        }
        if self.needs_origin && ctx.slots.get::<Slot>(NAME).is_none() {
            ctx.slots.set(NAME, Slot::Origin(origin.clone()));
        }
        Flow::Continue
    }

    fn response(&self, ctx: &mut ResponseContext<'_>) {
        let origin = match ctx.slots.get::<Slot>(NAME) {
            Some(Slot::Preflight) => return,
            Some(Slot::Origin(origin)) => Some(origin),
            None if self.allow_origin_absent => None,
            None => return,
        };
        let headers = &mut *ctx.headers;
        let allow_all = self.allow_origin(headers, true, origin);
        self.allow_credentials(headers, allow_all, true, origin);
        if let Some(exposed) = &self.exposed_headers {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalise_like_kongs() {
        assert_eq!(normalize_origin("https://a.example"), (Cow::Borrowed("https://a.example"), "a.example"));
        assert!(matches!(normalize_origin("https://a.example").0, Cow::Borrowed(_)), "no copy");
        assert_eq!(normalize_origin("https://a.example:443").0, "https://a.example");
        assert_eq!(normalize_origin("http://a.example:80/x").0, "http://a.example");
        assert_eq!(normalize_origin("http://a.example:443").0, "http://a.example:443");
        assert_eq!(normalize_origin("http://u@a.example:8080/p?q").0, "http://a.example:8080");
        assert_eq!(normalize_origin("http://[::1]:8080"), (Cow::Borrowed("http://[::1]:8080"), "::1"));
        assert_eq!(normalize_origin("null"), (Cow::Borrowed("null"), "null"));
        assert_eq!(normalize_origin("a.example"), (Cow::Borrowed("a.example"), "a.example"));
    }

    #[test]
    fn regexes_are_anchored_at_both_ends_as_kong_does() {
        let Origins::List { entries, any } = origins(&[
            "(.*)\\.example\\.org".into(),
            "^http://b\\.example:\\d+$".into(),
            "https://exact.example:443".into(),
        ])
        .unwrap() else {
            panic!("a list")
        };
        assert!(!any);
        let matches = |origin: &str| {
            let (domain, host) = normalize_origin(origin);
            entries.iter().any(|e| match e {
                Entry::Exact(d) => *d == domain,
                Entry::Pattern { regex, by_host: true } => regex.is_match(host),
                Entry::Pattern { regex, by_host: false } => regex.is_match(&domain),
            })
        };
        assert!(matches("https://api.example.org"), "by host: the scheme is not part of the subject");
        assert!(matches("http://api.example.org:8080"));
        assert!(!matches("https://api.example.org.evil"), "anchored at the end");
        assert!(matches("http://b.example:8080"));
        assert!(!matches("https://b.example:8080") && !matches("xhttp://b.example:1"), "anchored at the start");
        assert!(matches("https://exact.example") && !matches("https://exact.example:8443"));
        // Alternatives each keep the start anchor; only the last one gets Kong's `$`.
        let Origins::List { entries, .. } = origins(&["a\\.example|b\\.example".into()]).unwrap() else { panic!() };
        let Entry::Pattern { regex, .. } = &entries[0] else { panic!("a regex") };
        assert!(regex.is_match("a.example.evil") && !regex.is_match("b.example.evil") && !regex.is_match("xa.example"));
    }

    #[test]
    fn single_entries_and_asterisks() {
        assert!(matches!(origins(&[]).unwrap(), Origins::Any));
        assert!(matches!(origins(&["*".into()]).unwrap(), Origins::Any));
        assert!(matches!(origins(&["https://a.example:8443".into()]).unwrap(), Origins::Fixed(_)));
        assert!(matches!(origins(&["https://*.example".into()]).unwrap(), Origins::List { any: false, .. }));
        assert!(matches!(origins(&["https://a.example".into(), "*".into()]).unwrap(), Origins::List { any: true, .. }));
        assert_eq!((lua_number(3600.0), lua_number(1.5), lua_number(-1.0)), ("3600".into(), "1.5".into(), "-1".into()));
    }
}
