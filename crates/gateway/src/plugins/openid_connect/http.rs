//! The plugin's calls to the IdP: discovery, keys and introspection. Every call has the configured timeout, a
//! bounded answer, and a failure that says what went wrong without the IdP's body (which may echo a token).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Map, Value};

/// An IdP answer larger than this is a failure, not something to buffer (a JWKS of a few dozen keys is ~20 KiB).
const MAX_ANSWER_BYTES: usize = 512 * 1024;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why the IdP gave no usable answer. Logged with the request id, never sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} could not be reached: {1}")]
    Unreachable(&'static str, String),
    #[error("{0} did not answer within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("{what} answered {status} (body of {len} bytes)")]
    Status { what: &'static str, status: u16, len: usize },
    #[error("{0}'s answer is not a JSON object")]
    NotJson(&'static str),
    #[error("{0}: the URL is not usable: {1}")]
    Url(&'static str, String),
}

/// HTTP clients to IdPs, one per (timeout, keepalive, TLS verification), kept across configuration changes so
/// their idle connections survive them.
#[derive(Debug, Default)]
pub struct Clients {
    by_settings: Mutex<BTreeMap<(u64, bool, bool), HttpClient>>,
}

impl Clients {
    pub fn get(&self, timeout: Duration, keepalive: bool, verify: bool) -> IdpClient {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let mut clients = self.by_settings.lock().unwrap_or_else(|p| p.into_inner());
        let client = clients
            .entry((timeout_ms, keepalive, verify))
            .or_insert_with(|| {
                let connector = crate::upstream::connector(timeout_ms, verify);
                let mut builder = Client::builder(TokioExecutor::new());
                builder.pool_timer(TokioTimer::new()).timer(TokioTimer::new());
                if !keepalive {
                    builder.pool_max_idle_per_host(0);
                }
                builder.build(connector)
            })
            .clone();
        IdpClient { client, timeout }
    }
}

/// One configuration's client: its timeout applies to the whole exchange.
#[derive(Debug, Clone)]
pub struct IdpClient {
    client: HttpClient,
    timeout: Duration,
}

pub fn uri(what: &'static str, url: &str) -> Result<Uri, FetchError> {
    let parsed = url::Url::parse(url).map_err(|e| FetchError::Url(what, e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(FetchError::Url(what, "not an http(s) URL with a host".into()));
    }
    parsed.as_str().parse::<Uri>().map_err(|e| FetchError::Url(what, e.to_string()))
}

impl IdpClient {
    pub async fn get_json(&self, what: &'static str, url: &str) -> Result<Map<String, Value>, FetchError> {
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = uri(what, url)?;
        req.headers_mut().insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        self.exchange(what, req).await
    }

    /// A form POST (introspection), with the client's `Authorization` when it authenticates by header.
    pub async fn post_form(
        &self,
        what: &'static str,
        url: &str,
        form: String,
        authorization: Option<&HeaderValue>,
    ) -> Result<Map<String, Value>, FetchError> {
        let mut req = Request::new(Full::new(Bytes::from(form)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri(what, url)?;
        let h = req.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(value) = authorization {
            h.insert(header::AUTHORIZATION, value.clone());
        }
        self.exchange(what, req).await
    }

    async fn exchange(&self, what: &'static str, req: Request<Full<Bytes>>) -> Result<Map<String, Value>, FetchError> {
        // A traced request's call becomes a `kong.internal.request` span under the plugin's phase.
        let traced = crate::trace::recording_calls()
            .then(|| (req.method().clone(), req.uri().clone(), tokio::time::Instant::now()));
        let exchange = async {
            let response = self.client.request(req).await.map_err(|e| {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    message = format!("{message}: {s}");
                    source = s.source();
                }
                FetchError::Unreachable(what, message)
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| FetchError::Unreachable(what, format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, FetchError>((status, body))
        };
        let answer = tokio::time::timeout(self.timeout, exchange).await;
        if let Some((method, uri, start)) = traced {
            let status = match &answer {
                Ok(Ok((status, _))) => Some(status.as_u16()),
                _ => None,
            };
            crate::trace::record_call(method.as_str(), &uri, (start, tokio::time::Instant::now()), status);
        }
        let (status, body) = answer.map_err(|_| FetchError::Timeout(what, self.timeout))??;
        if status != http::StatusCode::OK {
            return Err(FetchError::Status { what, status: status.as_u16(), len: body.len() });
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) | Err(_) => Err(FetchError::NotJson(what)),
        }
    }
}
