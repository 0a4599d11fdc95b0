//! Dynamic claims: Kong Identity's `${ … }` values, Go text/template with the Sprig functions (reference §5.2).
//!
//! A claim value is compiled once, when its snapshot loads (and checked when the claim is written); minting only
//! renders. Rendering is bounded (`budget`), and its output's type is inferred the way Kong documents it.
//!
//! This is a module of `identity`, not of `model`: rendering reads the clock and the random source, resolves time
//! zones from the system database and gtmpl's lexer runs on a thread, none of which belongs in the pure crate.

mod budget;
pub(crate) mod sprig;
mod syntax;
mod value;

use std::collections::HashMap;
use std::fmt;

use gtmpl::{Context, Template, Value};
use serde_json::Value as Json;

use gatehouse_model::Timestamp;
use gatehouse_model::body::Choice;
use gatehouse_model::identity::grant::static_claim_value;
use gatehouse_model::identity::{AuthServer, Client};

pub use budget::{MAX_OUTPUT, MAX_STEPS};

/// A value that does not parse as a template. `position` is the 1-based character of the `${` at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template error at position {position}: {message}")]
pub struct TemplateError {
    pub position: usize,
    pub message: String,
}

/// A template that failed while rendering (a function's error, a bound reached).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template failed: {0}")]
pub struct RenderError(pub String);

/// A claim value ready for minting.
#[derive(Debug)]
pub enum ClaimValue {
    /// No `${`: emitted as JSON when it is JSON, else as a string.
    Static(Json),
    Template(ClaimTemplate),
}

pub struct ClaimTemplate {
    template: Template,
}

impl fmt::Debug for ClaimTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClaimTemplate")
    }
}

impl ClaimValue {
    pub fn compile(value: &str) -> Result<Self, TemplateError> {
        let translated = syntax::translate(value)?;
        if !translated.has_actions() {
            return Ok(Self::Static(static_claim_value(value)));
        }
        let mut template = Template::default();
        template.add_funcs(sprig::FUNCTIONS);
        if let Err(e) = template.parse(translated.go()) {
            return Err(locate(&translated, &e.to_string()));
        }
        Ok(Self::Template(ClaimTemplate { template }))
    }

    pub fn is_template(&self) -> bool {
        matches!(self, Self::Template(_))
    }

    /// A static value without a context (`None` for a template).
    pub fn render_static(&self) -> Option<Json> {
        match self {
            Self::Static(v) => Some(v.clone()),
            Self::Template(_) => None,
        }
    }

    pub fn render(&self, context: &TemplateContext, now: Timestamp) -> Result<Json, RenderError> {
        match self {
            Self::Static(v) => Ok(v.clone()),
            Self::Template(t) => t.render(context, now).map(|s| infer_type(&s)),
        }
    }
}

/// Finds the first action whose prefix of the template no longer parses: that action holds the error.
fn locate(translated: &syntax::Translated, whole: &str) -> TemplateError {
    for n in 1..=translated.pieces.len() {
        let Some(action) = &translated.pieces[n - 1].1 else { continue };
        let mut probe = Template::default();
        probe.add_funcs(sprig::FUNCTIONS);
        if let Err(e) = probe.parse(translated.prefix(n)) {
            return TemplateError { position: action.position, message: clean(&e.to_string()) };
        }
    }
    TemplateError { position: 1, message: clean(whole) }
}

/// gtmpl prefixes `template: <name>:<line>:`; the position replaces it.
fn clean(message: &str) -> String {
    let rest = message.strip_prefix("template: :").unwrap_or(message);
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start_matches(':').trim();
    rest.replace("_print", "print").replace(" | print", "")
}

impl ClaimTemplate {
    fn render(&self, context: &TemplateContext, now: Timestamp) -> Result<String, RenderError> {
        let _scope = budget::RenderScope::enter(
            jiff::Timestamp::from_microsecond(now.micros()).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        );
        let mut out = budget::BoundedWriter::default();
        self.template.execute(&mut out, &context.0).map_err(|e| RenderError(e.to_string()))?;
        String::from_utf8(out.0).map_err(|_| RenderError("output is not UTF-8".into()))
    }
}

/// The names a template may call: Go's builtins and the Sprig subset.
pub fn function_names() -> impl Iterator<Item = &'static str> {
    sprig::FUNCTIONS.iter().map(|(name, _)| *name).filter(|name| !name.starts_with('_'))
}

/// Kong's type inference on the rendered string: integer, float, boolean, JSON array or object, else string.
pub fn infer_type(rendered: &str) -> Json {
    if let Ok(i) = rendered.parse::<i64>() {
        return Json::from(i);
    }
    let numeric = rendered.bytes().next().is_some_and(|b| b == b'-' || b.is_ascii_digit());
    if numeric && let Ok(Json::Number(n)) = serde_json::from_str::<Json>(rendered) {
        // Go encodes an integral float64 without a fraction (`5`, `1000000`); so does this.
        return match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Json::from(f as i64),
            _ => Json::Number(n),
        };
    }
    match rendered {
        "true" => return Json::Bool(true),
        "false" => return Json::Bool(false),
        _ => {}
    }
    if (rendered.starts_with('[') || rendered.starts_with('{'))
        && let Ok(v @ (Json::Array(_) | Json::Object(_))) = serde_json::from_str::<Json>(rendered)
    {
        return v;
    }
    Json::String(rendered.to_owned())
}

/// `.AuthServer` and `.Client`, as the reference lists them. Labels are maps, so a missing label is empty and
/// `default` applies; the other fields are struct fields, so a misspelt one is an error, as in Go.
pub struct TemplateContext(Context);

impl fmt::Debug for TemplateContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TemplateContext")
    }
}

fn labels(labels: &gatehouse_model::Labels) -> Value {
    Value::Map(labels.0.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect())
}

fn time(t: Timestamp) -> Value {
    let ts = jiff::Timestamp::from_microsecond(t.micros()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    value::time_value(&ts.to_zoned(jiff::tz::TimeZone::UTC))
}

fn strings<T: ToString>(items: &[T]) -> Value {
    Value::Array(items.iter().map(|i| Value::from(i.to_string())).collect())
}

impl TemplateContext {
    pub fn new(server: &AuthServer, client: &Client) -> Self {
        let server = HashMap::from([
            ("ID".to_owned(), Value::from(server.id.to_string())),
            ("CreatedAt".to_owned(), time(server.created_at)),
            ("UpdatedAt".to_owned(), time(server.updated_at)),
            ("Name".to_owned(), Value::from(server.name.clone())),
            ("Description".to_owned(), Value::from(server.description.clone())),
            ("Audience".to_owned(), Value::from(server.audience.clone())),
            ("SigningAlgorithm".to_owned(), Value::from(server.signing_algorithm.as_str())),
            ("Labels".to_owned(), labels(&server.labels)),
        ]);
        let json_strings = |v: &Json| match v {
            Json::Array(a) => {
                Value::Array(a.iter().map(|x| Value::from(x.as_str().unwrap_or_default().to_owned())).collect())
            }
            _ => Value::Array(Vec::new()),
        };
        let client_json = serde_json::to_value(client).unwrap_or(Json::Null);
        let client = HashMap::from([
            ("ID".to_owned(), Value::from(client.id.to_string())),
            ("CreatedAt".to_owned(), time(client.created_at)),
            ("UpdatedAt".to_owned(), time(client.updated_at)),
            ("Name".to_owned(), Value::from(client.name.clone())),
            ("Labels".to_owned(), labels(&client.labels)),
            ("GrantTypes".to_owned(), json_strings(&client_json["grant_types"])),
            ("RedirectURIs".to_owned(), strings(&client.redirect_uris)),
            ("LoginURI".to_owned(), Value::from(client.login_uri.clone().unwrap_or_default())),
            ("ResponseTypes".to_owned(), json_strings(&client_json["response_types"])),
            ("AllowAllScopes".to_owned(), Value::Bool(client.allow_all_scopes)),
        ]);
        Self(Context::from(Value::Object(HashMap::from([
            ("AuthServer".to_owned(), Value::Object(server)),
            ("Client".to_owned(), Value::Object(client)),
        ]))))
    }
}

#[cfg(test)]
mod tests;
