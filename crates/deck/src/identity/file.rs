//! Identity files: auth servers with their scopes, claims and clients, scopes referenced by name. Every entity is
//! checked with the parser the server runs (`model::identity`), offline, and every problem names the place in the
//! file and the path of the field (`auth_servers[0].clients[1].grant_types[0]`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use gatehouse_model::identity::secret::chosen_secret;
use gatehouse_model::identity::{ClientInput, NewAuthServer, NewClaim, NewScope};
use gatehouse_model::problem::InvalidParameter;
use gatehouse_model::{Labels, SecretString};

use crate::file::{Document, Env, FileError, Place, Source, parse, render};

/// The only version of the identity file format so far.
pub const FORMAT_VERSION: &str = "1.0";

/// Label selection: an entity is selected when it carries every one of these labels.
pub type Selector = BTreeMap<String, String>;

/// An auth server as a file describes it, its children sorted by name. Field order is the dump's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthServerSpec {
    pub name: String,
    pub description: String,
    pub audience: String,
    pub signing_algorithm: String,
    pub trusted_origins: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub scopes: Vec<ScopeSpec>,
    pub claims: Vec<ClaimSpec>,
    pub clients: Vec<ClientSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeSpec {
    pub name: String,
    pub description: String,
    pub default: bool,
    pub include_in_metadata: bool,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimSpec {
    pub name: String,
    pub value: String,
    pub include_in_token: bool,
    pub include_in_all_scopes: bool,
    /// Scope names, sorted: the order carries no meaning.
    pub include_in_scopes: Vec<String>,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientSpec {
    pub name: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_uri: Option<String>,
    pub access_token_duration: i64,
    pub id_token_duration: i64,
    pub allow_all_scopes: bool,
    /// Scope names, sorted.
    pub allow_scopes: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub labels: BTreeMap<String, String>,
    /// Where a new client's secret comes from; never written, never compared.
    #[serde(skip)]
    pub secret: Option<SecretSource>,
}

/// A reference to a client secret (`client_secret: {env: NAME}` or `{file: PATH}`), or a value that templating
/// (`${{ env "DECK_X" }}`) put in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    Value(SecretString),
}

/// A secret reference with the place it was written, for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    pub reference: SecretRef,
    pub place: Place,
}

impl SecretSource {
    /// Reads the secret (only when a client is created) and checks it as the server would.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<SecretString, FileError> {
        let err = |message: String| FileError { place: self.place.clone(), message };
        let raw = match &self.reference {
            SecretRef::Env(name) => {
                env(name).ok_or_else(|| err(format!("client_secret: environment variable '{name}' is not set")))?
            }
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| err(format!("client_secret: cannot read {}: {e}", path.display())))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            SecretRef::Value(v) => v.expose().to_owned(),
        };
        chosen_secret("client_secret", &Value::String(raw)).map_err(|p| err(format!("client_secret: {}", p.reason)))
    }
}

/// Every input merged.
#[derive(Debug, Clone, Default)]
pub struct IdentityFile {
    pub select_labels: Selector,
    pub auth_servers: Vec<AuthServerSpec>,
}

/// A model parser's field (`allow_scopes[0]`, `labels.team`) as a JSON pointer suffix (`/allow_scopes/0`).
fn field_pointer(field: &str) -> String {
    let mut out = String::new();
    for part in field.split('.') {
        let (head, rest) = part.split_once('[').map_or((part, ""), |(h, r)| (h, r));
        if !head.is_empty() {
            out.push('/');
            out.push_str(&head.replace('~', "~0").replace('/', "~1"));
        }
        for index in rest.split('[') {
            let index = index.trim_end_matches(']');
            if !index.is_empty() {
                out.push('/');
                out.push_str(index);
            }
        }
    }
    out
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_owned() } else { format!("{path}.{field}") }
}

/// Where an item is: its document, JSON pointer and readable path.
struct At<'a> {
    doc: &'a Document,
    pointer: String,
    path: String,
}

impl<'a> At<'a> {
    fn child(&self, key: &str, index: usize) -> At<'a> {
        At {
            doc: self.doc,
            pointer: format!("{}/{key}/{index}", self.pointer),
            path: join(&self.path, &format!("{key}[{index}]")),
        }
    }

    fn error(&self, field: &str, message: impl std::fmt::Display) -> FileError {
        let (pointer, path) = if field.is_empty() {
            (self.pointer.clone(), self.path.clone())
        } else {
            (format!("{}{}", self.pointer, field_pointer(field)), join(&self.path, field))
        };
        FileError { place: self.doc.place(&pointer), message: format!("{path}: {message}") }
    }

    fn params(&self, params: Vec<InvalidParameter>, errors: &mut Vec<FileError>) {
        errors.extend(params.into_iter().map(|p| self.error(&p.field, p.reason)));
    }
}

fn text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn labels(l: Labels) -> BTreeMap<String, String> {
    l.0
}

/// A list of entity mappings under `key` (absent or null: none).
fn list(body: &mut Map<String, Value>, key: &str, at: &At<'_>, errors: &mut Vec<FileError>) -> Vec<Map<String, Value>> {
    match body.remove(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::Object(o) => Some(o),
                _ => {
                    errors.push(at.child(key, i).error("", "expected a mapping"));
                    None
                }
            })
            .collect(),
        Some(_) => {
            errors.push(at.error(key, "expected a list"));
            Vec::new()
        }
    }
}

/// Scope names in `field`: strings naming scopes of the same auth server. Sorted and without repeats.
fn scope_names(
    body: &mut Map<String, Value>,
    field: &str,
    known: &BTreeSet<String>,
    at: &At<'_>,
    errors: &mut Vec<FileError>,
) -> Vec<String> {
    let mut out = BTreeSet::new();
    match body.remove(field) {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let f = format!("{field}[{i}]");
                match item.as_str() {
                    Some(name) if known.contains(name) => {
                        if !out.insert(name.to_owned()) {
                            errors.push(at.error(&f, format!("scope '{name}' is listed twice")));
                        }
                    }
                    Some(name) => errors.push(at.error(&f, format!("no scope named '{name}' in this auth server"))),
                    None => errors.push(at.error(&f, "expected a scope name")),
                }
            }
        }
        Some(_) => errors.push(at.error(field, "expected a list of scope names")),
    }
    out.into_iter().collect()
}

fn secret_source(v: Value, at: &At<'_>, base: &Path, errors: &mut Vec<FileError>) -> Option<SecretSource> {
    let place = at.doc.place(&format!("{}/client_secret", at.pointer));
    let bad = "expected {env: NAME} or {file: PATH}";
    let reference = match v {
        Value::Null => return None,
        Value::String(s) => SecretRef::Value(SecretString::new(s)),
        Value::Object(o) if o.len() == 1 => match o.iter().next() {
            Some((k, Value::String(name))) if k == "env" && !name.is_empty() => SecretRef::Env(name.clone()),
            Some((k, Value::String(path))) if k == "file" && !path.is_empty() => SecretRef::File(base.join(path)),
            _ => {
                errors.push(at.error("client_secret", bad));
                return None;
            }
        },
        _ => {
            errors.push(at.error("client_secret", bad));
            return None;
        }
    };
    Some(SecretSource { reference, place })
}

/// Duplicate names within one list are refused at the second one.
fn unique_names<'a>(names: impl Iterator<Item = (&'a str, At<'a>)>, what: &str, errors: &mut Vec<FileError>) {
    let mut seen = BTreeSet::new();
    for (name, at) in names {
        if !seen.insert(name.to_owned()) {
            errors.push(at.error("name", format!("another {what} is named '{name}'")));
        }
    }
}

fn auth_server(
    mut body: Map<String, Value>,
    at: &At<'_>,
    base: &Path,
    errors: &mut Vec<FileError>,
) -> Option<AuthServerSpec> {
    let scopes_raw = list(&mut body, "scopes", at, errors);
    let claims_raw = list(&mut body, "claims", at, errors);
    let clients_raw = list(&mut body, "clients", at, errors);
    let server = NewAuthServer::from_body(&body).map_err(|p| at.params(p, errors)).ok();

    let mut scopes = Vec::new();
    for (i, body) in scopes_raw.into_iter().enumerate() {
        let at = at.child("scopes", i);
        match NewScope::from_body(&body) {
            Ok(s) => scopes.push((
                ScopeSpec {
                    name: s.name,
                    description: s.description,
                    default: s.default,
                    include_in_metadata: s.include_in_metadata,
                    enabled: s.enabled,
                },
                i,
            )),
            Err(p) => at.params(p, errors),
        }
    }
    unique_names(scopes.iter().map(|(s, i)| (s.name.as_str(), at.child("scopes", *i))), "scope", errors);
    let known: BTreeSet<String> = scopes.iter().map(|(s, _)| s.name.clone()).collect();

    let mut claims = Vec::new();
    for (i, mut body) in claims_raw.into_iter().enumerate() {
        let at = at.child("claims", i);
        let include_in_scopes = scope_names(&mut body, "include_in_scopes", &known, &at, errors);
        match NewClaim::from_body(&body) {
            Ok(c) => claims.push((
                ClaimSpec {
                    name: c.name,
                    value: c.value,
                    include_in_token: c.include_in_token,
                    include_in_all_scopes: c.include_in_all_scopes,
                    include_in_scopes,
                    enabled: c.enabled,
                },
                i,
            )),
            Err(p) => at.params(p, errors),
        }
    }
    unique_names(claims.iter().map(|(c, i)| (c.name.as_str(), at.child("claims", *i))), "claim", errors);

    let mut clients = Vec::new();
    for (i, mut body) in clients_raw.into_iter().enumerate() {
        let at = at.child("clients", i);
        let allow_scopes = scope_names(&mut body, "allow_scopes", &known, &at, errors);
        let secret = body.remove("client_secret").and_then(|v| secret_source(v, &at, base, errors));
        match ClientInput::from_create_body(&body) {
            Ok(c) => clients.push((
                ClientSpec {
                    name: c.name,
                    grant_types: c.grant_types.iter().map(text).collect(),
                    response_types: c.response_types.iter().map(text).collect(),
                    redirect_uris: c.redirect_uris,
                    login_uri: c.login_uri,
                    access_token_duration: c.access_token_duration,
                    id_token_duration: c.id_token_duration,
                    allow_all_scopes: c.allow_all_scopes,
                    allow_scopes,
                    token_endpoint_auth_method: text(&c.token_endpoint_auth_method),
                    labels: labels(c.labels),
                    secret,
                },
                i,
            )),
            Err(p) => at.params(p, errors),
        }
    }
    unique_names(clients.iter().map(|(c, i)| (c.name.as_str(), at.child("clients", *i))), "client", errors);

    let server = server?;
    let mut spec = AuthServerSpec {
        name: server.name,
        description: server.description,
        audience: server.audience,
        signing_algorithm: text(&server.signing_algorithm),
        trusted_origins: server.trusted_origins,
        labels: labels(server.labels),
        scopes: scopes.into_iter().map(|(s, _)| s).collect(),
        claims: claims.into_iter().map(|(c, _)| c).collect(),
        clients: clients.into_iter().map(|(c, _)| c).collect(),
    };
    spec.sort();
    Some(spec)
}

impl AuthServerSpec {
    /// Children in name order, as dumps write them.
    pub fn sort(&mut self) {
        self.scopes.sort_by(|a, b| a.name.cmp(&b.name));
        self.claims.sort_by(|a, b| a.name.cmp(&b.name));
        self.clients.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// `_info.select_labels`, or `--select-tag k=v` flags.
fn selector(v: &Value, at: &At<'_>, errors: &mut Vec<FileError>) -> Selector {
    let mut out = Selector::new();
    match v.as_object() {
        Some(map) => {
            for (k, v) in map {
                match v.as_str() {
                    Some(v) => {
                        out.insert(k.clone(), v.to_owned());
                    }
                    None => errors.push(at.error(k, "expected a string")),
                }
            }
        }
        None => errors.push(at.error("", "expected a mapping of label names to values")),
    }
    out
}

fn merge(doc: &Document, base: &Path, file: &mut IdentityFile, errors: &mut Vec<FileError>) {
    let Some(root) = doc.value.as_object() else { return };
    let top = At { doc, pointer: String::new(), path: String::new() };
    let root_error = |key: &str, message: &str| FileError {
        place: doc.place(&format!("/{key}")),
        message: format!("{key}: {message}"),
    };
    match root.get("_format_version").and_then(Value::as_str) {
        Some(v) if v == FORMAT_VERSION => {}
        Some(v) => errors
            .push(root_error("_format_version", &format!("'{v}' is not supported; expected \"{FORMAT_VERSION}\""))),
        None => errors.push(FileError {
            place: doc.place(""),
            message: format!(
                "_format_version: missing; identity files start with `_format_version: \"{FORMAT_VERSION}\"`"
            ),
        }),
    }
    for (key, value) in root {
        match key.as_str() {
            "_format_version" => {}
            "_info" => {
                let Some(info) = value.as_object() else {
                    errors.push(root_error("_info", "expected a mapping"));
                    continue;
                };
                for (k, v) in info {
                    if k == "select_labels" {
                        let at = At { doc, pointer: "/_info/select_labels".into(), path: "_info.select_labels".into() };
                        let labels = selector(v, &at, errors);
                        if !file.select_labels.is_empty() && file.select_labels != labels {
                            errors.push(at.error("", "differs from _info.select_labels in another file"));
                        }
                        file.select_labels = labels;
                    } else {
                        errors.push(FileError {
                            place: doc.place(&format!("/_info/{k}")),
                            message: format!("_info.{k}: unknown field"),
                        });
                    }
                }
            }
            "auth_servers" => {
                let mut body = root.clone();
                for (i, item) in list(&mut body, "auth_servers", &top, errors).into_iter().enumerate() {
                    let at = At { doc, pointer: format!("/auth_servers/{i}"), path: format!("auth_servers[{i}]") };
                    if let Some(spec) = auth_server(item, &at, base, errors) {
                        if file.auth_servers.iter().any(|s| s.name == spec.name) {
                            errors.push(at.error("name", format!("another auth server is named '{}'", spec.name)));
                        } else {
                            file.auth_servers.push(spec);
                        }
                    }
                }
            }
            other => errors.push(root_error(other, "unknown field (expected _format_version, _info or auth_servers)")),
        }
    }
}

/// Renders (`${{ env "DECK_X" }}`), parses and checks every input; returns the merged file and the environment
/// values the templates used (masked in output).
pub fn load(sources: &[Source], env: &Env) -> Result<(IdentityFile, Vec<String>), Vec<FileError>> {
    let mut file = IdentityFile::default();
    let mut errors = Vec::new();
    let mut used = Vec::new();
    for source in sources {
        let text = match render(source, env) {
            Ok((text, u)) => {
                used.extend(u);
                text
            }
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        let doc = match parse(&source.name, &text) {
            Ok(doc) => doc,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        // `{file: PATH}` is relative to the file that names it (stdin: the working directory).
        let base = if source.name == "stdin" {
            PathBuf::new()
        } else {
            Path::new(&source.name).parent().map(Path::to_path_buf).unwrap_or_default()
        };
        merge(&doc, &base, &mut file, &mut errors);
    }
    if errors.is_empty() { Ok((file, used)) } else { Err(errors) }
}

/// `--select-tag k=v` flags as a selector.
pub fn parse_selector(flags: &[String]) -> Result<Selector, String> {
    let mut out = Selector::new();
    for f in flags {
        let (k, v) = f.split_once('=').ok_or_else(|| format!("--select-tag '{f}': expected LABEL=VALUE"))?;
        let labels = Labels::from_json(
            "--select-tag",
            &Value::Object([(k.to_owned(), Value::String(v.to_owned()))].into_iter().collect()),
        )
        .map_err(|e| {
            format!("--select-tag '{f}': {}", e.iter().map(|p| p.reason.clone()).collect::<Vec<_>>().join("; "))
        })?;
        out.extend(labels.0);
    }
    Ok(out)
}

/// Whether `labels` carry every selected label.
pub fn selected(labels: &BTreeMap<String, String>, selector: &Selector) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn src(text: &str) -> Source {
        Source { name: "dir/id.yaml".into(), text: text.into() }
    }

    const GOOD: &str = r#"_format_version: "1.0"
auth_servers:
- name: A
  audience: http://a
  scopes:
  - name: read
  - name: write
  claims:
  - name: team
    value: blue
    include_in_scopes: [write, read]
  clients:
  - name: app
    grant_types: [client_credentials]
    allow_scopes: [read]
    client_secret: {file: app.secret}
"#;

    #[test]
    fn a_file_parses_with_defaults_and_sorted_names() {
        let (file, _) = load(&[src(GOOD)], &Env::new()).unwrap();
        let a = &file.auth_servers[0];
        assert_eq!(a.signing_algorithm, "RS256");
        assert_eq!(a.claims[0].include_in_scopes, vec!["read", "write"]);
        assert_eq!(a.clients[0].response_types, vec!["token"]);
        assert_eq!(a.clients[0].token_endpoint_auth_method, "client_secret_post");
        let secret = a.clients[0].secret.as_ref().unwrap();
        assert_eq!(secret.reference, SecretRef::File(PathBuf::from("dir/app.secret")));
        assert_eq!(secret.place.line, 16);
    }

    #[test]
    fn problems_name_the_place_and_the_field_path() {
        let bad = GOOD
            .replace("allow_scopes: [read]", "allow_scopes: [read, nope]")
            .replace("[client_credentials]", "[password]");
        let e = load(&[src(&bad)], &Env::new()).unwrap_err();
        let text: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("dir/id.yaml:14:") && t.contains("auth_servers[0].clients[0].grant_types[0]")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("auth_servers[0].clients[0].allow_scopes[1]: no scope named 'nope'")),
            "{text:?}"
        );
        let e = load(&[src("auth_servers: []\n")], &Env::new()).unwrap_err();
        assert!(e[0].message.contains("_format_version"), "{e:?}");
    }

    #[test]
    fn field_pointers() {
        assert_eq!(field_pointer("allow_scopes[3]"), "/allow_scopes/3");
        assert_eq!(field_pointer("labels.team"), "/labels/team");
        assert_eq!(field_pointer("name"), "/name");
    }

    #[test]
    fn selectors() {
        let s = parse_selector(&["env=prod".into()]).unwrap();
        assert!(selected(&[("env".to_owned(), "prod".to_owned()), ("x".into(), "y".into())].into(), &s));
        assert!(!selected(&BTreeMap::new(), &s));
        assert!(parse_selector(&["env".into()]).is_err());
    }
}
