//! Identity as code: `gatehouse identity dump|diff|apply|validate` does for Kong Identity's auth servers, scopes,
//! claims and clients what decK does for a gateway. A YAML file names scopes by name ([`file`]), the `/v1` API is
//! read with a personal access token ([`api`]), the two are compared by name into ordered steps ([`plan`]), and
//! the steps are printed as decK prints changes and, for `apply`, sent. Client secrets never appear in a dump or in
//! output, except a generated one, printed once when its client is created.

pub mod api;
pub mod file;
pub mod plan;

use std::collections::BTreeMap;
use std::io::Write;

use reqwest::Method;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::DeckError;
use crate::client::Connection;
use crate::file::{Env, FileError, Source};
use crate::plan::{Action, Masker, Summary, json_diff};
use crate::run::{SyncKind, action_color, paint, print_summary};
use api::{Api, LiveServer};
use file::{AuthServerSpec, FORMAT_VERSION, IdentityFile, Selector, load};
use plan::{Kind, Step, dumped, plan, with_selection};

/// How `diff` and `apply` run.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Only print the steps.
    pub diff: bool,
    /// `--select-tag k=v`: must equal the file's `_info.select_labels` when both are given.
    pub select: Selector,
    /// `--no-delete`: create and update only.
    pub no_delete: bool,
    pub color: bool,
}

fn files_error(errors: Vec<FileError>) -> DeckError {
    DeckError::Files(errors)
}

/// Reads and checks the files; the selection of the file and of the flags must agree.
fn read(sources: &[Source], env: &Env, select: &Selector) -> Result<(IdentityFile, Vec<String>), DeckError> {
    let (mut file, used) = load(sources, env).map_err(files_error)?;
    if !select.is_empty() {
        if !file.select_labels.is_empty() && file.select_labels != *select {
            return Err(DeckError::Other(format!(
                "labels given with --select-tag ({}) differ from the file's _info.select_labels ({})",
                labels_text(select),
                labels_text(&file.select_labels)
            )));
        }
        file.select_labels = select.clone();
    }
    let selector = file.select_labels.clone();
    with_selection(&mut file, &selector).map_err(DeckError::Other)?;
    Ok((file, used))
}

fn labels_text(s: &Selector) -> String {
    s.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// `validate`: the files checked offline (format, every field as the server checks it, scope references).
pub fn validate(sources: &[Source], env: &Env) -> Result<(), DeckError> {
    read(sources, env, &Selector::new()).map(|_| ())
}

#[derive(Serialize)]
struct Info<'a> {
    select_labels: &'a Selector,
}

#[derive(Serialize)]
struct DumpFile<'a> {
    _format_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    _info: Option<Info<'a>>,
    auth_servers: &'a [AuthServerSpec],
}

/// The file text for what the API holds (selected entities only): names in order, no ids, no secrets.
pub fn render_dump(live: &[LiveServer], select: &Selector, json: bool) -> Result<String, DeckError> {
    let servers = dumped(live, select);
    let doc = DumpFile {
        _format_version: FORMAT_VERSION,
        _info: (!select.is_empty()).then_some(Info { select_labels: select }),
        auth_servers: &servers,
    };
    let text = if json {
        serde_json::to_string_pretty(&doc).map(|s| s + "\n").map_err(|e| e.to_string())
    } else {
        serde_saphyr::to_string(&doc).map_err(|e| e.to_string())
    };
    text.map_err(|e| DeckError::Other(format!("writing the dump: {e}")))
}

/// `dump`.
pub async fn dump_text(conn: &Connection, select: &Selector, json: bool) -> Result<String, DeckError> {
    let api = Api::new(conn)?;
    render_dump(&api.current().await?, select, json)
}

fn console_line(step: &Step, masker: &Masker) -> String {
    let head = step.head();
    match (step.action, &step.old, &step.new) {
        (Action::Update, Some(old), Some(new)) => masker.mask(&format!("{head} {}", json_diff(old, new))),
        _ => masker.mask(&head),
    }
}

/// `diff` and `apply`. Nothing is sent until every file is valid, every entity it names is within the selection
/// and every secret a new client needs could be read.
pub async fn sync(
    sources: &[Source],
    env: &Env,
    conn: &Connection,
    opts: &SyncOptions,
    out: &mut dyn Write,
) -> Result<Summary, DeckError> {
    let (file, used) = read(sources, env, &opts.select)?;
    let api = Api::new(conn)?;
    let live = api.current().await?;
    let steps = plan(&file, &live, &file.select_labels, !opts.no_delete).map_err(|e| DeckError::Other(e.join("\n")))?;
    let masker = Masker::new(&used, &[]);
    let mut summary = Summary::default();
    let print = |out: &mut dyn Write, step: &Step| {
        let _ = writeln!(out, "{}", paint(opts.color, action_color(step.action), &console_line(step, &masker)));
    };
    if opts.diff {
        for s in &steps {
            print(out, s);
            summary.count(s.action);
        }
        print_summary(out, &summary, SyncKind::Sync, opts.color);
        let _ = out.flush();
        return Ok(summary);
    }
    // Every secret a new client takes is read first, so a missing one stops the run before any change.
    let env_var = |name: &str| std::env::var(name).ok();
    let mut secrets = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        if let Some(source) = &s.secret {
            match source.resolve(&env_var) {
                Ok(secret) => {
                    secrets.insert(i, secret);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if !errors.is_empty() {
        return Err(files_error(errors));
    }
    let mut ids = Ids::new(&live);
    let mut failure = None;
    for (i, step) in steps.iter().enumerate() {
        match send(&api, step, &mut ids, secrets.get(&i)).await {
            Ok(created) => {
                print(out, step);
                if let Some((id, secret)) = created {
                    let _ = writeln!(out, "  client_id: {id}");
                    if let Some(secret) = secret {
                        // The one time this value is shown: the server keeps only its hash.
                        let _ = writeln!(out, "  client_secret: {secret}  (generated; shown only this once)");
                    }
                }
                summary.count(step.action);
            }
            Err(e) => {
                let verb = match step.action {
                    Action::Create => "create",
                    Action::Update => "update",
                    Action::Delete => "delete",
                };
                let what = step.head().split_once(' ').map(|(_, rest)| rest.to_owned()).unwrap_or_default();
                failure = Some(masker.mask(&format!("failed to {verb} {what}: {e}")));
                // decK's wording for what was not attempted.
                for rest in &steps[i + 1..] {
                    let noun = match rest.action {
                        Action::Create => "creation",
                        Action::Update => "update",
                        Action::Delete => "deletion",
                    };
                    let what = rest.head().split_once(' ').map(|(_, r)| r.to_owned()).unwrap_or_default();
                    let _ = writeln!(out, "{}", masker.mask(&format!("Dropped {noun} {what}")));
                }
                break;
            }
        }
    }
    print_summary(out, &summary, SyncKind::Sync, opts.color);
    let _ = out.flush();
    match failure {
        None => Ok(summary),
        Some(f) => Err(DeckError::Other(f)),
    }
}

/// Ids by name, filled as entities are created.
struct Ids {
    servers: BTreeMap<String, String>,
    scopes: BTreeMap<(String, String), String>,
}

impl Ids {
    fn new(live: &[LiveServer]) -> Ids {
        let mut ids = Ids { servers: BTreeMap::new(), scopes: BTreeMap::new() };
        for l in live {
            ids.servers.insert(l.spec.name.clone(), l.id.clone());
            for (name, id) in &l.scope_ids {
                ids.scopes.insert((l.spec.name.clone(), name.clone()), id.clone());
            }
        }
        ids
    }

    fn server(&self, name: &str) -> Result<&str, DeckError> {
        self.servers
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| DeckError::Other(format!("auth server '{name}' has no id")))
    }

    /// A body's scope names (`field`) as the ids the API takes.
    fn scope_ids(&self, server: &str, body: &mut Map<String, Value>, field: &str) -> Result<(), DeckError> {
        let Some(Value::Array(names)) = body.get(field) else { return Ok(()) };
        let mut out = Vec::new();
        for n in names {
            let name = n.as_str().unwrap_or_default();
            let id = self
                .scopes
                .get(&(server.to_owned(), name.to_owned()))
                .ok_or_else(|| DeckError::Other(format!("scope '{name}' of auth server '{server}' has no id")))?;
            out.push(Value::String(id.clone()));
        }
        body.insert(field.to_owned(), Value::Array(out));
        Ok(())
    }
}

/// A PATCH body: the new form, with labels and `login_uri` that are gone sent as null (PATCH keeps what it does
/// not name).
fn patch_body(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut body = new.clone();
    if let (Some(Value::Object(old_labels)), Some(Value::Object(new_labels))) =
        (old.get("labels"), body.get_mut("labels"))
    {
        for k in old_labels.keys() {
            if !new_labels.contains_key(k) {
                new_labels.insert(k.clone(), Value::Null);
            }
        }
    }
    if old.contains_key("login_uri") && !body.contains_key("login_uri") {
        body.insert("login_uri".into(), Value::Null);
    }
    body
}

fn id_of(v: &Value) -> String {
    v.get("id").and_then(Value::as_str).unwrap_or_default().to_owned()
}

type Created = Option<(String, Option<String>)>;

/// Sends one step; for a new client returns its id and, when the server generated it, its secret.
async fn send(
    api: &Api,
    step: &Step,
    ids: &mut Ids,
    secret: Option<&gatehouse_model::SecretString>,
) -> Result<Created, DeckError> {
    let id = || step.id.clone().ok_or_else(|| DeckError::Other(format!("{} has no id", step.head())));
    let new = step.new.clone().unwrap_or_default();
    let old = step.old.clone().unwrap_or_default();
    let collection = |kind: Kind| -> Result<String, DeckError> {
        let sid = ids.server(&step.server)?;
        Ok(match kind {
            Kind::AuthServer => "/auth-servers".to_owned(),
            Kind::Scope => format!("/auth-servers/{sid}/scopes"),
            Kind::Claim => format!("/auth-servers/{sid}/claims"),
            Kind::Client => format!("/auth-servers/{sid}/clients"),
        })
    };
    let body = |ids: &Ids, mut b: Map<String, Value>| -> Result<Value, DeckError> {
        match step.kind {
            Kind::Claim => ids.scope_ids(&step.server, &mut b, "include_in_scopes")?,
            Kind::Client => ids.scope_ids(&step.server, &mut b, "allow_scopes")?,
            _ => {}
        }
        Ok(Value::Object(b))
    };
    match (step.kind, step.action) {
        (Kind::AuthServer, Action::Create) => {
            let created = api.send(Method::POST, "/auth-servers", Some(&body(ids, new)?)).await?;
            ids.servers.insert(step.name.clone(), id_of(&created));
            Ok(None)
        }
        (kind, Action::Create) => {
            let path = collection(kind)?;
            let created = api.send(Method::POST, &path, Some(&body(ids, new)?)).await?;
            let cid = id_of(&created);
            match kind {
                Kind::Scope => {
                    ids.scopes.insert((step.server.clone(), step.name.clone()), cid);
                    Ok(None)
                }
                Kind::Client => match secret {
                    // The client's secret from the file replaces the one the server generated, which is dropped
                    // unseen.
                    Some(s) => {
                        api.send(Method::PATCH, &format!("{path}/{cid}"), Some(&json!({"client_secret": s.expose()})))
                            .await?;
                        Ok(Some((cid, None)))
                    }
                    None => {
                        let generated = created.get("client_secret").and_then(Value::as_str).map(str::to_owned);
                        Ok(Some((cid, generated)))
                    }
                },
                _ => Ok(None),
            }
        }
        (kind, Action::Update) => {
            let path = if kind == Kind::AuthServer {
                format!("/auth-servers/{}", id()?)
            } else {
                format!("{}/{}", collection(kind)?, id()?)
            };
            api.send(Method::PATCH, &path, Some(&body(ids, patch_body(&old, &new))?)).await?;
            Ok(None)
        }
        (kind, Action::Delete) => {
            let path = if kind == Kind::AuthServer {
                format!("/auth-servers/{}", id()?)
            } else {
                format!("{}/{}", collection(kind)?, id()?)
            };
            api.send(Method::DELETE, &path, None).await?;
            Ok(None)
        }
    }
}
