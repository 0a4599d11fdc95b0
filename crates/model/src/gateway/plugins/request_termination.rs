//! `request-termination`'s config (Kong's schema): answer with a fixed status and body instead of proxying.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::PluginInfo;
use crate::gateway::schema::Field;

pub const NAME: &str = "request-termination";
pub const PRIORITY: i32 = 2;

pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: true, config: config_fields, check };

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::integer("status_code").default(json!(503)).between(100, 599).describe_as("The status of the answer."),
        Field::string("message").describe_as("A message answered as `{\"message\": …}`; exclusive with `body`."),
        Field::string("body").describe_as("A raw body to answer with, instead of a message."),
        Field::string("content_type").describe_as("The `Content-Type` of `body`."),
        Field::string("trigger").describe_as("Terminate only requests carrying this header or query parameter."),
        Field::boolean("echo")
            .default(json!(false))
            .describe_as("Answer with a description of the request itself, for debugging."),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    pub status_code: u16,
    pub message: Option<String>,
    pub body: Option<String>,
    pub content_type: Option<String>,
    pub trigger: Option<String>,
    pub echo: bool,
}

/// Kong's custom validator: `message` excludes `body`, `content_type` needs `body`, `echo` takes neither.
pub fn check(config: &Map<String, Value>, checks: &mut super::Checks) {
    let set = |f: &str| config.get(f).is_some_and(|v| !v.is_null());
    // One custom validator in Kong: the first failure is its message.
    if set("message") && set("body") {
        checks.config("message cannot be used with content_type or body");
    } else if set("content_type") && !set("body") {
        checks.config("content_type requires a body");
    } else if config.get("echo") == Some(&Value::Bool(true)) && (set("content_type") || set("body")) {
        checks.config("echo cannot be used with content_type and body");
    }
}
