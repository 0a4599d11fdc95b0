//! `cors`'s config (Kong's schema): which origins, methods and headers cross-origin requests may use, and how
//! preflights are answered.

use serde::Deserialize;
use serde_json::{Value, json};

use super::PluginInfo;
use crate::gateway::schema::Field;

pub const NAME: &str = "cors";
pub const PRIORITY: i32 = 2000;

/// Kong's `no_consumer`: a preflight carries no credentials, so no consumer is known when it is answered.
pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: false, config: config_fields, check: super::no_check };

/// Kong's method list, in Kong's order: the default of `methods` and what a preflight answers without it.
pub const METHODS: &[&str] = &["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"];

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::array("origins", Field::string("origin").check(asterisk_or_regex))
            .describe_as("Origins allowed in `Access-Control-Allow-Origin`: `*`, exact origins, or regexes (anchored at both ends). None: every origin."),
        Field::array("headers", Field::string("header").check(header_value))
            .describe_as("Value of `Access-Control-Allow-Headers` on preflights; unset: the request's `Access-Control-Request-Headers`."),
        Field::array("exposed_headers", Field::string("header").check(header_value))
            .describe_as("Value of `Access-Control-Expose-Headers`; unset: none is sent."),
        Field::array("methods", Field::string("method").one_of(METHODS))
            .default(json!(METHODS))
            .describe_as("Value of `Access-Control-Allow-Methods` on preflights."),
        Field::number("max_age")
            .describe_as("Seconds a browser may cache a preflight's answer (`Access-Control-Max-Age`); unset: not sent."),
        Field::boolean("credentials").required().default(json!(false))
            .describe_as("Send `Access-Control-Allow-Credentials: true`; with every origin allowed, the request's origin is echoed instead of `*`."),
        Field::boolean("private_network").required().default(json!(false))
            .describe_as("Answer `Access-Control-Allow-Private-Network: true` to preflights that ask for it."),
        Field::boolean("preflight_continue").required().default(json!(false))
            .describe_as("Proxy preflights to the upstream (after the other plugins) instead of answering them."),
        Field::boolean("allow_origin_absent").required().default(json!(true))
            .describe_as("Add the CORS headers to responses to requests without an `Origin` header too."),
    ]
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub origins: Option<Vec<String>>,
    pub headers: Option<Vec<String>>,
    pub exposed_headers: Option<Vec<String>>,
    /// `None` only when a stored config predates the default: preflights then answer Kong's full list.
    pub methods: Option<Vec<String>>,
    pub max_age: Option<f64>,
    pub credentials: bool,
    pub private_network: bool,
    pub preflight_continue: bool,
    pub allow_origin_absent: bool,
}

/// Kong's `validate_asterisk_or_regex`. Kong compiles with PCRE; Gatehouse with Rust's `regex`, which refuses
/// look-around and back-references (see `docs/compatibility.md`).
fn asterisk_or_regex(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    if s == "*" || regex::Regex::new(s).is_ok() { Ok(()) } else { Err(format!("'{s}' is not a valid regex")) }
}

/// Sent as (part of) a response header, so it must be one: visible ASCII, spaces and tabs.
fn header_value(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    if s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err("invalid header value: only visible ASCII characters, spaces and tabs are allowed".into())
    }
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

    #[test]
    fn defaults_are_kongs() {
        let entity = plugin(json!({})).unwrap();
        let config: Config = serde_json::from_value(entity["config"].clone()).unwrap();
        assert_eq!(config.methods.as_deref().unwrap(), METHODS);
        assert!(!config.credentials && !config.private_network && !config.preflight_continue);
        assert!(config.allow_origin_absent);
        assert_eq!((config.origins, config.headers, config.exposed_headers, config.max_age), (None, None, None, None));
        assert_eq!(config_fields().len(), 9, "Kong's nine fields");
    }

    #[test]
    fn origins_are_asterisk_or_regexes_and_methods_kongs() {
        let config = json!({"origins": ["*", "https://a.example", "https://(.*)\\.example\\.org", "(unclosed"],
            "methods": ["GET", "get", "BREW"], "max_age": "x", "credentials": "yes"});
        assert_eq!(
            plugin(config).unwrap_err(),
            [
                ("config.origins.4".to_owned(), "'(unclosed' is not a valid regex".to_owned()),
                ("config.methods.2".to_owned(), format!("expected one of: {}", METHODS.join(", "))),
                ("config.methods.3".to_owned(), format!("expected one of: {}", METHODS.join(", "))),
                ("config.max_age".to_owned(), "expected a number".to_owned()),
                ("config.credentials".to_owned(), "expected a boolean".to_owned()),
            ]
        );
        let refused = plugin(json!({"headers": ["X-Ok", "bad\nvalue"]})).unwrap_err();
        assert_eq!(refused[0].0, "config.headers.2");
        assert!(plugin(json!({"origins": ["https://(?<=x)a"]})).is_err(), "look-behind is PCRE only");
    }

    #[test]
    fn cannot_be_scoped_to_a_consumer() {
        let entity = json!({"name": NAME, "consumer": {"id": "0190a0a0-0000-7000-8000-000000000001"}});
        let refused = validate_entity(EntityKind::Plugin, entity.as_object().unwrap()).unwrap_err();
        assert_eq!(refused[0].path, "consumer");
        assert_eq!(refused[0].message, "value must be null; the cors plugin cannot be applied to a consumer");
    }
}
