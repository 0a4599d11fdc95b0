//! `key-auth` (priority 1250): identifies the consumer by an API key found, for each of `key_names` in order, in
//! a header, then the query string, then the body, as Kong's `handler.lua` looks for it; sets the consumer's
//! `X-Consumer-*` headers and `X-Credential-Identifier`, or answers Kong's 401s ("No API key found in request",
//! "Unauthorized", "Duplicate API key found") with `WWW-Authenticate: Key` (`Key realm="…"` with `realm`).
//!
//! Keys are never held in clear here: the snapshot carries each key's HMAC (a key the node derives from the master
//! key and hands to the proxy through `Shared`), and a presented key is hashed with the same key and looked up in
//! the configuration's hash map (`consumers.rs`). A lookup is one HMAC-SHA-256 and one hash-map probe; header and
//! query keys are read in place (a query key is copied only when percent-encoded), and an accepted request costs
//! no allocation unless the body has to be read or `hide_credentials` rewrites the request.
//!
//! The body is looked into only when the proxy read it whole (up to 64 KiB) and it is form-encoded, JSON or
//! multipart; a streamed body is not (docs/compatibility.md).

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::hmac;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value, json};

use gatehouse_model::gateway::plugins::key_auth::{Config, INFO, NAME};

use super::{Credential, Flow, Phases, Plugin, PluginDef, RequestContext, Shared, auth, multipart};

pub const X_CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static("x-credential-identifier");

const NO_KEY: &str = "No API key found in request";
const INVALID: &str = "Unauthorized";
const DUPLICATE: &str = "Duplicate API key found";

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: true, rewrite: false, response: false, log: false },
    build: |config, shared: &Shared| Ok(Arc::new(KeyAuth::new(config, shared)?)),
};

/// One of `key_names`: as written (query and body), and as the header Kong's case- and underscore-insensitive
/// header table finds it under (`api_key` reads `Api-Key`).
#[derive(Debug)]
struct KeyName {
    name: String,
    header: Option<HeaderName>,
}

#[derive(Debug)]
pub struct KeyAuth {
    names: Box<[KeyName]>,
    hide_credentials: bool,
    anonymous: Option<String>,
    in_header: bool,
    in_query: bool,
    in_body: bool,
    run_on_preflight: bool,
    /// `Key`, or `Key realm="…"`: made once.
    challenge: HeaderValue,
    hmac: hmac::Key,
}

/// What one key name found.
enum Lookup<'a> {
    Key(Cow<'a, str>),
    /// Kong's table value: the name given more than once.
    Duplicate,
    /// Present without a string value (`?apikey`, a JSON number): Kong moves on to the next name.
    NotText,
    Absent,
}

impl KeyAuth {
    pub fn new(config: &Map<String, Value>, shared: &Shared) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let hmac =
            shared.key_auth.clone().ok_or("key-auth needs the node's key hashing key, which it was not given")?;
        let challenge = match &config.realm {
            Some(realm) => HeaderValue::from_str(&format!("Key realm=\"{realm}\""))
                .map_err(|_| format!("realm {realm:?} cannot be a header value"))?,
            None => HeaderValue::from_static("Key"),
        };
        let names = config
            .key_names
            .into_iter()
            .map(|name| {
                let header = HeaderName::from_bytes(name.to_ascii_lowercase().replace('_', "-").as_bytes()).ok();
                KeyName { name, header }
            })
            .collect();
        Ok(Self {
            names,
            hide_credentials: config.hide_credentials,
            anonymous: config.anonymous.filter(|a| !a.is_empty()),
            in_header: config.key_in_header,
            in_query: config.key_in_query,
            in_body: config.key_in_body,
            run_on_preflight: config.run_on_preflight,
            challenge,
            hmac,
        })
    }

    fn refuse(&self, ctx: &RequestContext<'_>, message: &str) -> Flow {
        let body = json!({"message": message, "request_id": ctx.request_id});
        Flow::Respond(auth::json_response(StatusCode::UNAUTHORIZED, &body, Some(self.challenge.clone())))
    }

    /// Kong's `do_authentication`: `Ok` once the consumer is set, else the 401's message.
    async fn authenticate(&self, ctx: &mut RequestContext<'_>) -> Result<(), &'static str> {
        // As in Kong, the body is parsed only once a name is found in neither headers nor query.
        let mut body: Option<Body> = None;
        let mut found = None;
        for (index, name) in self.names.iter().enumerate() {
            let mut lookup = Lookup::Absent;
            if self.in_header
                && let Some(header) = &name.header
            {
                lookup = in_headers(ctx.headers, header);
            }
            if matches!(lookup, Lookup::Absent) && self.in_query {
                lookup = in_query(ctx.query.as_deref(), &name.name);
            }
            if matches!(lookup, Lookup::Absent) && self.in_body {
                if body.is_none() {
                    body = Some(Body::parse(ctx.headers, ctx.body.as_ref()).await);
                }
                lookup = body.as_ref().map_or(Lookup::Absent, |b| b.get(&name.name));
            }
            match lookup {
                Lookup::Key(key) => {
                    // Hashed where it lies: the key is neither copied nor kept past this point.
                    let tag = (!key.is_empty()).then(|| hmac::sign(&self.hmac, key.as_bytes()));
                    found = Some((index, tag));
                    break;
                }
                Lookup::Duplicate => return Err(DUPLICATE),
                Lookup::NotText | Lookup::Absent => {}
            }
        }
        let Some((index, tag)) = found else { return Err(NO_KEY) };
        if self.hide_credentials {
            if self.in_body && body.is_none() {
                body = Some(Body::parse(ctx.headers, ctx.body.as_ref()).await);
            }
            self.hide(ctx, &self.names[index], body.as_ref());
        }
        let Some(tag) = tag else { return Err(NO_KEY) };
        let Some(entry) = ctx.consumers.by_key_hash(tag.as_ref()) else { return Err(INVALID) };
        let (consumer, credential_id) = (entry.consumer.clone(), entry.credential_id.clone());
        auth::set_consumer_headers(ctx.headers, &consumer);
        ctx.headers.insert(X_CREDENTIAL_IDENTIFIER, credential_id.clone());
        ctx.headers.remove(auth::X_ANONYMOUS_CONSUMER);
        ctx.consumer = Some(consumer);
        // Kong's credential is the keyauth credential: rate limiting by credential counts per credential id.
        let len = credential_id.len();
        ctx.credential = Credential::in_header(&credential_id, 0..len);
        Ok(())
    }

    /// Kong's `hide_credentials`: the name leaves the query and the headers, and, with `key_in_body`, the body.
    fn hide(&self, ctx: &mut RequestContext<'_>, name: &KeyName, body: Option<&Body>) {
        if let Some(query) = ctx.query.as_deref()
            && let Some(kept) = without_parameter(query, &name.name)
        {
            ctx.query = if kept.is_empty() { None } else { Some(Cow::Owned(kept)) };
        }
        if let Some(header) = &name.header {
            ctx.headers.remove(header);
        }
        if let Some(rewritten) = body.and_then(|b| b.without(&name.name)) {
            ctx.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
            *ctx.body = Some(rewritten);
        }
    }
}

fn in_headers<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Lookup<'a> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Lookup::Absent };
    if values.next().is_some() {
        return Lookup::Duplicate;
    }
    match first.to_str() {
        Ok(text) => Lookup::Key(Cow::Borrowed(text)),
        // Kong's header table holds any bytes; a key with bytes outside visible ASCII matches no stored key
        // that the Admin API (JSON strings) could hold as the same bytes, so it is read lossily.
        Err(_) => Lookup::Key(Cow::Owned(String::from_utf8_lossy(first.as_bytes()).into_owned())),
    }
}

/// Kong's `get_query()[name]`: a string for one `name=value`, `true` for a bare `name`, a table for repeats.
fn in_query<'a>(query: Option<&'a str>, name: &str) -> Lookup<'a> {
    let Some(query) = query else { return Lookup::Absent };
    let mut result = Lookup::Absent;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = match pair.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (pair, None),
        };
        if decode(raw_key).as_ref() != name {
            continue;
        }
        if !matches!(result, Lookup::Absent) {
            return Lookup::Duplicate;
        }
        result = match raw_value {
            Some(v) => Lookup::Key(decode(v)),
            None => Lookup::NotText,
        };
    }
    result
}

fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(raw);
    }
    let mut pairs = form_urlencoded::parse(raw.as_bytes());
    // One component, parsed as a lone key: its decoded text.
    pairs.next().map(|(k, _)| Cow::Owned(k.into_owned())).unwrap_or(Cow::Borrowed(""))
}

/// The query without every `name` pair; `None` when it has none (the query goes on as it is).
fn without_parameter(query: &str, name: &str) -> Option<String> {
    let mut removed = false;
    let mut kept = String::with_capacity(query.len());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if decode(key).as_ref() == name {
            removed = true;
            continue;
        }
        if !kept.is_empty() {
            kept.push('&');
        }
        kept.push_str(pair);
    }
    removed.then_some(kept)
}

/// The body as Kong's `get_body()` gives it to the plugin: a form, a JSON object, multipart fields, or nothing
/// (another content type, a streamed body, or one that does not parse: Kong logs and reads nothing).
enum Body {
    Empty,
    Form(Bytes),
    Json(Map<String, Value>),
    Multipart { boundary: String, parts: Vec<multipart::Part> },
}

impl Body {
    async fn parse(headers: &HeaderMap, body: Option<&Bytes>) -> Self {
        let Some(body) = body.filter(|b| !b.is_empty()) else { return Body::Empty };
        let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return Body::Empty;
        };
        let Ok(mime) = content_type.parse::<mime::Mime>() else { return Body::Empty };
        match (mime.type_(), mime.subtype()) {
            (mime::APPLICATION, mime::WWW_FORM_URLENCODED) => Body::Form(body.clone()),
            (mime::APPLICATION, mime::JSON) => match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => Body::Json(map),
                _ => Body::Empty,
            },
            (mime::MULTIPART, mime::FORM_DATA) => {
                let Some(boundary) = mime.get_param(mime::BOUNDARY).map(|b| b.as_str().to_owned()) else {
                    return Body::Empty;
                };
                match Box::pin(multipart::parse(body, &boundary)).await {
                    Ok(parts) => Body::Multipart { boundary, parts },
                    Err(e) => {
                        tracing::info!(error = %e, "key-auth: the multipart body does not parse; not read");
                        Body::Empty
                    }
                }
            }
            _ => Body::Empty,
        }
    }

    fn get(&self, name: &str) -> Lookup<'static> {
        match self {
            Body::Empty => Lookup::Absent,
            Body::Form(form) => {
                let mut values = form_urlencoded::parse(form).filter(|(k, _)| k == name).map(|(_, v)| v.into_owned());
                match (values.next(), values.next()) {
                    (None, _) => Lookup::Absent,
                    (Some(_), Some(_)) => Lookup::Duplicate,
                    (Some(v), None) => Lookup::Key(Cow::Owned(v)),
                }
            }
            Body::Json(map) => match map.get(name) {
                None | Some(Value::Null) => Lookup::Absent,
                Some(Value::String(s)) => Lookup::Key(Cow::Owned(s.clone())),
                Some(Value::Array(_) | Value::Object(_)) => Lookup::Duplicate,
                Some(_) => Lookup::NotText,
            },
            Body::Multipart { parts, .. } => {
                let mut values = parts.iter().filter(|p| p.name.as_deref() == Some(name));
                match (values.next(), values.next()) {
                    (None, _) => Lookup::Absent,
                    (Some(_), Some(_)) => Lookup::Duplicate,
                    (Some(p), None) => Lookup::Key(Cow::Owned(String::from_utf8_lossy(&p.data).into_owned())),
                }
            }
        }
    }

    /// The body without `name`, in its own encoding; `None` when it does not have it.
    fn without(&self, name: &str) -> Option<Bytes> {
        match self {
            Body::Empty => None,
            Body::Form(form) => {
                let text = std::str::from_utf8(form).ok()?;
                without_parameter(text, name).map(Bytes::from)
            }
            Body::Json(map) => {
                if !map.contains_key(name) {
                    return None;
                }
                let mut map = map.clone();
                map.remove(name);
                serde_json::to_vec(&map).ok().map(Bytes::from)
            }
            Body::Multipart { boundary, parts } => {
                if parts.iter().all(|p| !p.is(name)) {
                    return None;
                }
                Some(multipart::encode(boundary, parts.iter().filter(|p| !p.is(name))))
            }
        }
    }
}

#[async_trait]
impl Plugin for KeyAuth {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        // "Logical OR": with `anonymous` set, a request another authentication plugin already accepted passes.
        if let Some(anonymous) = &self.anonymous
            && auth::accepted_by_another(anonymous, ctx)
        {
            return Flow::Continue;
        }
        // Before the preflight exemption: an `OPTIONS` let through carries no identity the client made up either.
        auth::remove_spoofed(ctx.headers);
        if !self.run_on_preflight && ctx.method == Method::OPTIONS {
            return Flow::Continue;
        }
        match self.authenticate(ctx).await {
            Ok(()) => Flow::Continue,
            Err(message) => match &self.anonymous {
                Some(anonymous) => auth::as_anonymous(ctx, anonymous, NAME),
                None => self.refuse(ctx, message),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_as_kong_reads_them() {
        let key = |q: &str| match in_query(Some(q), "apikey") {
            Lookup::Key(k) => format!("key:{k}"),
            Lookup::Duplicate => "duplicate".into(),
            Lookup::NotText => "not text".into(),
            Lookup::Absent => "absent".into(),
        };
        assert_eq!(key("apikey=abc&x=1"), "key:abc");
        assert_eq!(key("x=1&api%6Bey=a%2Bb+c"), "key:a+b c");
        assert_eq!(key("apikey=a&apikey=b"), "duplicate");
        assert_eq!(key("apikey"), "not text");
        assert_eq!(key("apikey="), "key:");
        assert_eq!(key("apikeys=a"), "absent");
        assert_eq!(without_parameter("a=1&apikey=x&b=%20y&apikey", "apikey").as_deref(), Some("a=1&b=%20y"));
        assert_eq!(without_parameter("a=1", "apikey"), None);
    }
}
