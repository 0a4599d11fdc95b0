//! From a file and what the API holds to ordered steps: per auth server (in the file's order) the server, its
//! scopes, claims and clients created or updated, then its leftover clients, claims and scopes deleted; auth
//! servers the file no longer names go last, children first. Entities match by name; only selected ones
//! (labels) are touched.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::api::LiveServer;
use super::file::{AuthServerSpec, ClientSpec, IdentityFile, SecretSource, Selector, selected};
use crate::plan::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AuthServer,
    Scope,
    Claim,
    Client,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::AuthServer => "auth_server",
            Kind::Scope => "scope",
            Kind::Claim => "claim",
            Kind::Client => "client",
        }
    }
}

/// One change: the entity's file form before and after (without children), and its id when it exists.
#[derive(Debug, Clone)]
pub struct Step {
    pub action: Action,
    pub kind: Kind,
    pub server: String,
    pub name: String,
    pub id: Option<String>,
    pub old: Option<Map<String, Value>>,
    pub new: Option<Map<String, Value>>,
    /// A new client's secret reference.
    pub secret: Option<SecretSource>,
}

impl Step {
    /// decK's console line head: `creating scope read for auth_server A`.
    pub fn head(&self) -> String {
        let verb = self.action.verb();
        match self.kind {
            Kind::AuthServer => format!("{verb} auth_server {}", self.name),
            k => format!("{verb} {} {} for auth_server {}", k.name(), self.name, self.server),
        }
    }
}

fn form<T: Serialize>(v: &T) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(o)) => o,
        _ => Map::new(),
    }
}

fn server_form(s: &AuthServerSpec) -> Map<String, Value> {
    let mut m = form(s);
    for k in ["scopes", "claims", "clients"] {
        m.remove(k);
    }
    m
}

/// Adds the selected labels to what the file names, as decK adds select tags; a file value that contradicts the
/// selection is an error.
pub fn with_selection(file: &mut IdentityFile, selector: &Selector) -> Result<(), String> {
    let mut errors = Vec::new();
    let mut add = |labels: &mut BTreeMap<String, String>, what: String| {
        for (k, v) in selector {
            match labels.get(k) {
                Some(have) if have != v => {
                    errors.push(format!("{what} has label {k}={have}, but the selection is {k}={v}"));
                }
                _ => {
                    labels.insert(k.clone(), v.clone());
                }
            }
        }
    };
    for s in &mut file.auth_servers {
        add(&mut s.labels, format!("auth server '{}'", s.name));
        for c in &mut s.clients {
            add(&mut c.labels, format!("client '{}' of auth server '{}'", c.name, s.name));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors.join("\n")) }
}

fn labels_of(c: &ClientSpec) -> &BTreeMap<String, String> {
    &c.labels
}

/// The steps that take the API to the file. Errors (entities that exist outside the selection) come back all at
/// once, before anything is sent.
pub fn plan(
    file: &IdentityFile,
    live: &[LiveServer],
    selector: &Selector,
    delete: bool,
) -> Result<Vec<Step>, Vec<String>> {
    let mut steps = Vec::new();
    let mut errors = Vec::new();
    let labels_text = || selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let step = |action, kind, server: &str, name: &str, id: Option<&String>, old, new| Step {
        action,
        kind,
        server: server.to_owned(),
        name: name.to_owned(),
        id: id.cloned(),
        old,
        new,
        secret: None,
    };
    for want in &file.auth_servers {
        let have = live.iter().find(|l| l.spec.name == want.name);
        if let Some(h) = have
            && !selected(&h.spec.labels, selector)
        {
            errors.push(format!(
                "auth server '{}' exists without the selected labels ({}); it is not managed by this file",
                want.name,
                labels_text()
            ));
            continue;
        }
        let s = &want.name;
        match have {
            None => steps.push(step(Action::Create, Kind::AuthServer, s, s, None, None, Some(server_form(want)))),
            Some(h) if server_form(&h.spec) != server_form(want) => steps.push(step(
                Action::Update,
                Kind::AuthServer,
                s,
                s,
                Some(&h.id),
                Some(server_form(&h.spec)),
                Some(server_form(want)),
            )),
            Some(_) => {}
        }
        let empty = BTreeMap::new();
        let scope_ids = have.map_or(&empty, |h| &h.scope_ids);
        let claim_ids = have.map_or(&empty, |h| &h.claim_ids);
        let client_ids = have.map_or(&empty, |h| &h.client_ids);
        // Children: create or update what the file names.
        macro_rules! children {
            ($field:ident, $kind:expr, $ids:expr) => {
                for w in &want.$field {
                    let h = have.and_then(|h| h.spec.$field.iter().find(|x| x.name == w.name));
                    match h {
                        None => steps.push(step(Action::Create, $kind, s, &w.name, None, None, Some(form(w)))),
                        Some(h) if form(h) != form(w) => steps.push(step(
                            Action::Update,
                            $kind,
                            s,
                            &w.name,
                            $ids.get(&w.name),
                            Some(form(h)),
                            Some(form(w)),
                        )),
                        Some(_) => {}
                    }
                }
            };
        }
        children!(scopes, Kind::Scope, scope_ids);
        children!(claims, Kind::Claim, claim_ids);
        for w in &want.clients {
            let h = have.and_then(|h| h.spec.clients.iter().find(|x| x.name == w.name));
            match h {
                Some(h) if !selected(labels_of(h), selector) => errors.push(format!(
                    "client '{}' of auth server '{s}' exists without the selected labels ({}); it is not managed by \
                     this file",
                    w.name,
                    labels_text()
                )),
                None => {
                    let mut st = step(Action::Create, Kind::Client, s, &w.name, None, None, Some(form(w)));
                    st.secret = w.secret.clone();
                    steps.push(st);
                }
                Some(h) if form(h) != form(w) => steps.push(step(
                    Action::Update,
                    Kind::Client,
                    s,
                    &w.name,
                    client_ids.get(&w.name),
                    Some(form(h)),
                    Some(form(w)),
                )),
                Some(_) => {}
            }
        }
        // Leftovers of this server: clients first (they name scopes), then claims, then scopes.
        if let (Some(h), true) = (have, delete) {
            for c in &h.spec.clients {
                if selected(&c.labels, selector) && !want.clients.iter().any(|w| w.name == c.name) {
                    steps.push(step(
                        Action::Delete,
                        Kind::Client,
                        s,
                        &c.name,
                        client_ids.get(&c.name),
                        Some(form(c)),
                        None,
                    ));
                }
            }
            for c in &h.spec.claims {
                if !want.claims.iter().any(|w| w.name == c.name) {
                    steps.push(step(
                        Action::Delete,
                        Kind::Claim,
                        s,
                        &c.name,
                        claim_ids.get(&c.name),
                        Some(form(c)),
                        None,
                    ));
                }
            }
            for c in &h.spec.scopes {
                if !want.scopes.iter().any(|w| w.name == c.name) {
                    steps.push(step(
                        Action::Delete,
                        Kind::Scope,
                        s,
                        &c.name,
                        scope_ids.get(&c.name),
                        Some(form(c)),
                        None,
                    ));
                }
            }
        }
    }
    if delete {
        for h in live {
            if !selected(&h.spec.labels, selector) || file.auth_servers.iter().any(|w| w.name == h.spec.name) {
                continue;
            }
            let s = &h.spec.name;
            let outside: Vec<&str> =
                h.spec.clients.iter().filter(|c| !selected(&c.labels, selector)).map(|c| c.name.as_str()).collect();
            if !outside.is_empty() {
                errors.push(format!(
                    "auth server '{s}' would be deleted, but its clients {} are outside the selection ({})",
                    outside.join(", "),
                    labels_text()
                ));
                continue;
            }
            for c in &h.spec.clients {
                steps.push(step(
                    Action::Delete,
                    Kind::Client,
                    s,
                    &c.name,
                    h.client_ids.get(&c.name),
                    Some(form(c)),
                    None,
                ));
            }
            for c in &h.spec.claims {
                steps.push(step(
                    Action::Delete,
                    Kind::Claim,
                    s,
                    &c.name,
                    h.claim_ids.get(&c.name),
                    Some(form(c)),
                    None,
                ));
            }
            for c in &h.spec.scopes {
                steps.push(step(
                    Action::Delete,
                    Kind::Scope,
                    s,
                    &c.name,
                    h.scope_ids.get(&c.name),
                    Some(form(c)),
                    None,
                ));
            }
            steps.push(step(Action::Delete, Kind::AuthServer, s, s, Some(&h.id), Some(server_form(&h.spec)), None));
        }
    }
    if errors.is_empty() { Ok(steps) } else { Err(errors) }
}

/// What the dump of `live` writes: selected auth servers and, in them, selected clients.
pub fn dumped(live: &[LiveServer], selector: &Selector) -> Vec<AuthServerSpec> {
    live.iter()
        .filter(|l| selected(&l.spec.labels, selector))
        .map(|l| {
            let mut spec = l.spec.clone();
            spec.clients.retain(|c| selected(&c.labels, selector));
            spec
        })
        .collect()
}
