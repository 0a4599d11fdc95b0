//! The target state: the file's entities flattened (nested routes, plugins and a consumer's `acls` take their
//! parent), name references resolved, matched with what the server holds (by id, then name, username, plugin
//! scope or an acl's consumer and group), given ids, and validated with Kong's rules from `model`. Everything is
//! checked before anything is sent.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use gatehouse_model::gateway::{EntityKind, is_uuid, validate_entity};

use crate::file::{Content, FileError, Place};

/// What the server holds, per kind, as its API returns entities.
#[derive(Debug, Clone, Default)]
pub struct Current {
    pub entities: HashMap<EntityKind, Vec<Map<String, Value>>>,
}

impl Current {
    pub fn of(&self, kind: EntityKind) -> &[Map<String, Value>] {
        self.entities.get(&kind).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Whether entities missing from the file are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `apply`: create and update only.
    Apply,
    /// `sync`, `diff`, `reset`: also delete what the file does not have (among the selected tags).
    Sync,
}

/// An entity of the target state.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub kind: EntityKind,
    pub id: String,
    /// Validated, defaults filled, references as `{"id": …}`, without timestamps.
    pub data: Map<String, Value>,
    /// How decK names it on the console (`example-service`, `oauth2-introspection (global)`).
    pub console: String,
    /// The server's entity it replaces, if any.
    pub current: Option<Map<String, Value>>,
}

/// The target state, in creation order (consumers, services, routes, plugins), and the current entities it does
/// not keep (deleted by sync) in deletion order.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub entities: Vec<Resolved>,
    pub leftovers: Vec<Leftover>,
}

/// A current entity the target state does not keep.
#[derive(Debug, Clone)]
pub struct Leftover {
    pub kind: EntityKind,
    pub console: String,
    pub data: Map<String, Value>,
}

/// Creation order: what others reference comes first. Deletion runs in reverse.
pub const ORDER: [EntityKind; 13] = [
    EntityKind::Certificate,
    EntityKind::Sni,
    EntityKind::CaCertificate,
    EntityKind::Consumer,
    EntityKind::Acl,
    EntityKind::KeyAuth,
    EntityKind::Jwt,
    EntityKind::BasicAuth,
    EntityKind::Upstream,
    EntityKind::Target,
    EntityKind::Service,
    EntityKind::Route,
    EntityKind::Plugin,
];

/// The kind as decK prints it (`creating acl-group admins for consumer alice`).
pub fn kind_name(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Acl => "acl-group",
        EntityKind::KeyAuth => "key-auth",
        EntityKind::Jwt => "jwt-auth",
        EntityKind::BasicAuth => "basic-auth",
        other => other.singular(),
    }
}

/// Removes what the server derives from other fields and a file never holds: a certificate's `snis` (its `snis`
/// entities, handled on their own) and a CA certificate's `cert_digest`.
pub fn drop_derived(kind: EntityKind, e: &mut Map<String, Value>) {
    match kind {
        EntityKind::Certificate => {
            e.remove("snis");
        }
        EntityKind::CaCertificate => {
            e.remove("cert_digest");
        }
        _ => {}
    }
}

pub fn id_of(e: &Map<String, Value>) -> &str {
    e.get("id").and_then(Value::as_str).unwrap_or("")
}

fn text<'a>(e: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    e.get(field).and_then(Value::as_str)
}

fn reference(e: &Map<String, Value>, field: &str) -> Option<String> {
    e.get(field).and_then(|r| r.get("id")).and_then(Value::as_str).map(str::to_owned)
}

pub fn has_tags(e: &Map<String, Value>, tags: &[String]) -> bool {
    tags.iter().all(|t| e.get("tags").and_then(Value::as_array).is_some_and(|have| have.iter().any(|h| h == t)))
}

/// A plugin's scope, as decK matches plugins: name, service, route, consumer.
fn plugin_key(e: &Map<String, Value>) -> String {
    format!(
        "{}|{}|{}|{}",
        text(e, "name").unwrap_or(""),
        reference(e, "service").unwrap_or_default(),
        reference(e, "route").unwrap_or_default(),
        reference(e, "consumer").unwrap_or_default()
    )
}

/// The key an entity is matched by besides its id.
fn match_key(kind: EntityKind, e: &Map<String, Value>) -> Option<String> {
    match kind {
        EntityKind::Plugin => Some(plugin_key(e)),
        // Kong's cache key: a group is unique per consumer.
        EntityKind::Acl => Some(format!("{}|{}", reference(e, "consumer")?, text(e, "group")?)),
        // Nothing else names a certificate: decK matches one without an id by its PEM.
        EntityKind::Certificate | EntityKind::CaCertificate => text(e, "cert").map(|c| c.trim().to_owned()),
        // Kong's cache key: a `host:port` is unique per upstream (the port Kong adds when a file leaves it out).
        EntityKind::Target => {
            let target = text(e, "target")?;
            let formatted =
                gatehouse_model::gateway::upstreams::format_target(target).unwrap_or_else(|| target.to_owned());
            Some(format!("{}|{formatted}", reference(e, "upstream")?))
        }
        other => text(e, other.endpoint_key()).map(str::to_owned),
    }
}

/// Names of entities by id, for console lines.
#[derive(Debug, Default)]
pub struct Names(HashMap<String, String>);

impl Names {
    pub fn add(&mut self, kind: EntityKind, e: &Map<String, Value>) {
        let id = id_of(e).to_owned();
        let name = match kind {
            EntityKind::Consumer => text(e, "username"),
            EntityKind::Service | EntityKind::Route | EntityKind::Sni | EntityKind::Upstream => text(e, "name"),
            EntityKind::Target => text(e, "target"),
            _ => None,
        };
        self.0.insert(id.clone(), name.map_or(id, str::to_owned));
    }

    fn friendly(&self, id: &str) -> String {
        self.0.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    /// decK's console name of an entity.
    pub fn console(&self, kind: EntityKind, e: &Map<String, Value>) -> String {
        if kind == EntityKind::Acl {
            let consumer = reference(e, "consumer").map(|id| self.friendly(&id)).unwrap_or_default();
            return format!("{} for consumer {consumer}", text(e, "group").unwrap_or(""));
        }
        if matches!(kind, EntityKind::Jwt | EntityKind::BasicAuth) {
            // A jwt credential's key (a token's `iss`) and a basic-auth username are identifiers, not secrets.
            let consumer = reference(e, "consumer").map(|id| self.friendly(&id)).unwrap_or_default();
            return format!("{} for consumer {consumer}", text(e, kind.endpoint_key()).unwrap_or_else(|| id_of(e)));
        }
        if kind == EntityKind::KeyAuth {
            // The key is a secret: the console names the credential by id, as decK does.
            let consumer = reference(e, "consumer").map(|id| self.friendly(&id)).unwrap_or_default();
            return format!("{} for consumer {consumer}", id_of(e));
        }
        if kind != EntityKind::Plugin {
            return self.friendly(id_of(e));
        }
        let mut s = format!("{} ", text(e, "name").unwrap_or(""));
        let scopes: Vec<String> = ["service", "route", "consumer"]
            .iter()
            .filter_map(|f| reference(e, f).map(|id| format!("{f} {}", self.friendly(&id))))
            .collect();
        if scopes.is_empty() {
            s.push_str("(global)");
        } else {
            s.push_str("for ");
            s.push_str(&scopes.join(" and "));
        }
        s
    }
}

/// A reference from the file: to an entity of the file (by index), or a name or id to look up.
#[derive(Debug, Clone)]
enum Ref {
    Parent(usize),
    Key(String),
}

#[derive(Debug)]
struct Desired {
    kind: EntityKind,
    doc: usize,
    pointer: String,
    body: Map<String, Value>,
    refs: Vec<(&'static str, Ref)>,
}

/// Turns `service: {name: x}`, `service: {id: …}` or `service: x` into a reference.
fn parse_ref(v: &Value, field: &str) -> Option<Ref> {
    match v {
        Value::String(s) => Some(Ref::Key(s.clone())),
        Value::Object(o) => {
            let key = o.get("id").or_else(|| o.get("name")).or_else(|| o.get("username"));
            key.and_then(Value::as_str).map(|s| Ref::Key(s.to_owned())).filter(|_| !field.is_empty())
        }
        _ => None,
    }
}

struct Flattener<'a> {
    content: &'a Content,
    out: Vec<Desired>,
    errors: Vec<FileError>,
}

impl Flattener<'_> {
    fn error(&mut self, doc: usize, pointer: &str, message: String) {
        self.errors.push(FileError { place: self.content.place(doc, pointer), message });
    }

    /// Removes a nested list (`routes`, `plugins`) from `body`, returning its mappings with their pointers.
    fn take_nested(
        &mut self,
        doc: usize,
        pointer: &str,
        body: &mut Map<String, Value>,
        key: &str,
    ) -> Vec<(String, Map<String, Value>)> {
        match body.remove(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    let p = format!("{pointer}/{key}/{i}");
                    match item {
                        Value::Object(m) => out.push((p, m)),
                        _ => self.error(doc, &p, format!("{key}[{i}]: expected a mapping")),
                    }
                }
                out
            }
            Some(_) => {
                self.error(doc, &format!("{pointer}/{key}"), format!("{key}: expected a list"));
                Vec::new()
            }
        }
    }

    fn push(
        &mut self,
        kind: EntityKind,
        doc: usize,
        pointer: String,
        mut body: Map<String, Value>,
        refs: Vec<(&'static str, Ref)>,
    ) -> usize {
        self.fill_defaults(kind, &mut body);
        self.out.push(Desired { kind, doc, pointer, body, refs });
        self.out.len() - 1
    }

    /// `_info.defaults`: the file's values for fields an entity leaves out (or sets to null), as decK fills them
    /// before Kong's own defaults. A service given by `url` takes no default for what the URL says.
    fn fill_defaults(&self, kind: EntityKind, body: &mut Map<String, Value>) {
        let key = match kind {
            EntityKind::Service => "service",
            EntityKind::Route => "route",
            EntityKind::Upstream => "upstream",
            EntityKind::Target => "target",
            _ => return,
        };
        let Some(defaults) = self.content.defaults.get(key) else { return };
        let by_url = kind == EntityKind::Service && body.get("url").is_some_and(|u| !u.is_null());
        for (field, value) in defaults {
            if by_url && matches!(field.as_str(), "protocol" | "host" | "port" | "path") {
                continue;
            }
            if body.get(field).is_none_or(Value::is_null) && !value.is_null() {
                body.insert(field.clone(), value.clone());
            }
        }
    }

    /// decK's `_config`: the named `_plugin_configs` entry fills what the plugin's own `config` leaves out, at
    /// every depth of nested records (the plugin's values win).
    fn shared_config(&mut self, doc: usize, pointer: &str, plugin: &mut Map<String, Value>) {
        let Some(source) = plugin.remove("_config") else { return };
        let Some(name) = source.as_str() else {
            self.error(
                doc,
                &format!("{pointer}/_config"),
                "_config: expected the name of a _plugin_configs entry".into(),
            );
            return;
        };
        let Some(shared) = self.content.plugin_configs.get(name) else {
            self.error(doc, &format!("{pointer}/_config"), format!("_plugin_config {name:?} not found"));
            return;
        };
        let shared = shared.config.clone();
        match plugin.get_mut("config") {
            Some(Value::Object(config)) => merge_missing(config, &shared),
            None | Some(Value::Null) => {
                plugin.insert("config".into(), Value::Object(shared));
            }
            Some(_) => {}
        }
    }

    /// Top-level references (`service: x`) of an entity, removed from its body.
    fn top_refs(
        &mut self,
        doc: usize,
        pointer: &str,
        body: &mut Map<String, Value>,
        fields: &[&'static str],
    ) -> Vec<(&'static str, Ref)> {
        let mut refs = Vec::new();
        for field in fields {
            match body.remove(*field) {
                None | Some(Value::Null) => {}
                Some(v) => match parse_ref(&v, field) {
                    Some(r) => refs.push((*field, r)),
                    None => self.error(
                        doc,
                        &format!("{pointer}/{field}"),
                        format!("{field}: expected a name, an id, or a mapping with 'name' or 'id'"),
                    ),
                },
            }
        }
        refs
    }

    fn plugins(
        &mut self,
        doc: usize,
        nested: Vec<(String, Map<String, Value>)>,
        parent: Option<(&'static str, usize)>,
    ) {
        for (p, mut plugin) in nested {
            self.shared_config(doc, &p, &mut plugin);
            let mut refs = Vec::new();
            if let Some((field, index)) = parent {
                // A nested plugin belongs to its parent; other scopes may still be named (route and consumer).
                plugin.remove(field);
                refs.push((field, Ref::Parent(index)));
            }
            let others: Vec<&'static str> = ["service", "route", "consumer"]
                .into_iter()
                .filter(|f| parent.is_none_or(|(pf, _)| pf != *f))
                .collect();
            refs.extend(self.top_refs(doc, &p, &mut plugin, &others));
            self.push(EntityKind::Plugin, doc, p, plugin, refs);
        }
    }

    fn route(&mut self, doc: usize, pointer: String, mut body: Map<String, Value>, service: Option<Ref>) {
        let plugins = self.take_nested(doc, &pointer, &mut body, "plugins");
        let refs = match service {
            Some(r) => {
                body.remove("service");
                vec![("service", r)]
            }
            None => self.top_refs(doc, &pointer, &mut body, &["service"]),
        };
        let index = self.push(EntityKind::Route, doc, pointer, body, refs);
        self.plugins(doc, plugins, Some(("route", index)));
    }

    fn run(mut self) -> (Vec<Desired>, Vec<FileError>) {
        let content = self.content;
        for item in content.items("services") {
            let mut body = item.body.clone();
            let routes = self.take_nested(item.doc, &item.pointer, &mut body, "routes");
            let plugins = self.take_nested(item.doc, &item.pointer, &mut body, "plugins");
            let index = self.push(EntityKind::Service, item.doc, item.pointer.clone(), body, Vec::new());
            for (p, route) in routes {
                self.route(item.doc, p, route, Some(Ref::Parent(index)));
            }
            self.plugins(item.doc, plugins, Some(("service", index)));
        }
        for item in content.items("routes") {
            self.route(item.doc, item.pointer.clone(), item.body.clone(), None);
        }
        for item in content.items("consumers") {
            let mut body = item.body.clone();
            let plugins = self.take_nested(item.doc, &item.pointer, &mut body, "plugins");
            let acls = self.take_nested(item.doc, &item.pointer, &mut body, "acls");
            let keys = self.take_nested(item.doc, &item.pointer, &mut body, "keyauth_credentials");
            let jwts = self.take_nested(item.doc, &item.pointer, &mut body, "jwt_secrets");
            let basics = self.take_nested(item.doc, &item.pointer, &mut body, "basicauth_credentials");
            for &key in crate::file::UNSUPPORTED_CREDENTIALS {
                if body.remove(key).is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
                    self.error(
                        item.doc,
                        &format!("{}/{key}", item.pointer),
                        format!("{key}: not supported by Gatehouse"),
                    );
                }
            }
            let index = self.push(EntityKind::Consumer, item.doc, item.pointer.clone(), body, Vec::new());
            self.plugins(item.doc, plugins, Some(("consumer", index)));
            for (p, mut acl) in acls {
                // decK writes a consumer's acls under it, without the consumer.
                acl.remove("consumer");
                self.push(EntityKind::Acl, item.doc, p, acl, vec![("consumer", Ref::Parent(index))]);
            }
            for (kind, credentials) in
                [(EntityKind::KeyAuth, keys), (EntityKind::Jwt, jwts), (EntityKind::BasicAuth, basics)]
            {
                for (p, mut credential) in credentials {
                    credential.remove("consumer");
                    self.push(kind, item.doc, p, credential, vec![("consumer", Ref::Parent(index))]);
                }
            }
        }
        // Kong's DB-less form: credentials at the top level, naming their consumer.
        for (key, kind) in [
            ("acls", EntityKind::Acl),
            ("keyauth_credentials", EntityKind::KeyAuth),
            ("jwt_secrets", EntityKind::Jwt),
            ("basicauth_credentials", EntityKind::BasicAuth),
        ] {
            for item in content.items(key) {
                let mut body = item.body.clone();
                let refs = self.top_refs(item.doc, &item.pointer, &mut body, &["consumer"]);
                if refs.is_empty() {
                    self.error(item.doc, &item.pointer, format!("{key}: a top-level credential needs its consumer"));
                    continue;
                }
                self.push(kind, item.doc, item.pointer.clone(), body, refs);
            }
        }
        for item in content.items("plugins") {
            self.plugins(item.doc, vec![(item.pointer.clone(), item.body.clone())], None);
        }
        for item in content.items("certificates") {
            let mut body = item.body.clone();
            let snis = self.take_nested(item.doc, &item.pointer, &mut body, "snis");
            let index = self.push(EntityKind::Certificate, item.doc, item.pointer.clone(), body, Vec::new());
            for (p, mut sni) in snis {
                // decK writes a certificate's SNIs under it, without the certificate.
                sni.remove("certificate");
                self.push(EntityKind::Sni, item.doc, p, sni, vec![("certificate", Ref::Parent(index))]);
            }
        }
        for item in content.items("upstreams") {
            let mut body = item.body.clone();
            let targets = self.take_nested(item.doc, &item.pointer, &mut body, "targets");
            let index = self.push(EntityKind::Upstream, item.doc, item.pointer.clone(), body, Vec::new());
            for (p, mut target) in targets {
                // decK writes an upstream's targets under it, without the upstream.
                target.remove("upstream");
                self.push(EntityKind::Target, item.doc, p, target, vec![("upstream", Ref::Parent(index))]);
            }
        }
        for item in content.items("ca_certificates") {
            self.push(EntityKind::CaCertificate, item.doc, item.pointer.clone(), item.body.clone(), Vec::new());
        }
        (self.out, self.errors)
    }
}

/// A basic-auth credential's password as Kong stores it: a `_transform: true` file's plaintext hashed with its
/// consumer's id (so it compares with what the server holds, and the plaintext is never sent), a `_transform:
/// false` file's hash taken as it is. Offline (`file validate`) the consumer has no id yet: nothing to hash with.
fn stored_password(data: &mut Map<String, Value>, transform: bool) -> Result<(), String> {
    use gatehouse_model::gateway::plugins::basic_auth::{is_kong_hash, kong_hash};
    let password = text(data, "password").unwrap_or_default().to_owned();
    if !transform {
        return if is_kong_hash(&password) {
            Ok(())
        } else {
            Err("with _transform: false, expected Kong's hashed form (40 lower-case hexadecimal digits)".into())
        };
    }
    if let Some(consumer) = reference(data, "consumer") {
        data.insert("password".into(), Value::String(kong_hash(&consumer, &password)));
    }
    Ok(())
}

/// Fills `dst` with what `src` has and it lacks, recursing into records both have (decK's `mergePluginConfig`).
fn merge_missing(dst: &mut Map<String, Value>, src: &Map<String, Value>) {
    for (k, v) in src {
        match (dst.get_mut(k), v) {
            (None, _) => {
                dst.insert(k.clone(), v.clone());
            }
            (Some(Value::Object(d)), Value::Object(s)) => merge_missing(d, s),
            _ => {}
        }
    }
}

/// Where a violation's dotted, 1-based path (`paths.1`) points in the file.
fn violation_pointer(base: &str, path: &str) -> String {
    if path.starts_with('@') {
        return base.to_owned();
    }
    let mut p = base.to_owned();
    for segment in path.split('.') {
        p.push('/');
        match segment.parse::<usize>() {
            Ok(n) if n > 0 => p.push_str(&(n - 1).to_string()),
            _ => p.push_str(segment),
        }
    }
    p
}

/// Builds the target state. `current` is `None` offline (`file validate`): references then resolve within the
/// file only, and nothing is matched.
pub fn resolve(content: &Content, current: Option<&Current>, mode: Mode) -> Result<Target, Vec<FileError>> {
    let (desired, mut errors) = Flattener { content, out: Vec::new(), errors: Vec::new() }.run();
    let empty = Current::default();
    let current = current.unwrap_or(&empty);
    let select = &content.select_tags;
    let mut names = Names::default();
    for kind in ORDER {
        for e in current.of(kind) {
            names.add(kind, e);
        }
    }
    // Ids given to the file's entities, by index.
    let mut ids: Vec<Option<String>> = vec![None; desired.len()];
    let mut resolved: Vec<Option<Resolved>> = vec![None; desired.len()];
    let mut taken: HashSet<String> = HashSet::new();
    let mut seen: HashMap<(EntityKind, String), Place> = HashMap::new();

    for kind in ORDER {
        let managed: Vec<&Map<String, Value>> = current.of(kind).iter().filter(|e| has_tags(e, select)).collect();
        for (index, d) in desired.iter().enumerate().filter(|(_, d)| d.kind == kind) {
            let place = content.place(d.doc, &d.pointer);
            let mut body = d.body.clone();
            for auto in ["created_at", "updated_at"] {
                body.remove(auto);
            }
            let given_id = match body.remove("id") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if is_uuid(&s) => Some(s),
                Some(_) => {
                    errors.push(FileError {
                        place: content.place(d.doc, &format!("{}/id", d.pointer)),
                        message: "id: expected a valid UUID".into(),
                    });
                    continue;
                }
            };
            // References: the file's entities first, then the server's that this run keeps.
            let mut broken = false;
            for (field, r) in &d.refs {
                let target_kind = match *field {
                    "service" => EntityKind::Service,
                    "route" => EntityKind::Route,
                    "certificate" => EntityKind::Certificate,
                    "upstream" => EntityKind::Upstream,
                    _ => EntityKind::Consumer,
                };
                let id = match r {
                    Ref::Parent(i) => ids.get(*i).cloned().flatten(),
                    Ref::Key(key) => lookup(&desired, &ids, target_kind, key).or_else(|| {
                        current
                            .of(target_kind)
                            .iter()
                            .filter(|e| mode == Mode::Apply || !has_tags(e, select))
                            .find(|e| id_of(e) == key || text(e, target_kind.endpoint_key()) == Some(key))
                            .map(|e| id_of(e).to_owned())
                    }),
                };
                match id {
                    Some(id) => {
                        body.insert((*field).to_owned(), json!({ "id": id }));
                    }
                    // The parent failed on its own, and said so.
                    None if matches!(r, Ref::Parent(_)) => broken = true,
                    None => {
                        broken = true;
                        let what = match r {
                            Ref::Key(k) => k.as_str(),
                            Ref::Parent(_) => "",
                        };
                        errors.push(FileError {
                            place: content.place(d.doc, &format!("{}/{field}", d.pointer)),
                            message: format!(
                                "{} refers to {field} '{what}', which is neither in the file nor kept on the server",
                                kind_name(kind)
                            ),
                        });
                    }
                }
            }
            if broken {
                continue;
            }
            if !select.is_empty() {
                let mut tags: Vec<Value> = body.get("tags").and_then(Value::as_array).cloned().unwrap_or_default();
                for t in select {
                    if !tags.iter().any(|have| have == t) {
                        tags.push(json!(t));
                    }
                }
                body.insert("tags".into(), Value::Array(tags));
            }
            let data = match validate_entity(kind, &body) {
                Ok(mut data) => {
                    drop_derived(kind, &mut data);
                    if kind == EntityKind::BasicAuth
                        && let Err(message) = stored_password(&mut data, content.transform != Some(false))
                    {
                        errors.push(FileError {
                            place: content.place(d.doc, &format!("{}/password", d.pointer)),
                            message: format!("{} password: {message}", kind_name(kind)),
                        });
                        continue;
                    }
                    data
                }
                Err(violations) => {
                    for v in violations {
                        errors.push(FileError {
                            place: content.place(d.doc, &violation_pointer(&d.pointer, &v.path)),
                            message: format!("{} {}: {}", kind_name(kind), v.path, v.message),
                        });
                    }
                    continue;
                }
            };
            // Match: by id, by name (username, plugin scope), then a rename that keeps another unique key.
            let key = match_key(kind, &data);
            let free = |e: &&Map<String, Value>| !taken.contains(id_of(e));
            let matched = match &given_id {
                Some(id) => current.of(kind).iter().find(|e| id_of(e) == id),
                None => {
                    managed.iter().copied().filter(free).find(|e| key.is_some() && match_key(kind, e) == key).or_else(
                        || {
                            let other = match kind {
                                EntityKind::Consumer => "custom_id",
                                EntityKind::Plugin => "instance_name",
                                _ => return None,
                            };
                            let value = text(&data, other)?;
                            managed
                                .iter()
                                .copied()
                                .filter(free)
                                .find(|e| text(e, other) == Some(value) && !desired_has_key(&desired, kind, e))
                        },
                    )
                }
            };
            if matched.is_none()
                && let Some(k) = &key
                && kind != EntityKind::Plugin
                && current.of(kind).iter().any(|e| !has_tags(e, select) && match_key(kind, e).as_ref() == Some(k))
            {
                errors.push(FileError {
                    place: place.clone(),
                    message: format!(
                        "{} '{k}' exists on the server without the select_tags {}; it is not managed by this file",
                        kind_name(kind),
                        select.join(",")
                    ),
                });
                continue;
            }
            let id = given_id
                .or_else(|| matched.map(|e| id_of(e).to_owned()))
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let mut data = data;
            data.insert("id".into(), json!(id));
            data.remove("created_at");
            data.remove("updated_at");
            for dup_key in [Some(format!("id:{id}")), key.map(|k| format!("key:{k}"))].into_iter().flatten() {
                if let Some(first) = seen.insert((kind, dup_key.clone()), place.clone()) {
                    errors.push(FileError {
                        place: place.clone(),
                        message: format!(
                            "{} {} appears twice (also at {first})",
                            kind_name(kind),
                            dup_key.split_once(':').map_or(dup_key.as_str(), |(_, k)| k)
                        ),
                    });
                }
            }
            if let Some(m) = matched {
                taken.insert(id_of(m).to_owned());
            }
            names.add(kind, &data);
            ids[index] = Some(id.clone());
            resolved[index] = Some(Resolved { kind, id, data, console: String::new(), current: matched.cloned() });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut target = Target::default();
    for kind in ORDER {
        for r in resolved.iter().flatten().filter(|r| r.kind == kind) {
            let mut r = r.clone();
            r.console = names.console(kind, &r.data);
            target.entities.push(r);
        }
    }
    if mode == Mode::Sync {
        for kind in ORDER.into_iter().rev() {
            for e in current.of(kind).iter().filter(|e| has_tags(e, select) && !taken.contains(id_of(e))) {
                target.leftovers.push(Leftover { kind, console: names.console(kind, e), data: e.clone() });
            }
        }
    }
    Ok(target)
}

/// Whether the file has an entity with `e`'s name (so `e` is matched by name, not taken for a rename).
fn desired_has_key(desired: &[Desired], kind: EntityKind, e: &Map<String, Value>) -> bool {
    let field = kind.endpoint_key();
    text(e, field).is_some_and(|k| desired.iter().any(|d| d.kind == kind && text(&d.body, field) == Some(k)))
}

/// The id of the file's entity of `kind` called `key` (or with that id).
fn lookup(desired: &[Desired], ids: &[Option<String>], kind: EntityKind, key: &str) -> Option<String> {
    desired.iter().zip(ids).find_map(|(d, id)| {
        let id = id.as_ref()?;
        (d.kind == kind && (id == key || text(&d.body, kind.endpoint_key()) == Some(key))).then(|| id.clone())
    })
}
