//! The `/v1` Kong Identity API over HTTP with a personal access token, and what it holds read into the file's
//! form (scope ids turned into names).

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Map, Value};

use gatehouse_model::SecretString;

use super::file::{AuthServerSpec, ClaimSpec, ClientSpec, ScopeSpec};
use crate::DeckError;
use crate::client::{Connection, http_client, http_error};

/// Page size for listings (Konnect's largest).
const PAGE_SIZE: usize = 100;

/// A connection to the `/v1` API.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    headers: Vec<(String, String)>,
}

/// The message of a problem+json answer with its invalid parameters, or the body itself.
fn problem_message(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else { return body.chars().take(500).collect() };
    let text = |f: &str| v.get(f).and_then(Value::as_str).map(str::to_owned);
    let mut message =
        text("detail").or_else(|| text("message")).or_else(|| text("title")).unwrap_or_else(|| body.to_owned());
    let params: Vec<String> = v
        .get("invalid_parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}: {}",
                p.get("field").and_then(Value::as_str).unwrap_or("?"),
                p.get("reason").and_then(Value::as_str).unwrap_or("invalid")
            )
        })
        .collect();
    if !params.is_empty() {
        message = format!("{message} ({})", params.join("; "));
    }
    message
}

impl Api {
    /// Konnect mode is the only mode: the identity API needs a token.
    pub fn new(conn: &Connection) -> Result<Api, DeckError> {
        let konnect = conn.konnect.as_ref().ok_or_else(|| {
            DeckError::Other(
                "the identity API needs a personal access token: give --konnect-token, DECK_KONNECT_TOKEN or \
                 KONNECT_TOKEN"
                    .into(),
            )
        })?;
        Ok(Api {
            http: http_client(conn)?,
            base: konnect.addr.trim_end_matches('/').to_owned(),
            token: konnect.token.clone(),
            headers: conn.headers.clone(),
        })
    }

    /// Sends a request to `/v1{path}`; returns the JSON answer (`Null` for 204).
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, DeckError> {
        let url = format!("{}/v1{path}", self.base);
        let what = format!("{method} {url}");
        let mut req = self.http.request(method, &url).bearer_auth(self.token.expose());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| http_error(&what, e))?;
        let status = res.status();
        let text = res.text().await.map_err(|e| http_error(&what, e))?;
        if !status.is_success() {
            return Err(DeckError::Api { what, status: status.as_u16(), message: problem_message(&text) });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| DeckError::Other(format!("{what}: the answer is not JSON: {e}")))
    }

    /// Every item of a collection, page by page.
    pub async fn list(&self, path: &str) -> Result<Vec<Map<String, Value>>, DeckError> {
        let mut out = Vec::new();
        for number in 1.. {
            let page =
                self.send(Method::GET, &format!("{path}?page[size]={PAGE_SIZE}&page[number]={number}"), None).await?;
            let data = page.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
            let n = data.len();
            out.extend(data.into_iter().filter_map(|v| match v {
                Value::Object(o) => Some(o),
                _ => None,
            }));
            let total = page.pointer("/meta/page/total").and_then(Value::as_u64);
            if n < PAGE_SIZE || total.is_some_and(|t| out.len() as u64 >= t) {
                break;
            }
        }
        Ok(out)
    }

    /// What the API holds, with ids.
    pub async fn current(&self) -> Result<Vec<LiveServer>, DeckError> {
        let mut out = Vec::new();
        for s in self.list("/auth-servers").await? {
            let id = string(&s, "id");
            let scopes = self.list(&format!("/auth-servers/{id}/scopes")).await?;
            let claims = self.list(&format!("/auth-servers/{id}/claims")).await?;
            let clients = self.list(&format!("/auth-servers/{id}/clients")).await?;
            out.push(LiveServer::read(&s, &scopes, &claims, &clients));
        }
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(out)
    }
}

/// An auth server the API holds: its form as a file would give it, and the ids of it and its children by name.
#[derive(Debug, Clone)]
pub struct LiveServer {
    pub id: String,
    pub spec: AuthServerSpec,
    pub scope_ids: BTreeMap<String, String>,
    pub claim_ids: BTreeMap<String, String>,
    pub client_ids: BTreeMap<String, String>,
}

fn string(o: &Map<String, Value>, key: &str) -> String {
    o.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn boolean(o: &Map<String, Value>, key: &str) -> bool {
    o.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn strings(o: &Map<String, Value>, key: &str) -> Vec<String> {
    o.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

fn label_map(o: &Map<String, Value>) -> BTreeMap<String, String> {
    o.get("labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect()
}

impl LiveServer {
    fn read(
        s: &Map<String, Value>,
        scopes: &[Map<String, Value>],
        claims: &[Map<String, Value>],
        clients: &[Map<String, Value>],
    ) -> LiveServer {
        let scope_ids: BTreeMap<String, String> = scopes.iter().map(|o| (string(o, "name"), string(o, "id"))).collect();
        let names_by_id: BTreeMap<String, String> = scope_ids.iter().map(|(n, i)| (i.clone(), n.clone())).collect();
        // A scope id the listing did not return stays an id, so a diff shows it rather than dropping it.
        let names = |ids: Vec<String>| -> Vec<String> {
            let mut out: Vec<String> = ids.into_iter().map(|id| names_by_id.get(&id).cloned().unwrap_or(id)).collect();
            out.sort();
            out.dedup();
            out
        };
        let mut spec = AuthServerSpec {
            name: string(s, "name"),
            description: string(s, "description"),
            audience: string(s, "audience"),
            signing_algorithm: string(s, "signing_algorithm"),
            trusted_origins: strings(s, "trusted_origins"),
            labels: label_map(s),
            scopes: scopes
                .iter()
                .map(|o| ScopeSpec {
                    name: string(o, "name"),
                    description: string(o, "description"),
                    default: boolean(o, "default"),
                    include_in_metadata: boolean(o, "include_in_metadata"),
                    enabled: boolean(o, "enabled"),
                })
                .collect(),
            claims: claims
                .iter()
                .map(|o| ClaimSpec {
                    name: string(o, "name"),
                    value: string(o, "value"),
                    include_in_token: boolean(o, "include_in_token"),
                    include_in_all_scopes: boolean(o, "include_in_all_scopes"),
                    include_in_scopes: names(strings(o, "include_in_scopes")),
                    enabled: boolean(o, "enabled"),
                })
                .collect(),
            clients: clients
                .iter()
                .map(|o| ClientSpec {
                    name: string(o, "name"),
                    grant_types: strings(o, "grant_types"),
                    response_types: strings(o, "response_types"),
                    redirect_uris: strings(o, "redirect_uris"),
                    login_uri: o.get("login_uri").and_then(Value::as_str).map(str::to_owned),
                    access_token_duration: o.get("access_token_duration").and_then(Value::as_i64).unwrap_or_default(),
                    id_token_duration: o.get("id_token_duration").and_then(Value::as_i64).unwrap_or_default(),
                    allow_all_scopes: boolean(o, "allow_all_scopes"),
                    allow_scopes: names(strings(o, "allow_scopes")),
                    token_endpoint_auth_method: string(o, "token_endpoint_auth_method"),
                    labels: label_map(o),
                    secret: None,
                })
                .collect(),
        };
        spec.sort();
        LiveServer {
            id: string(s, "id"),
            spec,
            scope_ids,
            claim_ids: claims.iter().map(|o| (string(o, "name"), string(o, "id"))).collect(),
            client_ids: clients.iter().map(|o| (string(o, "name"), string(o, "id"))).collect(),
        }
    }
}
