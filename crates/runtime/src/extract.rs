//! Request extractors whose rejections speak the surface's error format (axum's own rejections are plain text).

use std::marker::PhantomData;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};

use gatehouse_model::body::parse_object;
use gatehouse_model::problem::{InvalidParameter, Rule};

use crate::errors::{ApiError, Surface};

/// A JSON object body: `application/json` (or `+json`), at most the surface's body limit, strictly parsed.
#[derive(Debug)]
pub struct JsonBody<E>(pub Map<String, Value>, PhantomData<E>);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads a whole body, refusing more than `limit` bytes (checked against `Content-Length` first, then while
/// reading, since chunked bodies announce nothing).
pub async fn read_body_limited(
    headers: &http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::PayloadTooLarge { limit }),
        Err(_) => Err(ApiError::invalid(
            InvalidParameter::new("body", Rule::Invalid, "the request body could not be read").in_body(),
        )),
    }
}

impl<S: Send + Sync, E: Surface> FromRequest<S> for JsonBody<E> {
    type Rejection = E;

    async fn from_request(req: Request, _state: &S) -> Result<Self, E> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !is_json(content_type) {
            return Err(ApiError::UnsupportedMediaType { expected: "application/json" }.into());
        }
        let (parts, body) = req.into_parts();
        let bytes = read_body_limited(&parts.headers, body, E::BODY_LIMIT).await?;
        let map = parse_object(&bytes).map_err(ApiError::invalid)?;
        Ok(Self(map, PhantomData))
    }
}

/// What a Kong Admin API body holds. Kong's docs write bodies as forms (`curl --data name=s`), whose values are
/// all strings: the entity handlers type them with the entity's schema (`model::gateway::form`), which the
/// extractor does not know.
#[derive(Debug)]
pub enum AdminInput {
    Json(Map<String, Value>),
    /// `application/x-www-form-urlencoded` or `multipart/form-data`: decoded names and values, in body order.
    Form(Vec<(String, String)>),
}

/// A body of the Kong Admin API and core entities: JSON, a URL-encoded form or a multipart form (as Kong takes
/// them), at most the surface's body limit. A request without a body and without a content type (`curl -X POST`)
/// is an empty form, as in Kong; any other content type is refused (Kong would ignore the body and act on
/// nothing, which hides the mistake).
///
/// Forms are what a web page can send to another site without asking first; the admin listener's
/// `LocalHosts` middleware refuses such cross-site writes before any body is read.
#[derive(Debug)]
pub struct AdminBody<E>(pub AdminInput, PhantomData<E>);

const ADMIN_MEDIA_TYPES: &str = "application/json, application/x-www-form-urlencoded or multipart/form-data";

enum AdminMedia {
    Json,
    UrlEncoded,
    Multipart(String),
    Unstated,
}

fn invalid_body(reason: &str) -> ApiError {
    ApiError::invalid(
        InvalidParameter::new("body", Rule::Invalid, format!("request format is invalid: {reason}")).in_body(),
    )
}

fn admin_media(headers: &http::HeaderMap) -> Result<AdminMedia, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(AdminMedia::Unstated) };
    let content_type = value.to_str().unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        _ if is_json(content_type) => Ok(AdminMedia::Json),
        "application/x-www-form-urlencoded" => Ok(AdminMedia::UrlEncoded),
        "multipart/form-data" => multer::parse_boundary(content_type)
            .map(AdminMedia::Multipart)
            .map_err(|_| invalid_body("multipart/form-data needs a boundary")),
        _ => Err(ApiError::UnsupportedMediaType { expected: ADMIN_MEDIA_TYPES }),
    }
}

/// Names and values of a URL-encoded form. Like JSON bodies, a form must be UTF-8 once decoded: a name or
/// value replaced by U+FFFD would be stored as something the client never sent.
fn url_encoded_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    if percent_encoding::percent_decode(bytes).decode_utf8().is_err() {
        return Err(invalid_body("the form is not UTF-8 once decoded"));
    }
    Ok(form_urlencoded::parse(bytes).into_owned().collect())
}

/// Names and values of a multipart form; a file part's content is its value (`curl -F cert=@cert.pem`), and
/// parts without a name are skipped, as Kong does.
async fn multipart_pairs(bytes: bytes::Bytes, boundary: String) -> Result<Vec<(String, String)>, ApiError> {
    let malformed = |_: multer::Error| invalid_body("the multipart body does not parse");
    let stream = futures_util::stream::once(std::future::ready(Ok::<_, std::convert::Infallible>(bytes)));
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut pairs = Vec::new();
    while let Some(part) = multipart.next_field().await.map_err(malformed)? {
        let name = part.name().map(str::to_owned);
        let data = part.bytes().await.map_err(malformed)?;
        let Some(name) = name else { continue };
        let value = String::from_utf8(data.to_vec()).map_err(|_| invalid_body("a part is not UTF-8 text"))?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

impl<S: Send + Sync, E: Surface> FromRequest<S> for AdminBody<E> {
    type Rejection = E;

    async fn from_request(req: Request, _state: &S) -> Result<Self, E> {
        let media = admin_media(req.headers())?;
        let (parts, body) = req.into_parts();
        let bytes = read_body_limited(&parts.headers, body, E::BODY_LIMIT).await?;
        let input = match media {
            AdminMedia::Json => AdminInput::Json(parse_object(&bytes).map_err(ApiError::invalid)?),
            AdminMedia::UrlEncoded => AdminInput::Form(url_encoded_pairs(&bytes)?),
            AdminMedia::Multipart(boundary) => AdminInput::Form(multipart_pairs(bytes, boundary).await?),
            AdminMedia::Unstated if bytes.is_empty() => AdminInput::Form(Vec::new()),
            AdminMedia::Unstated => return Err(ApiError::UnsupportedMediaType { expected: ADMIN_MEDIA_TYPES }.into()),
        };
        Ok(Self(input, PhantomData))
    }
}

/// Path parameters as strings, in order; parse them with [`path_id`].
#[derive(Debug)]
pub struct PathParams<E>(pub Vec<String>, PhantomData<E>);

impl<S: Send + Sync, E: Surface> FromRequestParts<S> for PathParams<E> {
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, E> {
        match Path::<Vec<String>>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(Self(params, PhantomData)),
            Err(_) => Err(ApiError::invalid(
                InvalidParameter::new("path", Rule::Invalid, "the path is not valid UTF-8").in_path(),
            )
            .into()),
        }
    }
}

/// Parses a path parameter, answering 400 with the parameter's name when it is malformed.
pub fn path_id<T>(name: &str, value: &str, parse: impl FnOnce(&str) -> Option<T>, rule: Rule) -> Result<T, ApiError> {
    parse(value).ok_or_else(|| {
        let reason = match rule {
            Rule::IsUuid => "must be a UUID".to_owned(),
            _ => "is not a valid identifier".to_owned(),
        };
        ApiError::invalid(InvalidParameter::new(name, rule, reason).in_path())
    })
}

/// The route fallback: an unknown path is a 404 in the surface's format.
pub async fn not_found<E: Surface>() -> E {
    ApiError::NotFound("Not Found".to_owned()).into()
}

pub async fn method_not_allowed<E: Surface>() -> E {
    ApiError::MethodNotAllowed.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in
            ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"]
        {
            assert!(is_json(ok), "{ok}");
        }
        for bad in ["", "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "text/json"] {
            assert!(!is_json(bad), "{bad}");
        }
    }

    async fn admin_input(content_type: Option<&str>, body: &'static [u8]) -> Result<AdminInput, ApiError> {
        let mut request = http::Request::post("/services");
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let request = request.body(axum::body::Body::from(body)).unwrap_or_else(|e| panic!("{e}"));
        AdminBody::<TestSurface>::from_request(request, &()).await.map(|b| b.0).map_err(|e| e.0)
    }

    #[derive(Debug)]
    struct TestSurface(ApiError);
    impl From<ApiError> for TestSurface {
        fn from(e: ApiError) -> Self {
            Self(e)
        }
    }
    impl axum::response::IntoResponse for TestSurface {
        fn into_response(self) -> axum::response::Response {
            self.0.status().into_response()
        }
    }
    impl Surface for TestSurface {
        const BODY_LIMIT: usize = 256;
    }

    fn form(input: Result<AdminInput, ApiError>) -> Vec<(String, String)> {
        match input {
            Ok(AdminInput::Form(pairs)) => pairs,
            other => panic!("not a form: {other:?}"),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[tokio::test]
    async fn admin_bodies_as_json_forms_and_multipart() {
        let urlencoded = admin_input(Some("application/x-www-form-urlencoded"), b"name=s&paths%5B%5D=%2Fa&x=a+b").await;
        assert_eq!(form(urlencoded), pairs(&[("name", "s"), ("paths[]", "/a"), ("x", "a b")]));
        let multipart = b"--b\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\ns\r\n--b\r\n\
            Content-Disposition: form-data; name=\"cert\"; filename=\"c.pem\"\r\n\r\nPEM\r\n--b--\r\n";
        let multipart = admin_input(Some("multipart/form-data; boundary=b"), multipart).await;
        assert_eq!(form(multipart), pairs(&[("name", "s"), ("cert", "PEM")]));
        assert!(matches!(admin_input(Some("application/json"), b"{\"a\":1}").await, Ok(AdminInput::Json(_))));
        assert_eq!(form(admin_input(None, b"").await), pairs(&[]), "curl -X POST without data");

        for (content_type, body, status) in [
            (Some("text/plain"), &b"name=s"[..], 415),
            (None, b"name=s", 415),
            (Some("application/x-www-form-urlencoded"), b"name=%FF", 400),
            (Some("application/x-www-form-urlencoded"), b"name=\xff", 400),
            (Some("multipart/form-data"), b"--b--\r\n", 400),
            (Some("multipart/form-data; boundary=b"), b"--b\r\nnot a part", 400),
            (Some("application/x-www-form-urlencoded"), &[b'a'; 257][..], 413),
        ] {
            let e = admin_input(content_type, body).await.unwrap_err();
            assert_eq!(e.status().as_u16(), status, "{content_type:?}");
        }
    }
}
