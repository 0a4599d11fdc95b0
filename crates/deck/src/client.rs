//! Talking to a target: the Kong Admin API (`--kong-addr`) or, in Konnect mode, the core-entities API of a
//! control plane found by name on the platform API. HTTPS is verified against the system's roots unless told
//! otherwise (`--tls-skip-verify`, `--ca-cert`).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use gatehouse_model::SecretString;
use gatehouse_model::gateway::EntityKind;

use crate::DeckError;
use crate::target::{Current, ORDER};

/// Konnect mode: the platform API, a personal access token, and the control plane's name.
#[derive(Debug, Clone)]
pub struct Konnect {
    pub addr: String,
    pub token: SecretString,
    pub control_plane_name: String,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Connection {
    pub kong_addr: String,
    pub konnect: Option<Konnect>,
    /// Extra headers on every request (`--headers k:v`).
    pub headers: Vec<(String, String)>,
    pub tls_skip_verify: bool,
    /// PEM certificates to trust besides the system's roots.
    pub ca_cert_pem: Option<String>,
    pub timeout: Duration,
}

impl Default for Connection {
    fn default() -> Self {
        Self {
            kong_addr: "http://localhost:8001".into(),
            konnect: None,
            headers: Vec::new(),
            tls_skip_verify: false,
            ca_cert_pem: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A connected target.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Entity URLs are `{base}/{collection}…`.
    base: String,
    token: Option<SecretString>,
    headers: Vec<(String, String)>,
    /// The control plane's name in Konnect mode (dumps record it).
    pub control_plane_name: Option<String>,
    /// The version the Admin API reports (`GET /`); none in Konnect mode.
    pub kong_version: Option<String>,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

pub(crate) fn http_error(what: impl Into<String>, e: reqwest::Error) -> DeckError {
    DeckError::Http { what: what.into(), message: chain(&e) }
}

/// The HTTP client a connection's TLS and timeout settings describe.
pub fn http_client(c: &Connection) -> Result<reqwest::Client, DeckError> {
    let mut builder = reqwest::Client::builder().timeout(c.timeout).connect_timeout(c.timeout);
    if c.tls_skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some(pem) = &c.ca_cert_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| DeckError::Other(format!("reading the CA certificate: {}", chain(&e))))?;
        if certs.is_empty() {
            return Err(DeckError::Other("reading the CA certificate: no PEM certificate found".into()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| http_error("building the HTTP client", e))
}

/// The message of a Kong (`message`) or Konnect (`detail`) error body, or the body itself.
pub(crate) fn api_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |f: &str| parsed.as_ref().and_then(|v| v.get(f)).and_then(Value::as_str).map(str::to_owned);
    field("message").or_else(|| field("detail")).unwrap_or_else(|| body.chars().take(500).collect())
}

impl Client {
    /// Builds the HTTP client, checks the target answers like Kong 3.x (Admin API) or finds the control plane
    /// (Konnect mode).
    pub async fn connect(c: &Connection) -> Result<Client, DeckError> {
        let http = http_client(c)?;
        match &c.konnect {
            None => {
                let base = c.kong_addr.trim_end_matches('/').to_owned();
                let mut client = Client {
                    http,
                    base,
                    token: None,
                    headers: c.headers.clone(),
                    control_plane_name: None,
                    kong_version: None,
                };
                let root = client.get_json(&format!("{}/", client.base)).await?;
                let version = root.get("version").and_then(Value::as_str).unwrap_or("").to_owned();
                let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
                if major < 3 {
                    return Err(DeckError::Other(format!(
                        "{} answers as Kong version '{version}'; file format 3.0 needs Kong 3.0 or above",
                        client.base
                    )));
                }
                client.kong_version = Some(version);
                Ok(client)
            }
            Some(k) => {
                let addr = k.addr.trim_end_matches('/').to_owned();
                let mut client = Client {
                    http,
                    base: addr.clone(),
                    token: Some(k.token.clone()),
                    headers: c.headers.clone(),
                    control_plane_name: Some(k.control_plane_name.clone()),
                    kong_version: None,
                };
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("filter[name][eq]", &k.control_plane_name)
                    .finish();
                let list = client.get_json(&format!("{addr}/v2/control-planes?{query}")).await?;
                let id = list
                    .get("data")
                    .and_then(Value::as_array)
                    .and_then(|d| {
                        d.iter().find(|cp| cp.get("name").and_then(Value::as_str) == Some(&k.control_plane_name))
                    })
                    .and_then(|cp| cp.get("id"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| DeckError::Other(format!("control plane '{}' not found", k.control_plane_name)))?;
                client.base = format!("{addr}/v2/control-planes/{id}/core-entities");
                Ok(client)
            }
        }
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req
    }

    async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Result<(StatusCode, String), DeckError> {
        let res = req.send().await.map_err(|e| http_error(what, e))?;
        let status = res.status();
        let body = res.text().await.map_err(|e| http_error(what, e))?;
        Ok((status, body))
    }

    async fn get_json(&self, url: &str) -> Result<Value, DeckError> {
        let what = format!("GET {url}");
        let (status, body) = self.send(&what, self.request(Method::GET, url)).await?;
        if !status.is_success() {
            return Err(DeckError::Api { what, status: status.as_u16(), message: api_message(&body) });
        }
        serde_json::from_str(&body).map_err(|e| DeckError::Other(format!("{what}: the answer is not JSON: {e}")))
    }

    /// Every entity of a kind, page by page.
    pub async fn list(&self, kind: EntityKind) -> Result<Vec<Map<String, Value>>, DeckError> {
        let mut out = Vec::new();
        let mut offset: Option<String> = None;
        loop {
            let mut url = format!("{}/{}?size=1000", self.base, kind.collection());
            if let Some(o) = &offset {
                url.push_str("&offset=");
                url.push_str(&form_urlencoded::byte_serialize(o.as_bytes()).collect::<String>());
            }
            let page = self.get_json(&url).await?;
            for e in page.get("data").and_then(Value::as_array).into_iter().flatten() {
                if let Some(o) = e.as_object() {
                    out.push(o.clone());
                }
            }
            match page.get("offset").and_then(Value::as_str) {
                Some(o) if !o.is_empty() => offset = Some(o.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// What the target holds.
    pub async fn current(&self) -> Result<Current, DeckError> {
        let mut current = Current::default();
        for kind in ORDER {
            let mut list = self.list(kind).await?;
            for e in &mut list {
                crate::target::drop_derived(kind, e);
            }
            current.entities.insert(kind, list);
        }
        Ok(current)
    }

    /// Creates or replaces an entity (`PUT /{collection}/{id}`), as decK does.
    pub async fn put(&self, kind: EntityKind, id: &str, body: &Map<String, Value>) -> Result<(), DeckError> {
        let url = format!("{}/{}/{id}", self.base, kind.collection());
        let what = format!("PUT {url}");
        let request = if kind == EntityKind::BasicAuth {
            // decK hashed the password as Kong stores it (`target::stored_password`): stored as it is.
            let mut body = body.clone();
            body.insert("_transform".into(), Value::Bool(false));
            self.request(Method::PUT, &url).json(&body)
        } else {
            self.request(Method::PUT, &url).json(body)
        };
        let (status, text) = self.send(&what, request).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(DeckError::Api { what, status: status.as_u16(), message: api_message(&text) })
        }
    }

    pub async fn delete(&self, kind: EntityKind, id: &str) -> Result<(), DeckError> {
        let url = format!("{}/{}/{id}", self.base, kind.collection());
        let what = format!("DELETE {url}");
        let (status, text) = self.send(&what, self.request(Method::DELETE, &url)).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(DeckError::Api { what, status: status.as_u16(), message: api_message(&text) })
        }
    }
}
