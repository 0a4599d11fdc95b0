//! `request-transformer`'s config (Kong's schema): remove, rename, replace, add and append headers, query
//! parameters and form/JSON/multipart body fields, change the method and the upstream path.
//!
//! Kong renders every value as a Penlight template whose `$(…)` placeholders are Lua expressions run in a
//! sandbox. Gatehouse runs no code: [`Template`] parses the reference forms only (see its doc), at validation time,
//! so a value the proxy could not render is refused with Kong's "not in supported format" message instead of
//! failing requests.

use serde::Deserialize;
use serde_json::{Value, json};

use super::PluginInfo;
use crate::gateway::schema::Field;

pub const NAME: &str = "request-transformer";
pub const PRIORITY: i32 = 801;

pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: true, config: config_fields, check: super::no_check };

/// `^[a-zA-Z0-9-_]+$`, Kong's `validate_header_name`.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Kong's `^([^:]+):*(.-)$`: the name before the first colon, and the value after the colons that follow it.
/// `None` when the entry starts with a colon (no name).
pub fn split_pair(entry: &str) -> Option<(&str, &str)> {
    let (name, rest) = entry.split_once(':').unwrap_or((entry, ""));
    (!name.is_empty()).then(|| (name, rest.trim_start_matches(':')))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn not_a_header(name: &str) -> String {
    format!("'{name}' is not a valid header")
}

/// `remove.headers` and the names of the other header lists: the part before a colon is a header name.
fn header_name_check(v: &Value) -> Result<(), String> {
    match split_pair(str_of(v)) {
        Some((name, _)) if is_header_name(name) => Ok(()),
        Some((name, _)) => Err(not_a_header(name)),
        None => Err(not_a_header("nil")),
    }
}

/// Kong's `match = "^[^:]+:.*$"` on `name:value` lists.
fn colon_match(v: &Value) -> Result<(), String> {
    let s = str_of(v);
    match s.split_once(':') {
        Some((name, _)) if !name.is_empty() => Ok(()),
        _ => Err(format!("invalid value: {s}")),
    }
}

/// `name:value` header lists whose value is a template (replace, add, append).
fn header_value_check(v: &Value) -> Result<(), String> {
    colon_match(v)?;
    header_name_check(v)?;
    template_check(split_pair(str_of(v)).map_or("", |(_, value)| value))
}

/// `rename.headers`: both sides are header names.
fn header_rename_check(v: &Value) -> Result<(), String> {
    colon_match(v)?;
    header_name_check(v)?;
    let (_, new) = split_pair(str_of(v)).unwrap_or_default();
    if is_header_name(new) { Ok(()) } else { Err(not_a_header(new)) }
}

/// Kong's `check_for_value`: body and query `name:value` entries need a value, and the value must compile.
fn value_check(v: &Value) -> Result<(), String> {
    let Some((name, value)) = split_pair(str_of(v)) else {
        return Err(format!("invalid value: {}", str_of(v)));
    };
    if value.is_empty() {
        return Err(format!("key '{name}' has no value"));
    }
    template_check(value)
}

fn template_check(value: &str) -> Result<(), String> {
    Template::parse(value).map(drop).map_err(|e| format!("value '{value}' is not in supported format, error:{e}"))
}

/// Kong's `typedefs.http_method`: upper-case letters only.
fn http_method_check(v: &Value) -> Result<(), String> {
    let s = str_of(v);
    if s.bytes().all(|b| b.is_ascii_uppercase()) { Ok(()) } else { Err(format!("invalid value: {s}")) }
}

fn uri_check(v: &Value) -> Result<(), String> {
    template_check(str_of(v))
}

fn list(name: &'static str, element: Field, description: &'static str) -> Field {
    Field::array(name, element).required().default(json!([])).describe_as(description)
}

fn names(what: &'static str) -> Field {
    Field::string("name").describe_as(what)
}

fn pairs(what: &'static str) -> Field {
    Field::string("pair").check(value_check).describe_as(what)
}

/// `add`, `append` and `replace` share one shape (Kong's `colon_strings_array_record`).
fn colon_record(name: &'static str, description: &'static str, extra: Option<Field>) -> Field {
    let mut fields = vec![
        list("body", pairs("`name:value`, the value a template"), "Body fields, as `name:value`."),
        list(
            "headers",
            Field::string("header").check(header_value_check).describe_as("`name:value`, the value a template"),
            "Headers, as `name:value`.",
        ),
        list("querystring", pairs("`name:value`, the value a template"), "Query parameters, as `name:value`."),
    ];
    fields.extend(extra);
    Field::record(name, fields).describe_as(description)
}

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::string("http_method")
            .check(http_method_check)
            .describe_as("The method the upstream request is sent with (upper-case), when set."),
        Field::record(
            "remove",
            vec![
                list("body", names("a body field"), "Body fields to remove."),
                list(
                    "headers",
                    Field::string("header").check(header_name_check).describe_as("a header name"),
                    "Headers to remove.",
                ),
                list("querystring", names("a query parameter"), "Query parameters to remove."),
            ],
        )
        .describe_as("What to remove from the request, before anything else."),
        Field::record(
            "rename",
            vec![
                list("body", pairs("`old:new`"), "Body fields to rename, as `old:new`."),
                list(
                    "headers",
                    Field::string("header").check(header_rename_check).describe_as("`old:new`, both header names"),
                    "Headers to rename, as `old:new`.",
                ),
                list("querystring", pairs("`old:new`"), "Query parameters to rename, as `old:new`."),
            ],
        )
        .describe_as("What to rename, after removing."),
        colon_record(
            "replace",
            "Values to replace where the name is present (the `Host` header even when absent); `uri` replaces the upstream path.",
            Some(
                Field::string("uri")
                    .check(uri_check)
                    .describe_as("The upstream path, a template; replaces the one routing made."),
            ),
        ),
        colon_record("add", "Names to add where absent.", None),
        colon_record("append", "Values to append to a name, present or not.", None),
    ]
}

/// A `name:value` list as configured.
pub type Pairs = Vec<String>;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Lists {
    pub body: Pairs,
    pub headers: Pairs,
    pub querystring: Pairs,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Replace {
    pub body: Pairs,
    pub headers: Pairs,
    pub querystring: Pairs,
    pub uri: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    pub http_method: Option<String>,
    pub remove: Lists,
    pub rename: Lists,
    pub replace: Replace,
    pub add: Lists,
    pub append: Lists,
}

/// A value as Kong renders it, restricted to what can be evaluated without running code:
///
/// * text, copied as is;
/// * `$(ref)` where `ref` is `headers.name`, `headers["name"]`, `query_params.name`, `query_params["name"]`,
///   `uri_captures.name`, `uri_captures["name"]`, `uri_captures[1]` or `shared.name` / `shared["name"]`;
/// * a string literal (`'…'` or `"…"`, which is how Kong escapes a template: `$('$(x)')`);
/// * alternatives joined by `or`, the first present one rendered: `$(headers.x or query_params.y or "none")`.
///
/// Anything else (function calls, method calls, operators, lambdas) is refused when the config is validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// Alternatives, in order.
    Expr(Vec<Term>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Literal(String),
    Lookup(Source, Key),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Headers,
    QueryParams,
    UriCaptures,
    Shared,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Name(String),
    Index(usize),
}

impl Template {
    /// Parses a value; text without `$(` is one text part.
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = input;
        while let Some(start) = rest.find("$(") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let mut p = Parser { s: &rest[start + 2..], pos: 0 };
            let terms = p.expression()?;
            p.skip_space();
            if !p.eat(")") {
                return Err(match p.s[p.pos..].chars().next() {
                    None => "unclosed placeholder".into(),
                    Some(c) => format!("unexpected '{c}' in placeholder"),
                });
            }
            parts.push(Part::Expr(terms));
            rest = &p.s[p.pos..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The text of a template without placeholders.
    pub fn as_plain(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    pub fn uses(&self, source: Source) -> bool {
        self.parts.iter().any(|p| match p {
            Part::Expr(terms) => terms.iter().any(|t| matches!(t, Term::Lookup(s, _) if *s == source)),
            Part::Text(_) => false,
        })
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.s[self.pos..].starts_with(|c: char| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.s[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn identifier(&mut self) -> Option<&str> {
        let rest = &self.s[self.pos..];
        let len = rest
            .char_indices()
            .take_while(|&(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
            .count();
        (len > 0).then(|| {
            self.pos += len;
            &rest[..len]
        })
    }

    fn expression(&mut self) -> Result<Vec<Term>, String> {
        let mut terms = vec![self.term()?];
        loop {
            self.skip_space();
            let save = self.pos;
            if self.identifier() == Some("or") && self.s[self.pos..].starts_with(|c: char| !c.is_ascii_alphanumeric()) {
                terms.push(self.term()?);
            } else {
                self.pos = save;
                return Ok(terms);
            }
        }
    }

    fn string(&mut self) -> Result<Option<String>, String> {
        let Some(quote) = self.s[self.pos..].chars().next().filter(|c| *c == '"' || *c == '\'') else {
            return Ok(None);
        };
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.s[self.pos..].chars();
        while let Some(c) = chars.next() {
            self.pos += c.len_utf8();
            match c {
                c if c == quote => return Ok(Some(out)),
                '\\' => {
                    let escaped = chars.next().ok_or("unfinished string")?;
                    self.pos += escaped.len_utf8();
                    out.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
        Err("unfinished string".into())
    }

    fn term(&mut self) -> Result<Term, String> {
        self.skip_space();
        if let Some(literal) = self.string()? {
            return Ok(Term::Literal(literal));
        }
        let source = match self.identifier() {
            Some("headers") => Source::Headers,
            Some("query_params") => Source::QueryParams,
            Some("uri_captures") => Source::UriCaptures,
            Some("shared") => Source::Shared,
            Some(other) => {
                return Err(format!("'{other}' is not supported, only headers, query_params, uri_captures and shared"));
            }
            None => return Err("expected a reference such as headers.name, or a string".into()),
        };
        self.skip_space();
        let key = if self.eat(".") {
            Key::Name(self.identifier().ok_or("expected a name after '.'")?.to_owned())
        } else if self.eat("[") {
            self.skip_space();
            let key = match self.string()? {
                Some(name) => Key::Name(name),
                None => {
                    let digits: String = self.s[self.pos..].chars().take_while(char::is_ascii_digit).collect();
                    self.pos += digits.len();
                    Key::Index(digits.parse().map_err(|_| "expected a string or a number between '[' and ']'")?)
                }
            };
            self.skip_space();
            if !self.eat("]") {
                return Err("expected ']'".into());
            }
            key
        } else {
            return Err("expected '.' or '[' after the table name".into());
        };
        Ok(Term::Lookup(source, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::schema::normalize;

    fn errors(input: Value) -> Vec<(String, String)> {
        let mut v = Vec::new();
        normalize(&config_fields(), input.as_object().unwrap(), "config", &mut v);
        v.into_iter().map(|x| (x.path, x.message)).collect()
    }

    #[test]
    fn defaults_fill_every_list() {
        let mut v = Vec::new();
        let out = normalize(&config_fields(), &serde_json::Map::new(), "config", &mut v);
        assert!(v.is_empty(), "{v:?}");
        let config: Config = serde_json::from_value(Value::Object(out)).unwrap();
        assert_eq!(config.http_method, None);
        assert!(config.add.headers.is_empty() && config.replace.uri.is_none() && config.remove.body.is_empty());
    }

    #[test]
    fn kongs_element_checks() {
        let got = errors(json!({
            "http_method": "get",
            "remove": {"headers": ["x y"]},
            "rename": {"headers": ["x-a:b c", "nocolon"], "body": ["a"]},
            "replace": {"headers": [":v"], "querystring": ["q:"]},
            "add": {"headers": ["x-ok:$(headers.a)", "x-bad:$(os.exit())"], "body": ["b:$(headers.x"]},
            "append": {"querystring": ["q:$(query_params.a:upper())"]},
        }));
        let want: Vec<(String, String)> = [
            ("config.http_method", "invalid value: get"),
            ("config.remove.headers.1", "'x y' is not a valid header"),
            ("config.rename.body.1", "key 'a' has no value"),
            ("config.rename.headers.1", "'b c' is not a valid header"),
            ("config.rename.headers.2", "invalid value: nocolon"),
            ("config.replace.headers.1", "invalid value: :v"),
            ("config.replace.querystring.1", "key 'q' has no value"),
            ("config.add.body.1", "value '$(headers.x' is not in supported format, error:unclosed placeholder"),
            (
                "config.add.headers.2",
                "value '$(os.exit())' is not in supported format, error:'os' is not supported, only headers, query_params, uri_captures and shared",
            ),
            ("config.append.querystring.1", "value '$(query_params.a:upper())' is not in supported format, error:unexpected ':' in placeholder"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        let mut got = got;
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want);
        assert!(errors(json!({"http_method": "PATCH", "replace": {"uri": "/v2/$(uri_captures[1])"}})).is_empty());
        assert_eq!(
            errors(json!({"replace": {"uri": "$(ngx.var.uri)"}}))[0].1,
            "value '$(ngx.var.uri)' is not in supported format, error:'ngx' is not supported, only headers, query_params, uri_captures and shared"
        );
    }

    #[test]
    fn pairs_split_as_kong_does() {
        assert_eq!(split_pair("a:b:c"), Some(("a", "b:c")));
        assert_eq!(split_pair("a::b"), Some(("a", "b")));
        assert_eq!(split_pair("a"), Some(("a", "")));
        assert_eq!(split_pair(":a"), None);
    }

    #[test]
    fn templates_parse_the_reference_forms() {
        let t = Template::parse("Basic $(query_params[\"auth\"]) / $(headers.x_api or uri_captures[2] or 'none')!")
            .unwrap();
        assert_eq!(
            t.parts,
            [
                Part::Text("Basic ".into()),
                Part::Expr(vec![Term::Lookup(Source::QueryParams, Key::Name("auth".into()))]),
                Part::Text(" / ".into()),
                Part::Expr(vec![
                    Term::Lookup(Source::Headers, Key::Name("x_api".into())),
                    Term::Lookup(Source::UriCaptures, Key::Index(2)),
                    Term::Literal("none".into()),
                ]),
                Part::Text("!".into()),
            ]
        );
        assert!(t.uses(Source::UriCaptures) && !t.uses(Source::Shared));
        // Kong's escape: a literal inside a placeholder.
        assert_eq!(Template::parse("$('$(x)')").unwrap().parts, [Part::Expr(vec![Term::Literal("$(x)".into())])]);
        assert_eq!(Template::parse("plain:text").unwrap().as_plain(), Some("plain:text"));
        assert_eq!(Template::parse("$(shared [ 'k' ] )").unwrap().parts.len(), 1);
        for bad in
            ["$(headers)", "$(headers.)", "$(headers[x])", "$(headers.a .. 'b')", "$(1)", "$('a)", "$(headers.a or)"]
        {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert!(Template::parse("$(headers.ordinary)").is_ok(), "`or` only as a whole word");
    }

    proptest::proptest! {
        /// The parser sees operator-supplied text: it never panics, text without a placeholder comes back as it
        /// was, and a rendered reference keeps the text around it.
        #[test]
        fn templates_never_panic_and_keep_plain_text(input in "\\PC{0,40}", text in "[^$]{0,20}", name in "[a-z_]{1,8}") {
            let _ = Template::parse(&input);
            let plain = Template::parse(&text).unwrap();
            proptest::prop_assert_eq!(plain.as_plain(), Some(text.as_str()));
            let t = Template::parse(&format!("{text}$(headers.{name}){text}")).unwrap();
            let want_text = (!text.is_empty()).then(|| Part::Text(text.clone()));
            let mut want: Vec<Part> = want_text.clone().into_iter().collect();
            want.push(Part::Expr(vec![Term::Lookup(Source::Headers, Key::Name(name.clone()))]));
            want.extend(want_text);
            proptest::prop_assert_eq!(t.parts, want);
        }
    }
}
