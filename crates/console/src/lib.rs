//! The web console, served by the platform listener at `/` (pages under `/console`).
//!
//! Server-rendered HTML (askama templates checked at compile time) with a little progressive enhancement (htmx,
//! vendored, and one small script of our own); every asset is compiled into the binary. A person signs in with a
//! personal access token, which opens a server-side session ([`session`]); every page then calls the platform
//! APIs' own router in process with that token ([`api`]), so the console can do exactly what the token can through
//! the API, with the API's validation. Every response carries a strict CSP (no inline script or style),
//! `X-Frame-Options: DENY`, `Referrer-Policy: same-origin` and `Cache-Control: no-store`.

mod api;
mod gateway;
mod identity;
mod oauth;
mod pages;
mod proxy;
pub mod session;
mod tokens;
mod view;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};

use gatehouse_runtime::Services;

pub use session::SessionSettings;
use session::{Current, Sessions};
use view::{Page, Section};

/// What the console is built from: the node's services and the routers it calls in process.
#[derive(Debug)]
pub struct ConsoleDeps {
    pub services: Services,
    /// The platform APIs (`/v1`, `/v2`), without the console.
    pub api: Router,
    /// The issuer listener's router ("Try it" asks it for tokens and introspection).
    pub issuer: Router,
    /// Where the proxy listens ("test this route" sends a request through it).
    pub proxy_url: String,
    pub sessions: SessionSettings,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub services: Services,
    pub sessions: Sessions,
    pub api: Router,
    pub issuer: Router,
    pub proxy_url: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Console(pub Arc<Inner>);

impl std::ops::Deref for Console {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The strict policy of every console response: nothing but this origin, no inline script or style, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The console's routes, to merge into the platform listener's router.
pub fn console_router(deps: ConsoleDeps) -> Router {
    let console = Console(Arc::new(Inner {
        sessions: Sessions::new(deps.services.clone(), deps.sessions),
        services: deps.services,
        api: deps.api,
        issuer: deps.issuer,
        proxy_url: deps.proxy_url,
    }));
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(pages::overview))
        .route("/console/assets/{file}", get(asset))
        .route("/console/sign-in", get(pages::sign_in_page).post(pages::sign_in))
        .route("/console/sign-out", post(pages::sign_out))
        .merge(tokens::routes())
        .merge(identity::routes())
        .merge(gateway::routes())
        .route("/console/{*rest}", any(pages::not_found))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(console)
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        // Pages show secrets once and a token's view of the data: never kept by the browser or a proxy.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The embedded assets: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("style.css", "text/css; charset=utf-8", include_bytes!("../assets/style.css")),
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("../assets/console.js")),
    ("htmx.min.js", "text/javascript; charset=utf-8", include_bytes!("../assets/htmx.min.js")),
    ("htmx.LICENSE", "text/plain; charset=utf-8", include_bytes!("../assets/htmx.LICENSE")),
];

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "public, max-age=3600")],
            Body::from(*bytes),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Why a console request did not get its page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    /// No valid session: back to the sign-in page.
    #[error("signed out")]
    SignedOut,
    /// A form without this session's CSRF token, or from another origin.
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{1}")]
    Failed(StatusCode, String),
}

impl From<gatehouse_store::StoreError> for ConsoleError {
    fn from(e: gatehouse_store::StoreError) -> Self {
        tracing::error!(error = %e, "console: storage error");
        ConsoleError::Failed(StatusCode::SERVICE_UNAVAILABLE, "Storage is unavailable; try again shortly.".into())
    }
}

impl From<api::CallError> for ConsoleError {
    fn from(e: api::CallError) -> Self {
        match e {
            api::CallError::SignedOut => ConsoleError::SignedOut,
            api::CallError::Failed(status, message) => ConsoleError::Failed(status, message),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::SignedOut => signed_out(),
            ConsoleError::Forbidden(message) => {
                (StatusCode::FORBIDDEN, bare_page("Not allowed", message, "error")).into_response()
            }
            ConsoleError::Failed(status, message) => {
                (status, bare_page("Something went wrong", &message, "error")).into_response()
            }
        }
    }
}

/// A page outside a session (errors, sign-in).
pub(crate) fn bare_page(title: &str, text: &str, kind: &'static str) -> Page {
    Page {
        title: title.to_owned(),
        crumbs: Vec::new(),
        user: None,
        csrf: String::new(),
        area: "",
        sections: vec![
            Section::Notice { kind, text: text.to_owned() },
            Section::Actions(vec![view::Action::link("Go to the console", "/console")]),
        ],
    }
}

/// To the sign-in page, with the session cookie removed.
fn signed_out() -> Response {
    let clear = format!("{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict", session::COOKIE);
    ([(header::SET_COOKIE, clear)], Redirect::to("/console/sign-in")).into_response()
}

pub(crate) type Result<T = Response, E = ConsoleError> = std::result::Result<T, E>;

/// A request with a valid session.
pub(crate) struct Signed {
    pub current: Current,
    pub peer: Option<SocketAddr>,
}

impl FromRequestParts<Console> for Signed {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self> {
        let current = console.sessions.current(&parts.headers).await?.ok_or(ConsoleError::SignedOut)?;
        Ok(Signed { current, peer: peer(parts) })
    }
}

fn peer(parts: &Parts) -> Option<SocketAddr> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

/// The largest form a console page posts (a plugin's JSON config is the biggest).
const MAX_FORM: usize = 256 * 1024;

/// A state-changing form post: same origin, a valid session, and that session's CSRF token (compared in constant
/// time). Every POST handler but sign-in takes one.
pub(crate) struct Posted {
    pub current: Current,
    pub peer: Option<SocketAddr>,
    pub values: BTreeMap<String, String>,
    /// Every pair in order, for fields sent more than once (multiple selections).
    pub pairs: Vec<(String, String)>,
}

impl Posted {
    /// The session part, for rendering a page after the post.
    pub fn signed(&self) -> Signed {
        Signed { current: self.current.clone(), peer: self.peer }
    }

    pub fn get(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
}

impl FromRequest<Console> for Posted {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, console: &Console) -> Result<Self> {
        let (mut parts, body) = request.into_parts();
        same_origin(&parts.headers, &parts.uri)?;
        let Signed { current, peer } = Signed::from_request_parts(&mut parts, console).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| ConsoleError::Failed(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.".into()))?;
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(&bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let presented = pairs.iter().find(|(k, _)| k == "_csrf").map(|(_, v)| v.as_str()).unwrap_or("");
        if !current.csrf_matches(presented) {
            return Err(ConsoleError::Forbidden(
                "This form has expired or did not come from this console. Go back, reload the page and try again.",
            ));
        }
        let values = pairs.iter().filter(|(k, _)| k != "_csrf").cloned().collect();
        Ok(Posted { current, peer, values, pairs })
    }
}

/// Refuses a form posted from another origin (browsers send `Origin` on every POST); the CSRF token is the main
/// defence, this one also covers the sign-in form, which has no session yet.
pub(crate) fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> Result<()> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    // HTTP/2 carries the host in the URI's authority rather than a `Host` header.
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    if origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden("This form was posted from another site."))
    }
}

/// Calls the platform API as the signed-in token.
pub(crate) async fn call(
    console: &Console,
    current: &Current,
    peer: Option<SocketAddr>,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<api::Answer> {
    Ok(api::call(&console.api, current, peer, method, path, body).await?)
}

/// A GET of the platform API whose failure is the page's failure.
pub(crate) async fn fetch(console: &Console, signed: &Signed, path: &str) -> Result<serde_json::Value> {
    match call(console, &signed.current, signed.peer, Method::GET, path, None).await? {
        api::Answer::Ok(v) => Ok(v),
        api::Answer::Refused(status, errors) => Err(ConsoleError::Failed(status, errors.general.join(" "))),
    }
}

/// A page of a signed-in session.
pub(crate) fn page(
    current: &Current,
    area: &'static str,
    title: impl Into<String>,
    crumbs: Vec<view::Link>,
    sections: Vec<Section>,
) -> Page {
    Page {
        title: title.into(),
        crumbs,
        user: Some(current.token_name.clone()),
        csrf: current.csrf.clone(),
        area,
        sections,
    }
}

/// After a successful form: to the page that shows the result (303, so a reload does not post again).
pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A path segment, percent-encoded.
pub(crate) fn seg(s: &str) -> String {
    // RFC 3986's unreserved characters stay as they are (ids keep their dashes).
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// A query value, percent-encoded.
pub(crate) fn q(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A string field of an API answer.
pub(crate) fn s(v: &serde_json::Value, key: &str) -> String {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A list field of an API answer, joined with ", ".
pub(crate) fn list(v: &serde_json::Value, key: &str) -> String {
    v.get(key)
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The items of a list answer (`data` in both Konnect's and Kong's shapes).
pub(crate) fn items(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v.get("data").and_then(serde_json::Value::as_array).cloned().unwrap_or_default()
}

/// How a form field becomes a JSON body member.
#[derive(Debug, Clone, Copy)]
pub(crate) enum J {
    /// A string, sent even when empty.
    Str,
    /// A string, left out when empty (the API's default applies).
    Opt,
    Bool,
    /// A whole number; left out when empty; sent as typed when it does not parse, so the API names the error.
    Int,
    /// Every value of a multiple selection.
    List,
    /// One item per non-empty line.
    Lines,
}

/// The JSON body the API takes, from a posted form.
pub(crate) fn body_of(posted: &Posted, spec: &[(&str, J)]) -> serde_json::Value {
    use serde_json::Value;
    let mut out = serde_json::Map::new();
    for (name, kind) in spec {
        let raw = posted.get(name).trim();
        let value = match kind {
            J::Str => Some(Value::from(raw)),
            J::Opt => (!raw.is_empty()).then(|| Value::from(raw)),
            J::Bool => (!raw.is_empty()).then(|| Value::Bool(raw == "true")),
            J::Int => (!raw.is_empty()).then(|| raw.parse::<i64>().map_or_else(|_| Value::from(raw), Value::from)),
            J::List => Some(Value::from(posted.all(name).into_iter().filter(|v| !v.is_empty()).collect::<Vec<_>>())),
            J::Lines => Some(Value::from(
                raw.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect::<Vec<_>>(),
            )),
        };
        if let Some(v) = value {
            out.insert((*name).to_owned(), v);
        }
    }
    Value::Object(out)
}

/// Paging links for Konnect-style lists (`page[number]`), keeping the search.
pub(crate) fn pager(base: &str, query: &str, number: u64, size: u64, total: u64) -> view::Pager {
    let pages = total.div_ceil(size).max(1);
    let link = |n: u64| format!("{base}?q={}&page={n}", q(query));
    view::Pager {
        summary: format!("Page {number} of {pages} ({total} in all)"),
        previous: (number > 1).then(|| link(number - 1)),
        next: (number < pages).then(|| link(number + 1)),
    }
}

/// `?q=…&page=…` of a list page.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ListParams {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub page: Option<u64>,
}

impl ListParams {
    pub fn page(&self) -> u64 {
        self.page.unwrap_or(1).clamp(1, 10_000)
    }

    /// The API query: a page and, when searching, a name filter.
    pub fn api_query(&self, size: u64) -> String {
        let mut out = format!("page%5Bsize%5D={size}&page%5Bnumber%5D={}", self.page());
        if !self.q.trim().is_empty() {
            out.push_str(&format!("&filter%5Bname%5D%5Bcontains%5D={}", q(self.q.trim())));
        }
        out
    }
}
