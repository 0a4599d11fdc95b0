//! Where the bearer token is found, per `bearer_token_param_type`: a header (`Authorization: Bearer …`, or
//! `bearer_token_header_name` alone when set), then an `access_token` query argument, then an `access_token` body
//! field (form, JSON or multipart bodies the proxy read whole, as `oauth2-introspection` reads them). Hiding the
//! token reuses that plugin's code, which keeps every other byte of the query and the body.

use http::HeaderName;
use http::header;

use crate::plugins::oauth2_introspection::token::{self as shared, BadBody, Source};
use crate::plugins::{Credential, RequestContext};

/// The sources `bearer_token_param_type` enables.
#[derive(Debug, Clone)]
pub struct Sources {
    pub header: bool,
    pub query: bool,
    pub body: bool,
    /// `bearer_token_header_name`: only this header is looked at.
    pub header_name: Option<HeaderName>,
}

impl Sources {
    pub fn new(types: &[String], header_name: Option<&str>) -> Result<Self, String> {
        let has = |t: &str| types.iter().any(|x| x == t);
        let header_name = header_name
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("bearer_token_header_name: invalid header name {n}"))
            })
            .transpose()?;
        Ok(Self { header: has("header"), query: has("query"), body: has("body"), header_name })
    }
}

#[derive(Debug)]
pub struct Found {
    pub token: Credential,
    pub source: Source,
}

pub async fn find(ctx: &RequestContext<'_>, sources: &Sources) -> Result<Option<Found>, BadBody> {
    if sources.header {
        let name = sources.header_name.as_ref().unwrap_or(&header::AUTHORIZATION);
        if let Some(value) = ctx.headers.get(name) {
            let range = shared::bearer_token(value.as_bytes()).or_else(|| {
                // A custom header may carry the bare token.
                let bytes = value.as_bytes();
                (sources.header_name.is_some() && !bytes.is_empty() && !bytes.contains(&b' ')).then_some(0..bytes.len())
            });
            if let Some(token) = range.and_then(|r| Credential::in_header(value, r)) {
                return Ok(Some(Found { token, source: Source::Header }));
            }
        }
    }
    let found = |token: String, source| (!token.is_empty()).then(|| Found { token: Credential::owned(token), source });
    if sources.query
        && let Some(token) = ctx.query.as_deref().and_then(|q| shared::in_form(q.as_bytes()))
    {
        return Ok(found(token, Source::Query));
    }
    if sources.body
        && let (Some(kind), Some(body)) = (shared::body_kind(ctx.headers), ctx.body.as_ref())
        && !body.is_empty()
        && let Some(token) = shared::in_body(&kind, body).await?
    {
        return Ok(found(token, Source::Body));
    }
    Ok(None)
}

/// `hide_credentials`: the token leaves where it was found.
pub async fn hide(ctx: &mut RequestContext<'_>, found: &Found, sources: &Sources) -> Result<(), BadBody> {
    match (found.source, &sources.header_name) {
        (Source::Header, Some(name)) => {
            ctx.headers.remove(name);
            Ok(())
        }
        (source, _) => shared::hide(ctx, source).await,
    }
}
