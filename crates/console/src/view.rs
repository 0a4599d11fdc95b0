//! What a page shows, as data: a title, breadcrumbs and a list of sections (details, tables, forms, secrets shown
//! once, code). One template (`page.html`) renders them all, so every page has the same markup, labels and focus
//! order, and the accessibility check of one kind of section covers it everywhere.

use askama::Template;
use askama_web::WebTemplate;

/// A whole page.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "page.html")]
pub struct Page {
    pub title: String,
    pub crumbs: Vec<Link>,
    /// The signed-in token's name; `None` on the sign-in page.
    pub user: Option<String>,
    pub csrf: String,
    /// Which top-level area the page belongs to (highlighted in the navigation).
    pub area: &'static str,
    pub sections: Vec<Section>,
}

impl Page {
    pub fn nav(&self) -> [(&'static str, &'static str, &'static str); 4] {
        [
            ("overview", "/console/", "Overview"),
            ("tokens", "/console/tokens", "Access tokens"),
            ("identity", "/console/auth-servers", "Auth servers"),
            ("gateway", "/console/control-planes", "Control planes"),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct Link {
    pub text: String,
    pub href: String,
}

impl Link {
    pub fn new(text: impl Into<String>, href: impl Into<String>) -> Self {
        Self { text: text.into(), href: href.into() }
    }
}

#[derive(Debug)]
pub enum Section {
    /// A notice: `kind` is `ok`, `warn` or `error`.
    Notice {
        kind: &'static str,
        text: String,
    },
    /// A short paragraph of help.
    Text(String),
    Details {
        heading: String,
        rows: Vec<Detail>,
    },
    Table(Table),
    Form(Form),
    /// A value shown once (a new token or client secret), with a copy button.
    Secret {
        id: String,
        label: String,
        value: String,
        note: String,
    },
    /// Preformatted text: a decoded token, an introspection answer, response headers.
    Code {
        id: String,
        heading: String,
        text: String,
    },
    /// Links and one-button forms (delete, rotate, revoke), in a row.
    Actions(Vec<Action>),
}

#[derive(Debug)]
pub struct Detail {
    pub label: String,
    pub value: String,
    pub href: Option<String>,
}

impl Detail {
    pub fn text(label: impl Into<String>, value: impl Into<String>) -> Self {
        Self { label: label.into(), value: value.into(), href: None }
    }

    pub fn link(label: impl Into<String>, value: impl Into<String>, href: impl Into<String>) -> Self {
        Self { label: label.into(), value: value.into(), href: Some(href.into()) }
    }
}

#[derive(Debug)]
pub enum Action {
    Link(Link),
    /// A POST button; `confirm` asks first (console.js), `danger` styles it red.
    Post {
        label: String,
        url: String,
        danger: bool,
        confirm: Option<String>,
    },
}

impl Action {
    pub fn link(text: impl Into<String>, href: impl Into<String>) -> Self {
        Action::Link(Link::new(text, href))
    }

    pub fn post(label: impl Into<String>, url: impl Into<String>) -> Self {
        Action::Post { label: label.into(), url: url.into(), danger: false, confirm: None }
    }

    pub fn danger(label: impl Into<String>, url: impl Into<String>, confirm: impl Into<String>) -> Self {
        Action::Post { label: label.into(), url: url.into(), danger: true, confirm: Some(confirm.into()) }
    }
}

#[derive(Debug)]
pub struct Table {
    pub id: String,
    pub heading: String,
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
    pub empty: String,
    /// A search box (GET `q`) above the table, submitting to this URL.
    pub search: Option<Search>,
    pub pager: Option<Pager>,
}

#[derive(Debug)]
pub struct Search {
    pub url: String,
    pub query: String,
    pub label: String,
}

#[derive(Debug)]
pub struct Pager {
    pub summary: String,
    pub previous: Option<String>,
    pub next: Option<String>,
}

#[derive(Debug)]
pub struct Row {
    pub cells: Vec<Cell>,
    pub actions: Vec<Action>,
}

#[derive(Debug)]
pub struct Cell {
    pub text: String,
    pub href: Option<String>,
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Self {
        Self { text: text.into(), href: None }
    }

    pub fn link(text: impl Into<String>, href: impl Into<String>) -> Self {
        Self { text: text.into(), href: Some(href.into()) }
    }
}

#[derive(Debug)]
pub struct Form {
    pub id: String,
    pub heading: String,
    pub action: String,
    pub submit: String,
    pub fields: Vec<Field>,
    /// Errors that belong to no field shown (a name conflict, a missing entity).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Password,
    Number,
    Url,
    Textarea,
    Select,
    /// A multiple selection; `value` holds the chosen values joined with ','.
    Multi,
}

#[derive(Debug)]
pub struct Field {
    pub name: String,
    pub label: String,
    pub kind: Kind,
    pub value: String,
    pub help: String,
    pub error: Option<String>,
    pub required: bool,
    /// For `Select`: (value, label).
    pub options: Vec<(String, String)>,
}

impl Field {
    pub fn new(name: impl Into<String>, label: impl Into<String>, kind: Kind) -> Self {
        Self {
            name: name.into(),
            label: label.into(),
            kind,
            value: String::new(),
            help: String::new(),
            error: None,
            required: false,
            options: Vec::new(),
        }
    }

    pub fn text(name: &str, label: &str) -> Self {
        Self::new(name, label, Kind::Text)
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }

    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = value.into();
        self
    }

    pub fn options(mut self, options: Vec<(String, String)>) -> Self {
        self.kind = Kind::Select;
        self.options = options;
        self
    }

    /// A true/false choice (a select rather than a checkbox, so "false" is sent too).
    pub fn boolean(name: &str, label: &str, default: bool) -> Self {
        Self::text(name, label)
            .options(vec![("true".into(), "Yes".into()), ("false".into(), "No".into())])
            .value(default.to_string())
    }

    pub fn id(&self, form: &str) -> String {
        format!("{form}-{}", self.name.replace(['.', '[', ']'], "-"))
    }

    /// The ids of the help and error texts shown under the field.
    pub fn described_by(&self, form: &str) -> String {
        let id = self.id(form);
        let mut ids = Vec::new();
        if !self.help.is_empty() {
            ids.push(format!("{id}-help"));
        }
        if self.error.is_some() {
            ids.push(format!("{id}-error"));
        }
        ids.join(" ")
    }

    pub fn is(&self, kind: &str) -> bool {
        matches!(
            (self.kind, kind),
            (Kind::Text, "text")
                | (Kind::Password, "password")
                | (Kind::Number, "number")
                | (Kind::Url, "url")
                | (Kind::Textarea, "textarea")
                | (Kind::Select, "select")
                | (Kind::Multi, "multi")
        )
    }

    pub fn selected(&self, option: &str) -> bool {
        match self.kind {
            Kind::Multi => self.value.split(',').any(|v| v == option),
            _ => self.value == option,
        }
    }

    pub fn multi(mut self, options: Vec<(String, String)>) -> Self {
        self.kind = Kind::Multi;
        self.options = options;
        self
    }

    pub fn input_type(&self) -> &'static str {
        match self.kind {
            Kind::Password => "password",
            Kind::Number => "number",
            Kind::Url => "url",
            _ => "text",
        }
    }
}

impl Form {
    pub fn new(id: &str, heading: &str, action: impl Into<String>, submit: &str, fields: Vec<Field>) -> Self {
        Self {
            id: id.to_owned(),
            heading: heading.to_owned(),
            action: action.into(),
            submit: submit.to_owned(),
            fields,
            errors: Vec::new(),
        }
    }

    /// Puts submitted values back and attaches error messages to their fields; those naming no field of the form
    /// are listed above it.
    pub fn with_submission(mut self, pairs: &[(String, String)], errors: &FieldErrors) -> Self {
        for field in &mut self.fields {
            let mut sent = pairs.iter().filter(|(k, _)| *k == field.name).map(|(_, v)| v.as_str());
            if field.kind == Kind::Multi {
                field.value = sent.collect::<Vec<_>>().join(",");
            } else if let Some(v) = sent.next_back() {
                field.value = v.to_owned();
            }
        }
        self.errors.extend(errors.general.iter().cloned());
        for (path, message) in &errors.fields {
            let names = |f: &&mut Field| {
                f.name == *path || path.strip_prefix(f.name.as_str()).is_some_and(|rest| rest.starts_with(['.', '[']))
            };
            match self.fields.iter_mut().find(names) {
                Some(field) => field.error = Some(message.clone()),
                None if path.is_empty() => self.errors.push(message.clone()),
                None => self.errors.push(format!("{path}: {message}")),
            }
        }
        self
    }
}

/// Validation answers of an API call, by field path (`name`, `config.ttl`, `allow_scopes[0]`).
#[derive(Debug, Default, Clone)]
pub struct FieldErrors {
    pub general: Vec<String>,
    pub fields: Vec<(String, String)>,
}

impl FieldErrors {
    pub fn is_empty(&self) -> bool {
        self.general.is_empty() && self.fields.is_empty()
    }
}
