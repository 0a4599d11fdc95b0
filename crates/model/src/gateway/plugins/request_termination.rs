//! `request-termination`'s config (Kong's schema): answer with a fixed status and body instead of proxying.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::gateway::schema::Field;

pub const NAME: &str = "request-termination";
pub const PRIORITY: i32 = 2;

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::integer("status_code").default(json!(503)).between(100, 599),
        Field::string("message"),
        Field::string("body"),
        Field::string("content_type"),
        Field::string("trigger"),
        Field::boolean("echo").default(json!(false)),
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

/// Kong refuses `message` together with `body`, and `content_type` without `body`.
pub fn check(config: &Value) -> Result<(), String> {
    let set = |f: &str| config.get(f).is_some_and(|v| !v.is_null());
    if set("message") && set("body") {
        return Err("message cannot be used with content_type or body".into());
    }
    if set("content_type") && !set("body") {
        return Err("content_type requires a body".into());
    }
    Ok(())
}
