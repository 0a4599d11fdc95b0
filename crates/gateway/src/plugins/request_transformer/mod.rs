//! `request-transformer` (priority 801): changes the request before it goes upstream, in Kong's order: the path
//! (`replace.uri`), the method (`http_method`; a form body becomes query parameters for `GET`, `HEAD` and
//! `TRACE`), headers, the body (form-encoded or JSON), then the query; within each, remove, rename, replace, add,
//! append.
//!
//! Values are templates (`model`'s `Template`: `$(headers.x)`, `$(query_params["y"])`, `$(uri_captures[1])`,
//! literals and `or`), parsed when the instance is built and rendered against the request as the client sent it,
//! before any change. Bodies may be JSON, form-encoded or multipart. Body changes need the body in memory: a body the proxy streams (larger than 64 KiB, or
//! without a length on a route that does not buffer) goes upstream unchanged, with a log line.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::request_transformer::{
    Config, Key, Lists, Part, Source, Template, Term, split_pair,
};

use super::request_size_limiting::error;
use super::{Flow, Phases, Plugin, PluginDef, RequestContext, Shared, multipart};

pub static PLUGIN: PluginDef = PluginDef {
    info: &gatehouse_model::gateway::plugins::request_transformer::INFO,
    phases: Phases { access: true, rewrite: false, response: false, log: false },
    build: |config, _shared: &Shared| Ok(Arc::new(RequestTransformer::new(config)?)),
};

/// One transformation list, parsed: names with their (template) values.
#[derive(Debug, Default)]
struct Pairs(Vec<(String, Template)>);

impl Pairs {
    fn parse(entries: &[String]) -> Result<Self, String> {
        let mut pairs = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some((name, value)) = split_pair(entry) else { continue };
            pairs.push((name.to_owned(), Template::parse(value)?));
        }
        Ok(Self(pairs))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Default)]
struct Section {
    body: Pairs,
    headers: Vec<(HeaderName, Template)>,
    querystring: Pairs,
}

impl Section {
    fn parse(lists: &Lists) -> Result<Self, String> {
        let headers = lists
            .headers
            .iter()
            .filter_map(|entry| split_pair(entry))
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
                Ok((name, Template::parse(value)?))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { body: Pairs::parse(&lists.body)?, headers, querystring: Pairs::parse(&lists.querystring)? })
    }

    fn templates(&self) -> impl Iterator<Item = &Template> {
        self.body
            .0
            .iter()
            .map(|(_, t)| t)
            .chain(self.headers.iter().map(|(_, t)| t))
            .chain(self.querystring.0.iter().map(|(_, t)| t))
    }
}

#[derive(Debug)]
pub struct RequestTransformer {
    http_method: Option<Method>,
    uri: Option<Template>,
    remove: Section,
    rename: Section,
    replace: Section,
    add: Section,
    append: Section,
    /// What the templates read, so a request pays only for those.
    uses_headers: bool,
    uses_query: bool,
    uses_captures: bool,
    transforms_body: bool,
    transforms_query: bool,
}

impl RequestTransformer {
    pub fn new(config: &Map<String, Value>) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let http_method = config
            .http_method
            .as_deref()
            .map(|m| Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string()))
            .transpose()?;
        let uri = config.replace.uri.as_deref().map(Template::parse).transpose()?;
        let replace = Lists {
            body: config.replace.body.clone(),
            headers: config.replace.headers.clone(),
            querystring: config.replace.querystring.clone(),
        };
        let sections = [
            Section::parse(&config.remove)?,
            Section::parse(&config.rename)?,
            Section::parse(&replace)?,
            Section::parse(&config.add)?,
            Section::parse(&config.append)?,
        ];
        let uses = |source: Source| {
            uri.as_ref().is_some_and(|t| t.uses(source))
                || sections.iter().flat_map(Section::templates).any(|t| t.uses(source))
        };
        let (uses_headers, uses_query, uses_captures) =
            (uses(Source::Headers), uses(Source::QueryParams), uses(Source::UriCaptures));
        let transforms_body = sections.iter().any(|s| !s.body.is_empty());
        let transforms_query = sections.iter().any(|s| !s.querystring.is_empty());
        let [remove, rename, replace, add, append] = sections;
        Ok(Self {
            http_method,
            uri,
            remove,
            rename,
            replace,
            add,
            append,
            uses_headers,
            uses_query,
            uses_captures,
            transforms_body,
            transforms_query,
        })
    }
}

/// The request as the client sent it, for templates: taken before any change, as Kong's template environment.
struct Env<'a> {
    headers: Option<HeaderMap>,
    query: Vec<(String, Option<String>)>,
    captures: Option<regex::Captures<'a>>,
}

impl Env<'_> {
    fn lookup(&self, source: Source, key: &Key) -> Option<Cow<'_, str>> {
        match (source, key) {
            (Source::Headers, Key::Name(name)) => {
                // ngx's header table: case-insensitive, and `_` reads as `-` (`headers.x_api` is `X-Api`).
                let name = name.to_ascii_lowercase().replace('_', "-");
                let value = self.headers.as_ref()?.get(name.as_str())?;
                Some(String::from_utf8_lossy(value.as_bytes()))
            }
            (Source::QueryParams, Key::Name(name)) => {
                let (_, value) = self.query.iter().find(|(k, _)| k == name)?;
                // A parameter without `=` is Lua's `true`.
                Some(value.as_deref().map_or(Cow::Borrowed("true"), Cow::Borrowed))
            }
            (Source::UriCaptures, key) => {
                let captures = self.captures.as_ref()?;
                let found = match key {
                    Key::Name(name) => captures.name(name),
                    Key::Index(i) => captures.get(*i),
                };
                found.map(|m| Cow::Borrowed(m.as_str()))
            }
            // Numbered header or query keys are nil in Lua; `shared` (kong.ctx.shared) holds nothing here.
            _ => None,
        }
    }

    fn render(&self, template: &Template) -> String {
        let mut out = String::new();
        for part in &template.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(terms) => {
                    // Lua's `or`: the first present value; nothing at all renders as nothing.
                    let value = terms.iter().find_map(|term| match term {
                        Term::Literal(text) => Some(Cow::Borrowed(text.as_str())),
                        Term::Lookup(source, key) => self.lookup(*source, key),
                    });
                    if let Some(value) = value {
                        out.push_str(&value);
                    }
                }
            }
        }
        out
    }
}

/// Query parameters in order, `None` for one without `=`.
fn parse_query(query: Option<&str>) -> Vec<(String, Option<String>)> {
    let Some(query) = query else { return Vec::new() };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let decode =
                |s: &str| form_urlencoded::parse(s.as_bytes()).next().map(|(k, _)| k.into_owned()).unwrap_or_default();
            match pair.split_once('=') {
                Some((k, v)) => (decode(k), Some(decode(v))),
                None => (decode(pair), None),
            }
        })
        .collect()
}

/// Arguments grouped by name, in first-appearance order (Kong's args table: a string, a list, or `true`).
type Args = Vec<(String, Vec<Option<String>>)>;

fn group(flat: Vec<(String, Option<String>)>) -> Args {
    let mut args: Args = Vec::new();
    for (k, v) in flat {
        match args.iter_mut().find(|(name, _)| *name == k) {
            Some((_, values)) => values.push(v),
            None => args.push((k, vec![v])),
        }
    }
    args
}

fn position(args: &Args, name: &str) -> Option<usize> {
    args.iter().position(|(k, _)| k == name)
}

/// Kong's five steps on an args table (query or form body): whether anything changed.
fn transform_args(
    t: &RequestTransformer,
    args: &mut Args,
    env: &Env<'_>,
    pick: fn(&Section) -> &Pairs,
    has_content: bool,
) -> bool {
    let mut changed = false;
    if has_content {
        for (name, _) in &pick(&t.remove).0 {
            args.retain(|(k, _)| k != name);
            changed = true;
        }
        for (old, new) in &pick(&t.rename).0 {
            let new = env.render(new);
            if *old != new
                && let Some(i) = position(args, old)
            {
                let (_, values) = args.remove(i);
                args.retain(|(k, _)| *k != new);
                args.push((new, values));
                changed = true;
            }
        }
        for (name, value) in &pick(&t.replace).0 {
            if let Some(i) = position(args, name) {
                args[i].1 = vec![Some(env.render(value))];
                changed = true;
            }
        }
    }
    for (name, value) in &pick(&t.add).0 {
        if position(args, name).is_none() {
            args.push((name.clone(), vec![Some(env.render(value))]));
            changed = true;
        }
    }
    for (name, value) in &pick(&t.append).0 {
        let value = Some(env.render(value));
        match position(args, name) {
            // Kong's `append_value`: a `true` flag is not a string, so it is replaced by the list.
            Some(i) if args[i].1 == [None] => args[i].1 = vec![value],
            Some(i) => args[i].1.push(value),
            None => args.push((name.clone(), vec![value])),
        }
        changed = true;
    }
    changed
}

/// `ngx.escape_uri`: everything but unreserved characters percent-encoded (a space is `%20`).
fn escape(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Kong's `encode_args` for `set_query`: names sorted, a flag as its bare name, a list as repeated names.
fn encode_query(args: &Args) -> String {
    let mut sorted: Vec<&(String, Vec<Option<String>>)> = args.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    encode(sorted.into_iter())
}

fn encode<'a>(args: impl Iterator<Item = &'a (String, Vec<Option<String>>)>) -> String {
    let mut out = String::new();
    for (name, values) in args {
        for value in values {
            if !out.is_empty() {
                out.push('&');
            }
            escape(&mut out, name);
            if let Some(value) = value {
                out.push('=');
                escape(&mut out, value);
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Multipart,
    Form,
}

/// Kong's `get_content_type`: a substring match on the lower-cased `Content-Type`.
fn body_kind(headers: &HeaderMap) -> Option<BodyKind> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?.to_ascii_lowercase();
    if ct.contains("application/json") {
        Some(BodyKind::Json)
    } else if ct.contains("multipart/form-data") {
        Some(BodyKind::Multipart)
    } else if ct.contains("application/x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else {
        None
    }
}

/// Lua's truthiness, which Kong's `if parameters[name]` tests: absent and `false` are false.
fn truthy(value: Option<&Value>) -> bool {
    !matches!(value, None | Some(Value::Bool(false)))
}

impl RequestTransformer {
    fn transform_headers(&self, ctx: &mut RequestContext<'_>, env: &Env<'_>) {
        let headers = &mut *ctx.headers;
        let mut host = None;
        // Kong takes `Host` out of the table it transforms: only `replace` (and a rename or append onto it) sets
        // the upstream Host, whatever the route's `preserve_host`.
        for (name, _) in &self.remove.headers {
            if *name != header::HOST {
                headers.remove(name);
            }
        }
        for (old, new) in &self.rename.headers {
            if *old == header::HOST {
                continue;
            }
            let Some(new) = env.render(new).parse::<HeaderName>().ok() else { continue };
            if *old == new {
                continue;
            }
            if let header::Entry::Occupied(entry) = headers.entry(old) {
                let values: Vec<HeaderValue> = entry.remove_entry_mult().1.collect();
                if new == header::HOST {
                    host = values.into_iter().next();
                    continue;
                }
                headers.remove(&new);
                for value in values {
                    headers.append(&new, value);
                }
            }
        }
        let value_of = |template: &Template| {
            let rendered = env.render(template);
            let value = HeaderValue::from_str(&rendered).ok();
            if value.is_none() {
                tracing::debug!("request-transformer: a rendered header value is not a valid header value; skipped");
            }
            value
        };
        for (name, template) in &self.replace.headers {
            if *name == header::HOST {
                host = value_of(template).or(host);
            } else if headers.contains_key(name)
                && let Some(value) = value_of(template)
            {
                headers.insert(name, value);
            }
        }
        for (name, template) in &self.add.headers {
            if *name != header::HOST
                && !headers.contains_key(name)
                && let Some(value) = value_of(template)
            {
                headers.insert(name, value);
            }
        }
        for (name, template) in &self.append.headers {
            let Some(value) = value_of(template) else { continue };
            if *name == header::HOST {
                host = Some(value);
            } else {
                headers.append(name, value);
            }
        }
        if host.is_some() {
            ctx.upstream_mut().host = host;
        }
    }

    fn transform_json(&self, body: &[u8], env: &Env<'_>) -> Option<Bytes> {
        let mut parameters = if body.is_empty() {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => map,
                // Not an object (or not JSON): left as it is, as Kong leaves a body it cannot decode.
                _ => return None,
            }
        };
        let has_content = !body.is_empty();
        let mut changed = false;
        if has_content {
            for (name, _) in &self.remove.body.0 {
                parameters.remove(name);
                changed = true;
            }
            for (old, new) in &self.rename.body.0 {
                let new = env.render(new);
                if *old != new
                    && let Some(value) = parameters.remove(old)
                {
                    parameters.insert(new, value);
                    changed = true;
                }
            }
            for (name, value) in &self.replace.body.0 {
                if truthy(parameters.get(name)) {
                    parameters.insert(name.clone(), Value::String(env.render(value)));
                    changed = true;
                }
            }
        }
        for (name, value) in &self.add.body.0 {
            if !truthy(parameters.get(name)) {
                parameters.insert(name.clone(), Value::String(env.render(value)));
                changed = true;
            }
        }
        for (name, value) in &self.append.body.0 {
            let value = Value::String(env.render(value));
            let appended = match parameters.remove(name) {
                Some(Value::String(old)) => Value::Array(vec![Value::String(old), value]),
                Some(Value::Array(mut items)) => {
                    items.push(value);
                    Value::Array(items)
                }
                _ => Value::Array(vec![value]),
            };
            parameters.insert(name.clone(), appended);
            changed = true;
        }
        changed.then(|| serde_json::to_vec(&parameters).ok().map(Bytes::from)).flatten()
    }

    fn transform_form(&self, body: &[u8], env: &Env<'_>) -> Option<Bytes> {
        let mut args = group(parse_query(std::str::from_utf8(body).ok()));
        let changed = transform_args(self, &mut args, env, |s| &s.body, !body.is_empty());
        changed.then(|| Bytes::from(encode(args.iter())))
    }

    /// Kong's multipart steps (lua-multipart): rename, remove, replace, add; no append. A part that is set
    /// becomes a simple `form-data` part (a renamed file loses its file name, as in Kong) and goes last.
    async fn transform_multipart(&self, body: &Bytes, content_type: &str, env: &Env<'_>) -> Option<Bytes> {
        let boundary = multer::parse_boundary(content_type).ok()?;
        let mut parts = match Box::pin(multipart::parse(body, &boundary)).await {
            Ok(parts) => parts,
            Err(e) => {
                tracing::info!(error = %e, "request-transformer: the multipart body does not parse; sent unchanged");
                return None;
            }
        };
        let has_content = !body.is_empty();
        let mut changed = false;
        if has_content {
            for (old, new) in &self.rename.body.0 {
                let new = env.render(new);
                if let Some(i) = parts.iter().position(|p| p.is(old))
                    && *old != new
                {
                    let value = parts.remove(i).data;
                    set_simple(&mut parts, new, value);
                    changed = true;
                }
            }
            for (name, _) in &self.remove.body.0 {
                parts.retain(|p| !p.is(name));
                changed = true;
            }
            for (name, value) in &self.replace.body.0 {
                if parts.iter().any(|p| p.is(name)) {
                    set_simple(&mut parts, name.clone(), Bytes::from(env.render(value)));
                    changed = true;
                }
            }
        }
        for (name, value) in &self.add.body.0 {
            if !parts.iter().any(|p| p.is(name)) {
                set_simple(&mut parts, name.clone(), Bytes::from(env.render(value)));
                changed = true;
            }
        }
        changed.then(|| multipart::encode(&boundary, &parts))
    }

    async fn transform_body(&self, ctx: &mut RequestContext<'_>, env: &Env<'_>) {
        let Some(kind) = body_kind(ctx.headers) else { return };
        let Some(body) = ctx.body.as_ref() else {
            tracing::info!(
                request_id = ctx.request_id,
                "request-transformer: the body streams (too large to hold); sent unchanged"
            );
            return;
        };
        let transformed = match kind {
            BodyKind::Json => self.transform_json(body, env),
            BodyKind::Form => self.transform_form(body, env),
            BodyKind::Multipart => {
                let content_type =
                    ctx.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
                self.transform_multipart(body, content_type, env).await
            }
        };
        if let Some(new) = transformed {
            ctx.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(new.len()));
            *ctx.body = Some(new);
        }
    }

    fn query_args(ctx: &RequestContext<'_>) -> Args {
        group(parse_query(ctx.query.as_deref()))
    }
}

#[async_trait]
impl Plugin for RequestTransformer {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        let env = Env {
            headers: self.uses_headers.then(|| ctx.headers.clone()),
            query: if self.uses_query { parse_query(ctx.query.as_deref()) } else { Vec::new() },
            captures: if self.uses_captures { ctx.path_regex.and_then(|re| re.captures(ctx.path)) } else { None },
        };
        if let Some(uri) = &self.uri {
            let path = env.render(uri);
            // Kong's `set_path` refuses a path that does not start with `/`: the request fails with a 500.
            if !path.starts_with('/') {
                tracing::error!(
                    request_id = ctx.request_id,
                    "request-transformer: replace.uri rendered a path that does not start with '/'"
                );
                return error(StatusCode::INTERNAL_SERVER_ERROR, "An unexpected error occurred", ctx.request_id);
            }
            ctx.upstream_mut().path = Some(escape_path(&path));
        }
        if let Some(method) = &self.http_method {
            ctx.upstream_mut().method = Some(method.clone());
            if matches!(method.as_str(), "GET" | "HEAD" | "TRACE")
                && body_kind(ctx.headers) == Some(BodyKind::Form)
                && let Some(body) = ctx.body.as_ref()
            {
                // Kong moves a form body's fields to the query (the body itself still goes).
                let fields = parse_query(std::str::from_utf8(body).ok());
                if !fields.is_empty() {
                    let mut args = Self::query_args(ctx);
                    for (k, v) in fields {
                        match position(&args, &k) {
                            Some(i) => args[i].1.push(v),
                            None => args.push((k, vec![v])),
                        }
                    }
                    ctx.query = Some(Cow::Owned(encode_query(&args)));
                }
            }
        }
        self.transform_headers(ctx, &env);
        if self.transforms_body {
            self.transform_body(ctx, &env).await;
        }
        if self.transforms_query {
            let mut args = Self::query_args(ctx);
            transform_args(self, &mut args, &env, |s| &s.querystring, true);
            ctx.query = Some(Cow::Owned(encode_query(&args)));
        }
        Flow::Continue
    }
}

/// lua-multipart's `set_simple`: the named part's value, as a plain `form-data` part at the end.
fn set_simple(parts: &mut Vec<multipart::Part>, name: String, data: Bytes) {
    parts.retain(|p| !p.is(&name));
    let disposition = format!("form-data; name=\"{}\"", name.replace('"', "%22"));
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    parts.push(multipart::Part { name: Some(name), headers, data });
}

/// A rendered path as a request target: bytes a path may not hold (spaces, `?`, `#`, controls, non-ASCII) are
/// percent-encoded, the rest (escapes already there included) kept.
fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_graphic()
            && !matches!(b, b'?' | b'#' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
