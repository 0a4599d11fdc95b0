//! `correlation-id`'s config (Kong's schema): the header that carries a request's correlation id, how a missing
//! one is made, and whether the client sees it.

use serde::Deserialize;
use serde_json::{Value, json};

use super::PluginInfo;
use crate::gateway::schema::Field;

pub const NAME: &str = "correlation-id";
pub const PRIORITY: i32 = 100001;

pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: true, config: config_fields, check: super::no_check };

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::string("header_name").default(json!("Kong-Request-ID")).check(header_name)
            .describe_as("The request (and, with `echo_downstream`, response) header that carries the correlation id."),
        Field::string("generator").required().default(json!("uuid#counter")).one_of(&["uuid", "uuid#counter", "tracker"])
            .describe_as("How a missing id is made: `uuid` (a random UUID), `uuid#counter` (a per-worker UUID and counter) or `tracker` (address, port, process, connection, request and time)."),
        Field::boolean("echo_downstream").required().default(json!(false))
            .describe_as("Also send the correlation id to the client, in the same header."),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    pub header_name: String,
    pub generator: Generator,
    pub echo_downstream: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Generator {
    #[serde(rename = "uuid")]
    Uuid,
    #[serde(rename = "uuid#counter")]
    UuidCounter,
    #[serde(rename = "tracker")]
    Tracker,
}

/// Kong does not check the name and fails every request when it cannot be a header; an RFC 9110 token here.
fn header_name(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if s.bytes().all(token) { Ok(()) } else { Err(format!("invalid header name: {s}")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::EntityKind;
    use crate::gateway::entities::validate_entity;

    fn plugin(config: Value) -> Result<serde_json::Map<String, Value>, Vec<(String, String)>> {
        let entity = json!({"name": NAME, "config": config});
        validate_entity(EntityKind::Plugin, entity.as_object().unwrap())
            .map_err(|v| v.into_iter().map(|v| (v.path, v.message)).collect())
    }

    fn config(entity: &serde_json::Map<String, Value>) -> Config {
        serde_json::from_value(entity["config"].clone()).unwrap()
    }

    #[test]
    fn defaults_are_kongs() {
        assert_eq!(
            config(&plugin(json!({})).unwrap()),
            Config { header_name: "Kong-Request-ID".into(), generator: Generator::UuidCounter, echo_downstream: false }
        );
        let null_name = plugin(json!({"header_name": null, "generator": "tracker", "echo_downstream": true})).unwrap();
        assert_eq!(config(&null_name).header_name, "Kong-Request-ID", "null takes the default");
        assert_eq!(config(&null_name).generator, Generator::Tracker);
        assert_eq!(config(&plugin(json!({"generator": "uuid"})).unwrap()).generator, Generator::Uuid);
    }

    #[test]
    fn bad_values_name_the_field() {
        assert_eq!(
            plugin(json!({"generator": "counter", "header_name": "X Id", "echo_downstream": 1})).unwrap_err(),
            [
                ("config.header_name".to_owned(), "invalid header name: X Id".to_owned()),
                ("config.generator".to_owned(), "expected one of: uuid, uuid#counter, tracker".to_owned()),
                ("config.echo_downstream".to_owned(), "expected a boolean".to_owned()),
            ]
        );
        assert_eq!(plugin(json!({"header_name": ""})).unwrap_err()[0].1, "length must be at least 1");
    }
}
