//! Reading state files: `${{ env "DECK_X" }}` templating, YAML or JSON parsed with the line and column of every
//! node (so a problem found later can name the place), and several files merged into one [`Content`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use regex::Regex;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

/// The entity arrays Gatehouse manages. Credentials are nested under their consumer in decK's files; Kong's
/// DB-less files (and `kong config db_export`) list them at the top level with a `consumer` reference.
pub const ENTITY_KEYS: [&str; 11] = [
    "services",
    "routes",
    "consumers",
    "plugins",
    "certificates",
    "ca_certificates",
    "upstreams",
    "keyauth_credentials",
    "jwt_secrets",
    "basicauth_credentials",
    "acls",
];

/// decK entity arrays Gatehouse does not have (yet): a file that fills one is refused rather than half-applied.
pub const UNSUPPORTED_KEYS: &[&str] = &[
    // decK nests SNIs under their certificate, which Gatehouse reads; a top-level list is not read.
    "snis",
    "vaults",
    "partials",
    "keys",
    "key_sets",
    "filter_chains",
    "consumer_groups",
    "rbac_roles",
    "custom_entities",
    "licenses",
    "workspaces",
    "service_packages",
    "custom_plugins",
    "degraphql_routes",
];

/// A place in an input: the file's name (`-` for stdin), 1-based line and column (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// A problem in an input, at a place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct FileError {
    pub place: Place,
    pub message: String,
}

/// One input as read: a name for messages and its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// A parsed input: the document as JSON and the position of every node by JSON pointer (`/services/0/name`).
#[derive(Debug, Clone)]
pub struct Document {
    pub name: String,
    pub value: Value,
    positions: HashMap<String, (u64, u64)>,
}

impl Document {
    /// Where `pointer` (or its nearest recorded ancestor) is.
    pub fn place(&self, pointer: &str) -> Place {
        let mut p = pointer;
        loop {
            if let Some(&(line, column)) = self.positions.get(p) {
                return Place { file: self.name.clone(), line, column };
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Place { file: self.name.clone(), line: 0, column: 0 },
            }
        }
    }
}

/// A node of a top-level entity array, with the document it came from.
#[derive(Debug, Clone)]
pub struct Item {
    pub doc: usize,
    pub pointer: String,
    pub body: Map<String, Value>,
}

/// A shared plugin configuration of `_plugin_configs`, with where it was defined.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    pub doc: usize,
    pub pointer: String,
    pub config: Map<String, Value>,
}

/// What kind of thing a file uses that Gatehouse does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GapKind {
    Plugin,
    Entity,
    Credential,
    Key,
    Feature,
}

/// A feature a file uses that Gatehouse does not support, and every place that uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub kind: GapKind,
    pub name: String,
    pub places: Vec<Place>,
}

impl Gap {
    /// How a message names it: `plugin 'jwt'`, `entity 'vaults'`.
    pub fn label(&self) -> String {
        match self.kind {
            GapKind::Plugin => format!("plugin '{}'", self.name),
            GapKind::Entity => format!("entity '{}'", self.name),
            GapKind::Credential if self.name == "groups" => "consumer group membership (a consumer's 'groups')".into(),
            GapKind::Credential => format!("consumer credentials '{}'", self.name),
            GapKind::Key => format!("top-level key '{}'", self.name),
            GapKind::Feature => self.name.clone(),
        }
    }
}

/// Every input merged: meta keys (which must agree across files) and the entity arrays in file order.
#[derive(Debug, Clone, Default)]
pub struct Content {
    pub docs: Vec<Document>,
    pub format_version: Option<String>,
    pub select_tags: Vec<String>,
    pub control_plane_name: Option<String>,
    pub entities: BTreeMap<&'static str, Vec<Item>>,
    /// `_transform` (Kong's: `false` means the credentials in the file are already in their stored form).
    pub transform: Option<bool>,
    /// decK's `_plugin_configs`: shared plugin configurations a plugin names with `_config`.
    pub plugin_configs: BTreeMap<String, PluginConfig>,
    /// `_info.defaults`: values for the fields a service, route, upstream or target leaves out, by kind.
    pub defaults: BTreeMap<String, Map<String, Value>>,
    /// What the files use that Gatehouse does not support, in the order first found.
    pub gaps: Vec<Gap>,
    /// Things worth telling the user that are not errors (`_workspace` ignored), for standard error.
    pub notices: Vec<String>,
}

impl Content {
    pub fn place(&self, doc: usize, pointer: &str) -> Place {
        match self.docs.get(doc) {
            Some(d) => d.place(pointer),
            None => Place { file: "-".into(), line: 0, column: 0 },
        }
    }

    pub fn items(&self, key: &str) -> &[Item] {
        self.entities.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether the files are in a format older than 3.0 (Kong 2.x's `1.1` or `2.1`; no version means 1.1).
    pub fn is_old_format(&self) -> bool {
        self.format_version.as_deref().unwrap_or("1.1").split('.').next() != Some("3")
    }

    /// decK 3.x refuses files for Kong 2.x (and files that name no version, which decK reads as 1.1) against a
    /// Kong 3.x target, and points at `file convert`.
    pub fn check_format_version(&self) -> Result<(), FileError> {
        if !self.is_old_format() {
            return Ok(());
        }
        let version = self.format_version.as_deref().unwrap_or("1.1");
        let file = self.docs.first().map(|d| d.name.clone()).unwrap_or_else(|| "-".into());
        let place = self.docs.first().map(|d| d.place("/_format_version")).unwrap_or(Place {
            file: file.clone(),
            line: 0,
            column: 0,
        });
        Err(FileError {
            place,
            message: format!(
                "cannot apply '{version}' config format version to Kong version 3.0 or above.\n\
                 Please upgrade your configuration to account for 3.0 breaking changes using the following command:\n\n\
                 gatehouse file convert --from kong-gateway-2.x --to kong-gateway-3.x --input-file {file} --output-file {file}\n\n\
                 (`deck file convert …` when the binary runs as deck). It sets `_format_version` to 3.0 and adds the `~` \
                 prefix to every route path that looks like a regex; audit the result before applying it."
            ),
        })
    }

    /// Reads an old-format file as Kong's DB-less loader does: regex-looking route paths get their `~` (decK's
    /// heuristic, the same as `file convert`). Returns the routes' paths it changed, for a notice.
    pub fn upgrade_in_memory(&mut self) -> Vec<String> {
        let mut changed = Vec::new();
        let mut upgrade = |route: &mut Map<String, Value>| {
            if crate::convert::prefix_regex_paths(route) {
                changed.push(crate::convert::route_label(route));
            }
        };
        for item in self.entities.get_mut("services").into_iter().flatten() {
            if let Some(Value::Array(routes)) = item.body.get_mut("routes") {
                for route in routes.iter_mut().filter_map(Value::as_object_mut) {
                    upgrade(route);
                }
            }
        }
        for item in self.entities.get_mut("routes").into_iter().flatten() {
            upgrade(&mut item.body);
        }
        self.format_version = Some("3.0".into());
        changed
    }
}

/// The `DECK_*` variables a file may read.
pub type Env = HashMap<String, String>;

fn template_pattern() -> Regex {
    // A literal pattern: it compiles.
    Regex::new(r#"\$\{\{\s*env\s+"([^"]*)"\s*\}\}"#).unwrap_or_else(|_| unreachable!())
}

/// Replaces `${{ env "DECK_X" }}` with the variable's value; only `DECK_` variables, and they must be set.
/// Returns the rendered text and the values it used (masked in diffs).
pub fn render(source: &Source, env: &Env) -> Result<(String, Vec<String>), Vec<FileError>> {
    let pattern = template_pattern();
    let mut errors = Vec::new();
    let mut used = Vec::new();
    let mut out = String::with_capacity(source.text.len());
    let mut last = 0;
    for caps in pattern.captures_iter(&source.text) {
        let (Some(whole), Some(name)) = (caps.get(0), caps.get(1)) else { continue };
        out.push_str(&source.text[last..whole.start()]);
        last = whole.end();
        let line = source.text[..whole.start()].matches('\n').count() as u64 + 1;
        let column = source.text[..whole.start()].rsplit('\n').next().map_or(0, |s| s.chars().count()) as u64 + 1;
        let place = Place { file: source.name.clone(), line, column };
        let name = name.as_str();
        if !name.starts_with("DECK_") {
            errors.push(FileError {
                place,
                message: format!(
                    "environment variable '{name}' denied: only variables prefixed with DECK_ can be used"
                ),
            });
            continue;
        }
        match env.get(name) {
            Some(v) => {
                out.push_str(v);
                if !v.is_empty() {
                    used.push(v.clone());
                }
            }
            None => errors.push(FileError { place, message: format!("environment variable '{name}' is not set") }),
        }
    }
    out.push_str(&source.text[last..]);
    if errors.is_empty() { Ok((out, used)) } else { Err(errors) }
}

/// A YAML node as parsed, with the position of each child.
#[derive(Debug)]
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(String, Spanned<Raw>)>),
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Uint(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            entries.push((key.0, map.next_value::<Spanned<Raw>>()?));
        }
        Ok(Raw::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

/// A mapping key: any scalar, as text (`404:` is a key like any other).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Str(s) => Ok(Key(s)),
            Raw::Int(i) => Ok(Key(i.to_string())),
            Raw::Uint(u) => Ok(Key(u.to_string())),
            Raw::Float(f) => Ok(Key(f.to_string())),
            Raw::Bool(b) => Ok(Key(b.to_string())),
            Raw::Null => Ok(Key("null".into())),
            Raw::Seq(_) | Raw::Map(_) => Err(de::Error::custom("mapping keys must be scalars")),
        }
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn flatten(node: Spanned<Raw>, pointer: String, positions: &mut HashMap<String, (u64, u64)>) -> Value {
    let at = node.referenced;
    if at.line() > 0 {
        positions.insert(pointer.clone(), (at.line(), at.column()));
    }
    match node.value {
        Raw::Null => Value::Null,
        Raw::Bool(b) => Value::Bool(b),
        Raw::Int(i) => Value::from(i),
        Raw::Uint(u) => Value::from(u),
        Raw::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Raw::Str(s) => Value::String(s),
        Raw::Seq(items) => Value::Array(
            items.into_iter().enumerate().map(|(i, item)| flatten(item, format!("{pointer}/{i}"), positions)).collect(),
        ),
        Raw::Map(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let child = format!("{pointer}/{}", escape(&k));
                    (k, flatten(v, child, positions))
                })
                .collect(),
        ),
    }
}

/// Parses rendered text (YAML, which includes JSON) into a document with positions.
pub fn parse(name: &str, text: &str) -> Result<Document, FileError> {
    let place = |line, column| Place { file: name.to_owned(), line, column };
    if text.trim().is_empty() {
        return Ok(Document { name: name.to_owned(), value: Value::Object(Map::new()), positions: HashMap::new() });
    }
    let root: Spanned<Raw> = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = e.without_snippet().to_string();
        let message = message.lines().next().unwrap_or("invalid YAML").to_owned();
        FileError { place: place(line, column), message: format!("cannot parse the file: {message}") }
    })?;
    let mut positions = HashMap::new();
    let value = flatten(root, String::new(), &mut positions);
    if !value.is_object() {
        let (line, column) = positions.get("").copied().unwrap_or((0, 0));
        return Err(FileError { place: place(line, column), message: "the file must hold a mapping".into() });
    }
    Ok(Document { name: name.to_owned(), value, positions })
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(|t| t.as_str().map(str::to_owned)).collect()
}

/// Renders, parses and merges sources. Meta keys must agree between files; entity arrays are concatenated.
/// Returns the content and the environment values the templates used. What the files use that Gatehouse does
/// not support is an error here, one per place; [`load_all`] keeps them apart.
pub fn load(sources: &[Source], env: &Env) -> Result<(Content, Vec<String>), Vec<FileError>> {
    let (content, secrets, mut errors) = load_all(sources, env);
    for gap in &content.gaps {
        for place in &gap.places {
            errors.push(FileError {
                place: place.clone(),
                message: format!("{} is not supported by Gatehouse", gap.label()),
            });
        }
    }
    if errors.is_empty() { Ok((content, secrets)) } else { Err(errors) }
}

/// [`load`] that always returns what it read: the content (with its [`Gap`]s), the environment values the
/// templates used, and the problems found besides the gaps.
pub fn load_all(sources: &[Source], env: &Env) -> (Content, Vec<String>, Vec<FileError>) {
    let mut content = Content::default();
    let mut errors = Vec::new();
    let mut secrets = Vec::new();
    for source in sources {
        let text = match render(source, env) {
            Ok((text, used)) => {
                secrets.extend(used);
                text
            }
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        match parse(&source.name, &text) {
            Ok(doc) => {
                let index = content.docs.len();
                content.docs.push(doc);
                merge(&mut content, index, &mut errors);
            }
            Err(e) => errors.push(e),
        }
    }
    content.gaps.sort_by_key(|g| {
        g.places.first().map(|p| (content.docs.iter().position(|d| d.name == p.file), p.line, p.column))
    });
    (content, secrets, errors)
}

/// Adds a use of an unsupported feature to the content's gaps.
fn add_gap(gaps: &mut Vec<Gap>, kind: GapKind, name: &str, place: Place) {
    match gaps.iter_mut().find(|g| g.kind == kind && g.name == name) {
        Some(g) => g.places.push(place),
        None => gaps.push(Gap { kind, name: name.to_owned(), places: vec![place] }),
    }
}

/// Consumer credentials decK files nest under a consumer that Gatehouse does not have (yet).
pub const UNSUPPORTED_CREDENTIALS: &[&str] =
    &["hmacauth_credentials", "oauth2_credentials", "mtls_auth_credentials", "groups"];

/// Walks one document for the plugins, credentials and vault references Gatehouse does not support. Entity
/// arrays and top-level keys are found while merging.
fn survey(doc: &Document, gaps: &mut Vec<Gap>) {
    fn list(v: Option<&Value>) -> &[Value] {
        v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }
    let Some(root) = doc.value.as_object() else { return };
    let mut plugin_lists: Vec<(String, Option<&Value>)> = vec![("/plugins".into(), root.get("plugins"))];
    for (i, service) in list(root.get("services")).iter().enumerate() {
        plugin_lists.push((format!("/services/{i}/plugins"), service.get("plugins")));
        for (j, route) in list(service.get("routes")).iter().enumerate() {
            plugin_lists.push((format!("/services/{i}/routes/{j}/plugins"), route.get("plugins")));
        }
    }
    for key in ["routes", "consumers", "consumer_groups"] {
        for (i, parent) in list(root.get(key)).iter().enumerate() {
            plugin_lists.push((format!("/{key}/{i}/plugins"), parent.get("plugins")));
        }
    }
    for (pointer, plugins) in plugin_lists {
        for (i, plugin) in list(plugins).iter().enumerate() {
            if let Some(name) = plugin.get("name").and_then(Value::as_str)
                && gatehouse_model::gateway::plugins::info(name).is_none()
            {
                add_gap(gaps, GapKind::Plugin, name, doc.place(&format!("{pointer}/{i}/name")));
            }
        }
    }
    for (i, consumer) in list(root.get("consumers")).iter().enumerate() {
        for key in UNSUPPORTED_CREDENTIALS {
            if consumer.get(*key).is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()) && !v.is_null()) {
                add_gap(gaps, GapKind::Credential, key, doc.place(&format!("/consumers/{i}/{key}")));
            }
        }
    }
    vault_references(&doc.value, String::new(), doc, gaps);
}

/// Kong's `{vault://…}` references, anywhere in the file.
fn vault_references(v: &Value, pointer: String, doc: &Document, gaps: &mut Vec<Gap>) {
    match v {
        Value::String(s) if s.trim_start().starts_with("{vault://") => {
            add_gap(gaps, GapKind::Feature, "vault references ({vault://…})", doc.place(&pointer));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                vault_references(item, format!("{pointer}/{i}"), doc, gaps);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                vault_references(item, format!("{pointer}/{}", escape(k)), doc, gaps);
            }
        }
        _ => {}
    }
}

fn merge(content: &mut Content, index: usize, errors: &mut Vec<FileError>) {
    let Some(doc) = content.docs.get(index) else { return };
    let Some(root) = doc.value.as_object() else { return };
    let mut found: Vec<(&'static str, Item)> = Vec::new();
    let mut format_version = None;
    let mut select_tags = None;
    let mut cp_name = None;
    let mut transform = None;
    let mut gaps: Vec<Gap> = Vec::new();
    let mut notices: Vec<String> = Vec::new();
    let mut plugin_configs: Vec<(String, PluginConfig)> = Vec::new();
    let mut defaults: Vec<(String, Map<String, Value>)> = Vec::new();
    survey(doc, &mut gaps);
    for (key, value) in root {
        let at = format!("/{}", escape(key));
        let err = |message: String| FileError { place: doc.place(&at), message };
        match key.as_str() {
            "_format_version" => match value.as_str() {
                Some(v) => format_version = Some(v.to_owned()),
                None => errors.push(err("_format_version: expected a string such as \"3.0\"".into())),
            },
            "_info" => {
                let Some(info) = value.as_object() else {
                    errors.push(err("_info: expected a mapping".into()));
                    continue;
                };
                for (k, v) in info {
                    match k.as_str() {
                        "select_tags" => match string_list(v) {
                            Some(tags) => select_tags = Some(tags),
                            None => errors.push(FileError {
                                place: doc.place(&format!("{at}/select_tags")),
                                message: "_info.select_tags: expected a list of strings".into(),
                            }),
                        },
                        "defaults" => info_defaults(doc, &format!("{at}/defaults"), v, &mut defaults, errors),
                        // Accepted and without effect here: lookups always see every entity of the target.
                        "default_lookup_tags" => {}
                        // decK's switches for features Gatehouse does not have (basic-auth, plugin schemas in
                        // dumps, consumer-group policy overrides): without effect, and the features themselves
                        // are reported where a file uses them.
                        "skip_hash_for_basic_auth" | "include_plugin_definitions" => {}
                        "consumer_group_policy_overrides" => {
                            if v.as_bool() == Some(true) {
                                add_gap(
                                    &mut gaps,
                                    GapKind::Feature,
                                    "_info.consumer_group_policy_overrides",
                                    doc.place(&format!("{at}/{k}")),
                                );
                            }
                        }
                        other => errors.push(FileError {
                            place: doc.place(&format!("{at}/{}", escape(other))),
                            message: format!("_info.{other}: unknown field"),
                        }),
                    }
                }
            }
            "_konnect" => match value.get("control_plane_name").or_else(|| value.get("runtime_group_name")) {
                Some(Value::String(name)) => cp_name = Some(name.clone()),
                _ => errors.push(err("_konnect: expected control_plane_name".into())),
            },
            "_workspace" => match value.as_str() {
                Some(ws) => notices.push(format!(
                    "{}: _workspace '{ws}' is ignored: Gatehouse has no workspaces, the file applies to the \
                     target's one configuration",
                    doc.place(&at)
                )),
                None => errors.push(err("_workspace: expected a string".into())),
            },
            "_transform" => match value.as_bool() {
                Some(b) => transform = Some(b),
                None => errors.push(err("_transform: expected a boolean".into())),
            },
            "_plugin_configs" => match value.as_object() {
                Some(configs) => {
                    for (name, config) in configs {
                        let pointer = format!("{at}/{}", escape(name));
                        match config.as_object() {
                            Some(config) => plugin_configs
                                .push((name.clone(), PluginConfig { doc: index, pointer, config: config.clone() })),
                            None => errors.push(FileError {
                                place: doc.place(&pointer),
                                message: format!("_plugin_configs.{name}: expected a mapping"),
                            }),
                        }
                    }
                }
                None => {
                    errors.push(err("_plugin_configs: expected a mapping of names to plugin configurations".into()))
                }
            },
            k if ENTITY_KEYS.contains(&k) => {
                let name = ENTITY_KEYS.iter().copied().find(|e| *e == k).unwrap_or("services");
                match value {
                    Value::Null => {}
                    Value::Array(list) => {
                        for (i, item) in list.iter().enumerate() {
                            let pointer = format!("{at}/{i}");
                            match item.as_object() {
                                Some(body) => found.push((name, Item { doc: index, pointer, body: body.clone() })),
                                None => errors.push(FileError {
                                    place: doc.place(&pointer),
                                    message: format!("{k}[{i}]: expected a mapping"),
                                }),
                            }
                        }
                    }
                    _ => errors.push(err(format!("{k}: expected a list"))),
                }
            }
            k if UNSUPPORTED_KEYS.contains(&k) => {
                if value.as_array().is_some_and(|a| !a.is_empty()) {
                    add_gap(&mut gaps, GapKind::Entity, k, doc.place(&at));
                }
            }
            other => add_gap(&mut gaps, GapKind::Key, other, doc.place(&at)),
        }
    }
    let name = doc.name.clone();
    let agree = |what: &str, slot: &mut Option<String>, new: Option<String>, errors: &mut Vec<FileError>| {
        if let Some(new) = new {
            match slot {
                Some(old) if *old != new => errors.push(FileError {
                    place: Place { file: name.clone(), line: 0, column: 0 },
                    message: format!("{what} '{new}' differs from '{old}' in another file"),
                }),
                _ => *slot = Some(new),
            }
        }
    };
    agree("_format_version", &mut content.format_version, format_version, errors);
    agree("_konnect.control_plane_name", &mut content.control_plane_name, cp_name, errors);
    if let Some(tags) = select_tags {
        let mut slot = (!content.select_tags.is_empty()).then(|| content.select_tags.join(","));
        let before = slot.clone();
        agree("_info.select_tags", &mut slot, Some(tags.join(",")), errors);
        if before.is_none() {
            content.select_tags = tags;
        }
    }
    for (key, item) in found {
        content.entities.entry(key).or_default().push(item);
    }
    if transform.is_some() {
        if content.transform.is_some() && content.transform != transform {
            errors.push(FileError {
                place: Place { file: name.clone(), line: 0, column: 0 },
                message: "_transform differs from another file's".into(),
            });
        }
        content.transform = transform;
    }
    for (config_name, config) in plugin_configs {
        if let Some(first) = content.plugin_configs.get(&config_name) {
            let first = content.place(first.doc, &first.pointer);
            errors.push(FileError {
                place: content.place(config.doc, &config.pointer),
                message: format!("_plugin_configs.{config_name} appears twice (also at {first})"),
            });
            continue;
        }
        content.plugin_configs.insert(config_name, config);
    }
    for (kind, values) in defaults {
        let slot = content.defaults.entry(kind).or_default();
        for (k, v) in values {
            slot.insert(k, v);
        }
    }
    for gap in gaps {
        for place in gap.places {
            add_gap(&mut content.gaps, gap.kind, &gap.name, place);
        }
    }
    content.notices.extend(notices);
}

/// The entities `_info.defaults` may give defaults for, and the fields it may not set (decK's restriction:
/// what identifies an entity cannot have a default).
const DEFAULTS: [(&str, &[&str]); 4] = [
    ("service", &["id", "name"]),
    ("route", &["id", "name"]),
    ("upstream", &["id", "name"]),
    ("target", &["id", "target"]),
];

fn info_defaults(
    doc: &Document,
    at: &str,
    value: &Value,
    out: &mut Vec<(String, Map<String, Value>)>,
    errors: &mut Vec<FileError>,
) {
    let Some(kinds) = value.as_object() else {
        errors.push(FileError { place: doc.place(at), message: "_info.defaults: expected a mapping".into() });
        return;
    };
    for (kind, fields) in kinds {
        let pointer = format!("{at}/{}", escape(kind));
        let Some((_, restricted)) = DEFAULTS.iter().find(|(k, _)| *k == kind.as_str()) else {
            errors.push(FileError {
                place: doc.place(&pointer),
                message: format!(
                    "_info.defaults.{kind}: unknown field (defaults are for service, route, upstream, target)"
                ),
            });
            continue;
        };
        let Some(fields) = fields.as_object() else {
            errors.push(FileError {
                place: doc.place(&pointer),
                message: format!("_info.defaults.{kind}: expected a mapping"),
            });
            continue;
        };
        let bad: Vec<&str> =
            restricted.iter().copied().filter(|f| fields.get(*f).is_some_and(|v| !v.is_null())).collect();
        if !bad.is_empty() {
            errors.push(FileError {
                place: doc.place(&pointer),
                message: format!("{kind} defaults cannot have these restricted fields set: {}", bad.join(", ")),
            });
            continue;
        }
        out.push((kind.clone(), fields.clone()));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn src(text: &str) -> Source {
        Source { name: "kong.yaml".into(), text: text.into() }
    }

    #[test]
    fn positions_point_at_nodes() {
        let doc = parse(
            "f.yaml",
            "_format_version: \"3.0\"\nservices:\n- name: a\n  url: http://x\n  routes:\n  - name: r\n",
        )
        .unwrap();
        assert_eq!(doc.place("/services/0/routes/0/name").line, 6);
        assert_eq!(doc.place("/services/0/url").to_string(), "f.yaml:4:8");
        assert_eq!(doc.place("/services/0/nothing").line, 3, "falls back to the parent");
        let json = parse("f.json", "{\"services\": [\n  {\"name\": \"a\", \"port\": 1}\n]}").unwrap();
        assert_eq!(json.value["services"][0]["port"], 1);
        assert_eq!(json.place("/services/0/port").line, 2);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("bad.yaml", "services:\n- name: a\n  host: [\n").unwrap_err();
        assert_eq!(e.place.file, "bad.yaml");
        assert!(e.place.line >= 3, "{e}");
        assert!(parse("dup.yaml", "a: 1\na: 2\n").is_err(), "duplicate keys are refused");
    }

    #[test]
    fn env_templates() {
        let env: Env = [("DECK_HOST".to_owned(), "h.example".to_owned())].into();
        let (text, used) = render(&src("host: ${{ env \"DECK_HOST\" }}\n"), &env).unwrap();
        assert_eq!((text.as_str(), used), ("host: h.example\n", vec!["h.example".to_owned()]));
        let e = render(&src("a: 1\nhost: ${{ env \"HOME\" }}\n"), &env).unwrap_err();
        assert_eq!(e[0].place.to_string(), "kong.yaml:2:7");
        assert!(e[0].message.contains("DECK_"));
        let e = render(&src("host: ${{ env \"DECK_NOPE\" }}"), &env).unwrap_err();
        assert!(e[0].message.contains("not set"));
    }

    #[test]
    fn files_merge_and_meta_must_agree() {
        let a = Source {
            name: "a.yaml".into(),
            text: "_format_version: \"3.0\"\nservices:\n- name: a\n  host: h\n".into(),
        };
        let b = Source {
            name: "b.yaml".into(),
            text: "_format_version: \"3.0\"\n_info:\n  select_tags: [t]\nservices:\n- name: b\n  host: h\n".into(),
        };
        let (content, _) = load(&[a.clone(), b], &Env::new()).unwrap();
        assert_eq!(content.items("services").len(), 2);
        assert_eq!(content.select_tags, vec!["t"]);
        assert_eq!(content.place(content.items("services")[1].doc, "/services/0").file, "b.yaml");
        let c = Source { name: "c.yaml".into(), text: "_format_version: \"1.1\"\n".into() };
        assert!(load(&[a, c], &Env::new()).is_err());
        let (old, _) = load(&[src("services: []\n")], &Env::new()).unwrap();
        assert!(old.check_format_version().unwrap_err().message.contains("'1.1'"));
        let e = load(&[src("vaults:\n- name: v\n")], &Env::new()).unwrap_err();
        assert!(e[0].message.contains("not supported"));
        assert_eq!(e[0].message, "entity 'vaults' is not supported by Gatehouse");
    }
}
