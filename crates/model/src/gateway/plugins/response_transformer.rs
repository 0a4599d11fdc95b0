//! `response-transformer`'s config (Kong's schema): remove, rename, replace, add and append response headers and
//! top-level fields of JSON response bodies.

use serde::Deserialize;
use serde_json::{Value, json};

use super::PluginInfo;
use super::request_transformer::{is_header_name, split_pair};
use crate::gateway::schema::Field;

pub const NAME: &str = "response-transformer";
pub const PRIORITY: i32 = 800;

pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: true, config: config_fields, check: super::no_check };

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Kong's `match = "^[^:]+:.*$"`.
fn colon_match(v: &Value) -> Result<(), String> {
    match str_of(v).split_once(':') {
        Some((name, _)) if !name.is_empty() => Ok(()),
        _ => Err(format!("invalid value: {}", str_of(v))),
    }
}

/// `rename.headers`: `old:new`, both header names.
fn header_rename_check(v: &Value) -> Result<(), String> {
    colon_match(v)?;
    let (old, new) = split_pair(str_of(v)).unwrap_or_default();
    for name in [old, new] {
        if !is_header_name(name) {
            return Err(format!("'{name}' is not a valid header"));
        }
    }
    Ok(())
}

fn list(name: &'static str, element: Field, description: &'static str) -> Field {
    Field::array(name, element).required().default(json!([])).describe_as(description)
}

fn pairs(name: &'static str, description: &'static str) -> Field {
    list(name, Field::string("pair").check(colon_match).describe_as("`name:value`"), description)
}

/// `replace`, `add` and `append` share one shape (Kong's `colon_string_record`).
fn colon_record(name: &'static str, description: &'static str) -> Field {
    Field::record(
        name,
        vec![
            pairs("json", "Top-level JSON body fields, as `name:value`."),
            list(
                "json_types",
                Field::string("type").one_of(&["boolean", "number", "string"]).describe_as("a JSON type name"),
                "The JSON type of each `json` value, by position: `boolean`, `number` or `string` (the default).",
            ),
            pairs("headers", "Headers, as `name:value`."),
        ],
    )
    .describe_as(description)
}

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::record(
            "remove",
            vec![
                list(
                    "json",
                    Field::string("name").describe_as("a JSON field"),
                    "Top-level JSON body fields to remove.",
                ),
                list("headers", Field::string("name").describe_as("a header name"), "Headers to remove."),
            ],
        )
        .describe_as("What to remove from the response, before anything else."),
        Field::record(
            "rename",
            vec![
                pairs("json", "Top-level JSON body fields to rename, as `old:new`."),
                list(
                    "headers",
                    Field::string("pair").check(header_rename_check).describe_as("`old:new`, both header names"),
                    "Headers to rename, as `old:new`.",
                ),
            ],
        )
        .describe_as("What to rename, after removing."),
        colon_record("replace", "Values to replace where the name is present."),
        colon_record("add", "Names to add where absent."),
        colon_record("append", "Values to append to a name, present or not (JSON fields become arrays)."),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Remove {
    pub json: Vec<String>,
    pub headers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Typed {
    pub json: Vec<String>,
    pub json_types: Vec<JsonType>,
    pub headers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonType {
    Boolean,
    Number,
    String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    pub remove: Remove,
    pub rename: Remove,
    pub replace: Typed,
    pub add: Typed,
    pub append: Typed,
}

impl Config {
    /// Kong's `is_body_transform_set`: whether any JSON body transformation is configured.
    pub fn transforms_json(&self) -> bool {
        !(self.remove.json.is_empty()
            && self.rename.json.is_empty()
            && self.replace.json.is_empty()
            && self.add.json.is_empty()
            && self.append.json.is_empty())
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
        assert!(!config.transforms_json());
        assert!(config.add.json_types.is_empty());
    }

    #[test]
    fn kongs_element_checks() {
        let got = errors(json!({
            "remove": {"json": ["a:b"], "headers": ["anything goes"]},
            "rename": {"json": ["nocolon"], "headers": ["x-a:b c"]},
            "replace": {"json_types": ["integer"]},
            "add": {"json": [":v"], "headers": ["x-a"]},
        }));
        let want: Vec<(String, String)> = [
            ("config.rename.json.1", "invalid value: nocolon"),
            ("config.rename.headers.1", "'b c' is not a valid header"),
            ("config.replace.json_types.1", "expected one of: boolean, number, string"),
            ("config.add.json.1", "invalid value: :v"),
            ("config.add.headers.1", "invalid value: x-a"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        assert_eq!(got, want);
    }
}
