//! `key-auth`'s config (Kong's OSS `schema.lua`): which request parts an API key is looked for in, under which
//! names, and what happens when none matches. The keys themselves are `keyauth_credentials` entities.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{PluginInfo, no_check};
use crate::gateway::schema::Field;

pub const NAME: &str = "key-auth";
/// Kong's priority: after `oauth2-introspection` (1700), before `acl` (950) and `rate-limiting` (910).
pub const PRIORITY: i32 = 1250;

/// Kong's schema sets `consumer = typedefs.no_consumer`: the plugin is what finds the consumer.
pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: false, config: config_fields, check: no_check };

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::array("key_names", Field::string("key_name").check(header_name))
            .required()
            .default(json!(["apikey"]))
            .describe_as(
                "The header, query argument or body field names a key is looked for under, in order. Names may \
                 contain only A-Z, a-z, 0-9, `_` and `-`.",
            ),
        Field::boolean("hide_credentials")
            .required()
            .default(json!(false))
            .describe_as("Remove the key (header, query argument and body field) before the request goes upstream."),
        Field::string("anonymous")
            .describe_as("A consumer id or username to continue as when authentication fails; unset answers 401."),
        Field::boolean("key_in_header")
            .required()
            .default(json!(true))
            .describe_as("Look for the key in request headers."),
        Field::boolean("key_in_query")
            .required()
            .default(json!(true))
            .describe_as("Look for the key in the query string."),
        Field::boolean("key_in_body").required().default(json!(false)).describe_as(
            "Look for the key in the request body (`application/x-www-form-urlencoded`, `application/json` or \
             `multipart/form-data`).",
        ),
        Field::boolean("run_on_preflight")
            .required()
            .default(json!(true))
            .describe_as("Authenticate `OPTIONS` requests too; when false they pass unauthenticated."),
        Field::string("realm")
            .describe_as("The `realm` of the `WWW-Authenticate` challenge sent with a 401 (`Key realm=\"…\"`)."),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    pub key_names: Vec<String>,
    pub hide_credentials: bool,
    pub anonymous: Option<String>,
    pub key_in_header: bool,
    pub key_in_query: bool,
    pub key_in_body: bool,
    pub run_on_preflight: bool,
    pub realm: Option<String>,
}

/// Kong's `typedefs.header_name`, with its message.
fn header_name(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(format!("bad header name '{s}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{EntityKind, validate_entity};
    use serde_json::Map;

    fn validate(config: Value) -> Result<Map<String, Value>, Vec<(String, String)>> {
        let body = json!({"name": "key-auth", "config": config});
        validate_entity(EntityKind::Plugin, body.as_object().unwrap())
            .map_err(|e| e.into_iter().map(|v| (v.path, v.message)).collect())
    }

    #[test]
    fn defaults_are_kongs() {
        let plugin = validate(json!({})).unwrap();
        assert_eq!(
            plugin["config"],
            json!({"key_names": ["apikey"], "hide_credentials": false, "anonymous": null, "key_in_header": true,
                "key_in_query": true, "key_in_body": false, "run_on_preflight": true, "realm": null})
        );
        let config: Config = serde_json::from_value(plugin["config"].clone()).unwrap();
        assert_eq!(config.key_names, ["apikey"]);
        assert_eq!(INFO.priority, 1250);
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        assert_eq!(
            validate(json!({"key_names": ["api key"]})).unwrap_err(),
            [(
                "config.key_names.1".to_owned(),
                "bad header name 'api key', allowed characters are A-Z, a-z, 0-9, '_', and '-'".to_owned()
            )]
        );
        assert_eq!(validate(json!({"hide_credentials": "yes"})).unwrap_err()[0].0, "config.hide_credentials");
        assert_eq!(validate(json!({"key_in_body": 1})).unwrap_err()[0].1, "expected a boolean");
        assert_eq!(validate(json!({"bogus": 1})).unwrap_err()[0].0, "config.bogus");
        let consumer = json!({"name": "key-auth", "consumer": {"id": "0190a0a0-0000-7000-8000-000000000001"}});
        let errors = validate_entity(EntityKind::Plugin, consumer.as_object().unwrap()).unwrap_err();
        assert_eq!(errors[0].path, "consumer");
    }
}
