//! Where the access token is found, in Kong's order (an `access_token` parameter of the body, then of the query,
//! then `Authorization: Bearer|Token …`), and how `hide_credentials` takes it out again.
//!
//! Unlike Kong, which parses any body as a form, only form, JSON and multipart bodies are looked into, and only
//! when the proxy read them whole (up to 64 KiB); anything else streams through untouched. Hiding the token keeps
//! the body's content type (Kong re-encodes a JSON body as a form).

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use serde_json::Value;

use crate::plugins::{Credential, RequestContext, multipart};

pub const PARAMETER: &str = "access_token";

/// Where the token came from, which decides what `hide_credentials` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Header,
    Query,
    Body,
}

#[derive(Debug)]
pub struct Found {
    pub token: Credential,
    pub source: Source,
}

/// A JSON body that is not an object, or a multipart body that does not parse: Kong answers 400.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadBody(String);

impl BadBody {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Form,
    Json,
    Multipart(String),
}

pub(crate) fn body_kind(headers: &HeaderMap) -> Option<BodyKind> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime: mime::Mime = content_type.parse().ok()?;
    match (mime.type_(), mime.subtype()) {
        (mime::APPLICATION, mime::WWW_FORM_URLENCODED) => Some(BodyKind::Form),
        (mime::APPLICATION, mime::JSON) => Some(BodyKind::Json),
        (_, sub) if mime.suffix() == Some(mime::JSON) || sub == mime::JSON => Some(BodyKind::Json),
        (mime::MULTIPART, mime::FORM_DATA) => {
            mime.get_param(mime::BOUNDARY).map(|b| BodyKind::Multipart(b.as_str().to_owned()))
        }
        _ => None,
    }
}

/// The first `access_token` of a form-encoded string.
pub(crate) fn in_form(form: &[u8]) -> Option<String> {
    form_urlencoded::parse(form).find(|(k, _)| k == PARAMETER).map(|(_, v)| v.into_owned())
}

pub(crate) async fn in_body(kind: &BodyKind, body: &Bytes) -> Result<Option<String>, BadBody> {
    match kind {
        BodyKind::Form => Ok(in_form(body)),
        BodyKind::Json => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(map.get(PARAMETER).and_then(json_text)),
            Ok(_) => Err(BadBody("the JSON body is not an object".into())),
            Err(e) => Err(BadBody(format!("the JSON body does not parse: {e}"))),
        },
        BodyKind::Multipart(boundary) => {
            // Boxed: the multipart parser's future is large and rare; the plugin's future stays small.
            for part in Box::pin(multipart::parse(body, boundary)).await.map_err(unparsable)? {
                if part.is(PARAMETER) {
                    return Ok(Some(String::from_utf8_lossy(&part.data).into_owned()));
                }
            }
            Ok(None)
        }
    }
}

/// A JSON parameter's value as Kong's Lua would pass it on: strings as they are, numbers as text.
fn json_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Finds the token: an `access_token` parameter (the body's over the query's), else the `Authorization` header.
/// As in Kong, a parameter that is present decides, even when empty: an empty one is no token, and the header is
/// not looked at.
pub async fn find(ctx: &RequestContext<'_>) -> Result<Option<Found>, BadBody> {
    let kind = body_kind(ctx.headers);
    let found = |token: String, source| (!token.is_empty()).then(|| Found { token: Credential::owned(token), source });
    if let (Some(kind), Some(body)) = (&kind, ctx.body.as_ref())
        && !body.is_empty()
        && let Some(token) = in_body(kind, body).await?
    {
        return Ok(found(token, Source::Body));
    }
    if let Some(token) = ctx.query.as_deref().and_then(|q| in_form(q.as_bytes())) {
        return Ok(found(token, Source::Query));
    }
    let Some(value) = ctx.headers.get(header::AUTHORIZATION) else { return Ok(None) };
    // The token stays in the header's buffer: no copy per request.
    let token = bearer_token(value.as_bytes()).and_then(|range| Credential::in_header(value, range));
    Ok(token.map(|token| Found { token, source: Source::Header }))
}

/// Where the token is in `Bearer|Token <token>` (scheme in any case): exactly two parts separated by whitespace,
/// which in a header value can only be spaces and tabs. Tokens are long, so they are scanned with memchr rather
/// than split char by char.
pub(crate) fn bearer_token(value: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = value.len() - value.trim_ascii_start().len();
    let trimmed = value.trim_ascii();
    let gap = memchr::memchr2(b' ', b'\t', trimmed)?;
    let (scheme, rest) = trimmed.split_at(gap);
    let token = rest.trim_ascii_start();
    let known = scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"token");
    if !known || token.is_empty() || memchr::memchr2(b' ', b'\t', token).is_some() {
        return None;
    }
    let token_start = start + trimmed.len() - token.len();
    Some(token_start..token_start + token.len())
}

/// `hide_credentials`: the header goes; otherwise `access_token` leaves the query and, except on GET, the body.
pub async fn hide(ctx: &mut RequestContext<'_>, source: Source) -> Result<(), BadBody> {
    if source == Source::Header {
        ctx.headers.remove(header::AUTHORIZATION);
        return Ok(());
    }
    if let Some(query) = ctx.query.as_deref() {
        let kept = without_parameter(query.as_bytes());
        ctx.query = if kept.is_empty() { None } else { Some(Cow::Owned(String::from_utf8_lossy(&kept).into_owned())) };
    }
    if ctx.method == Method::GET {
        return Ok(());
    }
    let (Some(kind), Some(body)) = (body_kind(ctx.headers), ctx.body.as_ref()) else { return Ok(()) };
    if body.is_empty() {
        return Ok(());
    }
    // A body without the parameter goes on exactly as the client sent it.
    let rewritten = match &kind {
        BodyKind::Form => {
            let kept = without_parameter(body);
            if kept.len() == body.len() {
                return Ok(());
            }
            Bytes::from(kept)
        }
        BodyKind::Json => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(mut map)) if map.contains_key(PARAMETER) => {
                map.remove(PARAMETER);
                Bytes::from(serde_json::to_vec(&map).map_err(|e| BadBody(e.to_string()))?)
            }
            _ => return Ok(()),
        },
        BodyKind::Multipart(boundary) => {
            let parts = Box::pin(multipart::parse(body, boundary)).await.map_err(unparsable)?;
            if parts.iter().all(|p| !p.is(PARAMETER)) {
                return Ok(());
            }
            multipart::encode(boundary, parts.iter().filter(|p| !p.is(PARAMETER)))
        }
    };
    ctx.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
    *ctx.body = Some(rewritten);
    Ok(())
}

/// The `&`-separated pairs except `access_token`, the others byte for byte as the client sent them.
fn without_parameter(form: &[u8]) -> Vec<u8> {
    let mut kept: Vec<u8> = Vec::with_capacity(form.len());
    for pair in form.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        if form_urlencoded::parse(pair).next().is_some_and(|(k, _)| k == PARAMETER) {
            continue;
        }
        if !kept.is_empty() {
            kept.push(b'&');
        }
        kept.extend_from_slice(pair);
    }
    kept
}

fn unparsable(e: multer::Error) -> BadBody {
    BadBody(format!("the multipart body does not parse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_schemes_and_shapes() {
        let cases: [(&[u8], Option<&str>); 9] = [
            (b"Bearer abc.def", Some("abc.def")),
            (b"bearer\t abc", Some("abc")),
            (b"  TOKEN abc  ", Some("abc")),
            (b"Basic abc", None),
            (b"Bearer", None),
            (b"Bearer ", None),
            (b"Bearer a b", None),
            (b"Bearerabc", None),
            (b"Bearer \xff", None),
        ];
        for (value, token) in cases {
            let found = bearer_token(value).and_then(|range| std::str::from_utf8(&value[range]).ok());
            assert_eq!(found, token, "{}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn only_the_token_pair_leaves_a_form() {
        let cases: [(&str, &str); 5] = [
            ("a=1&access_token=x&b=%20y", "a=1&b=%20y"),
            ("access_token=x", ""),
            ("access%5Ftoken=x&c", "c"),
            ("access_token&a=1", "a=1"),
            ("a=access_token", "a=access_token"),
        ];
        for (form, kept) in cases {
            assert_eq!(String::from_utf8(without_parameter(form.as_bytes())).unwrap(), kept, "{form}");
        }
    }

    #[test]
    fn content_types_that_are_looked_into() {
        let kind = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            body_kind(&h)
        };
        assert_eq!(kind("application/x-www-form-urlencoded; charset=utf-8"), Some(BodyKind::Form));
        assert_eq!(kind("application/json"), Some(BodyKind::Json));
        assert_eq!(kind("application/vnd.api+json"), Some(BodyKind::Json));
        assert_eq!(kind("multipart/form-data; boundary=xyz"), Some(BodyKind::Multipart("xyz".into())));
        assert_eq!(kind("multipart/form-data"), None, "no boundary, nothing to parse");
        assert_eq!(kind("text/plain"), None);
        assert_eq!(kind("application/octet-stream"), None);
    }

    #[tokio::test]
    async fn multipart_round_trip_without_the_token() {
        let body = Bytes::from_static(
            b"--b\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\nsecret\r\n--b\r\n\
              Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n",
        );
        let kind = BodyKind::Multipart("b".into());
        assert_eq!(in_body(&kind, &body).await.unwrap().as_deref(), Some("secret"));
        let parts = multipart::parse(&body, "b").await.unwrap();
        let rewritten = multipart::encode("b", parts.iter().filter(|p| !p.is(PARAMETER)));
        let again = multipart::parse(&rewritten, "b").await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].name.as_deref(), Some("file"));
        assert_eq!(&again[0].data[..], b"hello");
        assert_eq!(again[0].headers[header::CONTENT_TYPE], "text/plain");
        assert!(in_body(&kind, &Bytes::from_static(b"garbage")).await.is_err());
    }

    /// Token extraction on generated input: it never panics, a token taken from a header is a piece of that header
    /// (never built from anything else), and parameters give back what was encoded into them.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn run<T>(future: impl std::future::Future<Output = T>) -> T {
            tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
        }

        /// `Authorization` values around the shapes the parser distinguishes.
        fn authorization() -> impl Strategy<Value = Vec<u8>> {
            let scheme =
                prop_oneof![Just("Bearer"), Just("bearer"), Just("TOKEN"), Just("Basic"), Just("Bearerx"), Just("")];
            let blank = prop_oneof![Just(""), Just(" "), Just("\t"), Just("  \t")];
            (blank.clone(), scheme, blank.clone(), "[!-~]{0,12}", blank.clone(), "[ -~]{0,4}", blank)
                .prop_map(|(a, scheme, b, token, c, more, d)| format!("{a}{scheme}{b}{token}{c}{more}{d}").into_bytes())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

            #[test]
            fn a_header_token_is_a_piece_of_the_header(
                value in prop_oneof![authorization(), prop::collection::vec(any::<u8>(), 0..40)],
            ) {
                let Some(range) = bearer_token(&value) else { return Ok(()) };
                let token = &value[range.clone()];
                prop_assert!(!token.is_empty() && !token.contains(&b' ') && !token.contains(&b'\t'));
                // What precedes it is a known scheme and blanks; what follows, blanks only.
                let before = value[..range.start].trim_ascii();
                prop_assert!(before.eq_ignore_ascii_case(b"bearer") || before.eq_ignore_ascii_case(b"token"));
                prop_assert!(value[range.start - 1].is_ascii_whitespace());
                prop_assert!(value[range.end..].iter().all(|b| *b == b' ' || *b == b'\t'));
            }

            #[test]
            fn a_well_formed_header_gives_its_token(
                scheme in prop_oneof![Just("Bearer"), Just("bEaReR"), Just("Token")],
                token in "[!-~]{1,40}",
                blanks in prop_oneof![Just(" "), Just("\t "), Just("   ")],
            ) {
                let value = format!(" {scheme}{blanks}{token} ");
                let found = bearer_token(value.as_bytes()).map(|r| &value[r]);
                prop_assert_eq!(found, Some(token.as_str()));
            }

            #[test]
            fn bodies_and_forms_never_panic(
                body in prop::collection::vec(any::<u8>(), 0..300),
                boundary in "[a-zA-Z0-9'()+_,./:=?-]{1,12}",
            ) {
                let body = Bytes::from(body);
                let _ = in_form(&body);
                let _ = without_parameter(&body);
                for kind in [BodyKind::Form, BodyKind::Json, BodyKind::Multipart(boundary.clone())] {
                    let _ = run(in_body(&kind, &body));
                }
                // A multipart body built around the bytes, to get past the first boundary.
                let wrapped = [format!("--{boundary}\r\n").as_bytes(), &body, format!("\r\n--{boundary}--\r\n").as_bytes()].concat();
                let _ = run(in_body(&BodyKind::Multipart(boundary), &Bytes::from(wrapped)));
            }

            /// A form with `access_token` among other pairs gives the first one back, decoded, and
            /// `without_parameter` keeps every other pair byte for byte.
            #[test]
            fn the_first_form_parameter_is_the_token(
                token in ".{0,20}",
                second in ".{0,5}",
                others in prop::collection::vec(("[a-z_]{1,6}", "[ -~]{0,6}"), 0..4),
            ) {
                let encode = |k: &str, v: &str| form_urlencoded::Serializer::new(String::new()).append_pair(k, v).finish();
                let mut pairs: Vec<String> = others.iter().filter(|(k, _)| k != PARAMETER).map(|(k, v)| encode(k, v)).collect();
                let kept = pairs.join("&");
                pairs.insert(pairs.len() / 2, encode(PARAMETER, &token));
                pairs.push(encode(PARAMETER, &second));
                let form = pairs.join("&");
                prop_assert_eq!(in_form(form.as_bytes()), Some(token));
                prop_assert_eq!(String::from_utf8(without_parameter(form.as_bytes())).unwrap(), kept);
            }
        }
    }

    #[tokio::test]
    async fn json_bodies_must_be_objects() {
        assert!(in_body(&BodyKind::Json, &Bytes::from_static(b"[1]")).await.is_err());
        assert!(in_body(&BodyKind::Json, &Bytes::from_static(b"{")).await.is_err());
        let found = in_body(&BodyKind::Json, &Bytes::from_static(br#"{"access_token":"t","a":1}"#)).await.unwrap();
        assert_eq!(found.as_deref(), Some("t"));
    }
}
