//! The `client_credentials` auth method: the caller presents a client id and secret, the plugin obtains a token
//! for that client from the token endpoint (the node's token client: one fetch per credential however many
//! requests ask at once, cached until shortly before it expires, keyed by a SHA-256 over the credential and
//! `cache_tokens_salt`, never the secret in clear) and the request goes on as if it had carried that token.
//!
//! Where the credentials are looked for, per `client_credentials_param_type`, in Kong's order: `Authorization:
//! Basic base64(id:secret)`, then the query's, then the body's (form, JSON or multipart) `client_id` (named by
//! `client_arg`) and `client_secret` parameters. Both must be present and not empty.

use std::borrow::Cow;

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use serde_json::Value;

use gatehouse_model::secret::SecretString;

use crate::plugins::RequestContext;
use crate::plugins::multipart;
use crate::plugins::oauth2_introspection::token::{BadBody, BodyKind, Source, body_kind};

pub const SECRET_PARAMETER: &str = "client_secret";

/// The sources `client_credentials_param_type` enables, and the id parameter's name.
#[derive(Debug, Clone)]
pub struct Sources {
    pub header: bool,
    pub query: bool,
    pub body: bool,
    /// `client_arg`: the parameter the client id is in.
    pub id_parameter: String,
}

impl Sources {
    pub fn new(types: &[String], client_arg: &str) -> Self {
        let has = |t: &str| types.iter().any(|x| x == t);
        let id_parameter = if client_arg.is_empty() { "client_id" } else { client_arg }.to_owned();
        Self { header: has("header"), query: has("query"), body: has("body"), id_parameter }
    }
}

/// A caller's client credentials. `Debug` shows neither.
#[derive(Debug)]
pub struct Caller {
    pub id: SecretString,
    pub secret: SecretString,
    pub source: Source,
}

pub async fn find(ctx: &RequestContext<'_>, sources: &Sources) -> Result<Option<Caller>, BadBody> {
    if sources.header
        && let Some((id, secret)) = ctx.headers.get(header::AUTHORIZATION).and_then(basic)
    {
        return Ok(Some(Caller { id, secret, source: Source::Header }));
    }
    let names = [sources.id_parameter.as_str(), SECRET_PARAMETER];
    if sources.query
        && let Some([id, secret]) = ctx.query.as_deref().and_then(|q| in_form(q.as_bytes(), names))
    {
        return Ok(Some(caller(id, secret, Source::Query)));
    }
    if sources.body
        && let (Some(kind), Some(body)) = (body_kind(ctx.headers), ctx.body.as_ref())
        && !body.is_empty()
        && let Some([id, secret]) = in_body(&kind, body, names).await?
    {
        return Ok(Some(caller(id, secret, Source::Body)));
    }
    Ok(None)
}

fn caller(id: String, secret: String, source: Source) -> Caller {
    Caller { id: SecretString::new(id), secret: SecretString::new(secret), source }
}

/// `Basic base64(id:secret)`, scheme in any case; the id is what comes before the first colon.
fn basic(value: &HeaderValue) -> Option<(SecretString, SecretString)> {
    let value = value.as_bytes().trim_ascii();
    let gap = memchr::memchr(b' ', value)?;
    let (scheme, encoded) = value.split_at(gap);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    if id.is_empty() || secret.is_empty() {
        return None;
    }
    Some((SecretString::new(id.to_owned()), SecretString::new(secret.to_owned())))
}

/// Both parameters' first values, when both are there and not empty.
fn both(mut values: [Option<String>; 2]) -> Option<[String; 2]> {
    let id = values[0].take().filter(|v| !v.is_empty())?;
    let secret = values[1].take().filter(|v| !v.is_empty())?;
    Some([id, secret])
}

fn in_form(form: &[u8], names: [&str; 2]) -> Option<[String; 2]> {
    let mut values: [Option<String>; 2] = [None, None];
    for (k, v) in form_urlencoded::parse(form) {
        for (i, name) in names.iter().enumerate() {
            if k == *name && values[i].is_none() {
                values[i] = Some(v.clone().into_owned());
            }
        }
    }
    both(values)
}

async fn in_body(kind: &BodyKind, body: &Bytes, names: [&str; 2]) -> Result<Option<[String; 2]>, BadBody> {
    match kind {
        BodyKind::Form => Ok(in_form(body, names)),
        BodyKind::Json => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => {
                let text = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
                Ok(both([text(names[0]), text(names[1])]))
            }
            Ok(_) => Err(BadBody::new("the JSON body is not an object")),
            Err(e) => Err(BadBody::new(format!("the JSON body does not parse: {e}"))),
        },
        BodyKind::Multipart(boundary) => {
            let parts = Box::pin(multipart::parse(body, boundary))
                .await
                .map_err(|e| BadBody::new(format!("the multipart body does not parse: {e}")))?;
            let text =
                |name: &str| parts.iter().find(|p| p.is(name)).map(|p| String::from_utf8_lossy(&p.data).into_owned());
            Ok(both([text(names[0]), text(names[1])]))
        }
    }
}

/// `hide_credentials`: the Basic header, or both parameters from the query and (except on GET) the body. What
/// else the client sent stays byte for byte.
pub async fn hide(ctx: &mut RequestContext<'_>, caller: &Caller, sources: &Sources) -> Result<(), BadBody> {
    if caller.source == Source::Header {
        ctx.headers.remove(header::AUTHORIZATION);
        return Ok(());
    }
    let names = [sources.id_parameter.as_str(), SECRET_PARAMETER];
    if let Some(query) = ctx.query.as_deref() {
        let kept = without(query.as_bytes(), names);
        ctx.query = if kept.is_empty() { None } else { Some(Cow::Owned(String::from_utf8_lossy(&kept).into_owned())) };
    }
    if ctx.method == http::Method::GET {
        return Ok(());
    }
    let (Some(kind), Some(body)) = (body_kind(ctx.headers), ctx.body.as_ref()) else { return Ok(()) };
    if body.is_empty() {
        return Ok(());
    }
    let rewritten = match &kind {
        BodyKind::Form => {
            let kept = without(body, names);
            if kept.len() == body.len() {
                return Ok(());
            }
            Bytes::from(kept)
        }
        BodyKind::Json => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(mut map)) if names.iter().any(|n| map.contains_key(*n)) => {
                names.iter().for_each(|n| {
                    map.remove(*n);
                });
                Bytes::from(serde_json::to_vec(&map).map_err(|e| BadBody::new(e.to_string()))?)
            }
            _ => return Ok(()),
        },
        BodyKind::Multipart(boundary) => {
            let parts = Box::pin(multipart::parse(body, boundary))
                .await
                .map_err(|e| BadBody::new(format!("the multipart body does not parse: {e}")))?;
            let named = |p: &multipart::Part| names.iter().any(|n| p.is(n));
            if !parts.iter().any(named) {
                return Ok(());
            }
            multipart::encode(boundary, parts.iter().filter(|p| !named(p)))
        }
    };
    ctx.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
    *ctx.body = Some(rewritten);
    Ok(())
}

/// The `&`-separated pairs except `names`, the others as the client sent them.
fn without(form: &[u8], names: [&str; 2]) -> Vec<u8> {
    let mut kept: Vec<u8> = Vec::with_capacity(form.len());
    for pair in form.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        if form_urlencoded::parse(pair).next().is_some_and(|(k, _)| names.contains(&k.as_ref())) {
            continue;
        }
        if !kept.is_empty() {
            kept.push(b'&');
        }
        kept.extend_from_slice(pair);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_and_parameters() {
        let value = HeaderValue::from_static("basic aWQtMTpzM2M6cmV0"); // id-1:s3c:ret
        let (id, secret) = basic(&value).unwrap();
        assert_eq!((id.expose(), secret.expose()), ("id-1", "s3c:ret"));
        assert!(basic(&HeaderValue::from_static("Bearer aWQtMTpzM2M6cmV0")).is_none());
        assert!(basic(&HeaderValue::from_static("Basic OnNlY3JldA==")).is_none(), "empty id");
        assert!(basic(&HeaderValue::from_static("Basic !!!")).is_none());
        let names = ["client_id", "client_secret"];
        assert_eq!(
            in_form(b"a=1&client_id=c%201&client_secret=s&client_id=other", names),
            Some(["c 1".to_owned(), "s".to_owned()])
        );
        assert_eq!(in_form(b"client_id=c&client_secret=", names), None);
        assert_eq!(without(b"a=1&client_id=c&b=2&client_secret=s", names), b"a=1&b=2");
        let caller = caller("id".into(), "hunter2".into(), Source::Query);
        assert!(!format!("{caller:?}").contains("hunter2"));
    }
}
