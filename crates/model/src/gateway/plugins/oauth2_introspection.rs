//! `oauth2-introspection`'s config: Kong's 13 fields with Kong's defaults, plus Gatehouse's `negative_ttl`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::PluginInfo;
use super::checks::{header_token, header_value, http_url};
use crate::gateway::schema::Field;
use crate::secret::SecretString;

pub const NAME: &str = "oauth2-introspection";
pub const PRIORITY: i32 = 1700;

pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: false, config: config_fields, check: super::no_check };

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::string("introspection_url").required().check(http_url)
            .describe_as("The RFC 7662 introspection endpoint the plugin asks about each token."),
        Field::number("ttl").default(json!(30)).check(non_negative)
            .describe_as("Seconds an answer is kept in the node's cache; never past the token's `exp`."),
        Field::string("token_type_hint")
            .describe_as("Sent to the endpoint as `token_type_hint`, when set."),
        Field::string("authorization_value").required().encrypted().check(header_value)
            .describe_as("The `Authorization` header value the plugin presents to the endpoint (for example `Basic …`); sealed at rest."),
        Field::integer("timeout").default(json!(10000)).check(non_negative)
            .describe_as("Milliseconds to wait for the endpoint's answer."),
        Field::integer("keepalive").default(json!(60000)).check(non_negative)
            .describe_as("Milliseconds an idle connection to the endpoint is kept for reuse."),
        Field::boolean("introspect_request").required().default(json!(false))
            .describe_as("Also send the request's method and path to the endpoint; such answers are not cached."),
        Field::boolean("hide_credentials").default(json!(false))
            .describe_as("Remove the token from the request before it goes upstream."),
        Field::boolean("run_on_preflight").default(json!(true))
            .describe_as("Authenticate `OPTIONS` requests too; when false they pass unauthenticated."),
        Field::string("anonymous").default(json!("")).len_min(0)
            .describe_as("A consumer id or username to continue as when authentication fails; empty answers 401."),
        Field::string("consumer_by").required().default(json!("username")).one_of(&["username", "client_id"])
            .describe_as("Which answer field names the consumer: `username` matches a consumer's username, `client_id` its custom id."),
        Field::map(
            "custom_introspection_headers",
            Field::string("name").check(header_token),
            // Often an API key for the IdP: sealed at rest like `authorization_value` (Kong stores them in clear).
            Field::string("value").check(header_value).encrypted(),
        )
        .required()
        .default(json!({}))
        .describe_as("Extra headers sent to the endpoint; values are sealed at rest."),
        Field::set("custom_claims_forward", Field::string("claim")).required().default(json!([]))
            .describe_as("Further claims of the answer passed upstream as `X-Credential-<claim>` headers."),
        // Gatehouse addition: how long an inactive answer is cached. Kong caches it for `ttl`; 0 = not cached.
        Field::number("negative_ttl").default(json!(0)).check(non_negative).gatehouse_only()
            .describe_as("Gatehouse: seconds an inactive answer is cached; 0 asks the endpoint every time."),
    ]
}

/// The typed config the plugin runs with. The authorization value and custom header values are credentials for
/// the IdP: their `Debug` is `[redacted]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub introspection_url: String,
    pub ttl: f64,
    pub token_type_hint: Option<String>,
    pub authorization_value: SecretString,
    pub timeout: u64,
    pub keepalive: u64,
    pub introspect_request: bool,
    pub hide_credentials: bool,
    pub run_on_preflight: bool,
    pub anonymous: String,
    pub consumer_by: ConsumerBy,
    /// Values often carry an API key for the IdP: redacted like the authorization value.
    pub custom_introspection_headers: BTreeMap<String, SecretString>,
    pub custom_claims_forward: Vec<String>,
    #[serde(default)]
    pub negative_ttl: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerBy {
    Username,
    ClientId,
}

fn non_negative(v: &Value) -> Result<(), String> {
    if v.as_f64().is_some_and(|n| n >= 0.0) { Ok(()) } else { Err("value must be greater than or equal to 0".into()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::schema::{Violation, normalize};

    /// The config as the plugin entity's validation leaves it (the entity around it is `entities`' to test).
    fn validated(config: Value) -> Result<serde_json::Map<String, Value>, Vec<Violation>> {
        let mut violations = Vec::new();
        let out = normalize(&config_fields(), config.as_object().unwrap(), "config", &mut violations);
        if violations.is_empty() { Ok(out) } else { Err(violations) }
    }

    #[test]
    fn the_tutorials_plugin_validates_and_types() {
        let config = validated(json!({"introspection_url": "http://127.0.0.1:8003/k/introspect",
            "authorization_value": "Basic eDp5", "consumer_by": "client_id", "custom_claims_forward": ["Claim"]}))
        .unwrap();
        let config: Config = serde_json::from_value(Value::Object(config)).unwrap();
        assert_eq!(config.consumer_by, ConsumerBy::ClientId);
        assert_eq!((config.ttl, config.timeout, config.keepalive, config.negative_ttl), (30.0, 10000, 60000, 0.0));
        assert!(config.run_on_preflight && !config.hide_credentials && !config.introspect_request);
        assert_eq!(config_fields().len(), 14, "Kong's 13 fields and negative_ttl");
        let config = json!({"authorization_value": "Basic eDp5", "introspection_url": "http://i/x",
            "custom_introspection_headers": {"x-api-key": "k1", "x.tenant": "t1"}});
        let secrets = super::super::encrypted_values(NAME, config.as_object().unwrap());
        assert_eq!(
            secrets,
            [
                ("authorization_value".to_owned(), "Basic eDp5"),
                ("custom_introspection_headers.x-api-key".to_owned(), "k1"),
                ("custom_introspection_headers.x.tenant".to_owned(), "t1"),
            ]
        );
        let paths: Vec<String> = secrets.into_iter().map(|(path, _)| path).collect();
        let mut config = config.as_object().unwrap().clone();
        for path in &paths {
            *super::super::config_value_mut(&mut config, path).unwrap() = json!("sealed");
        }
        assert_eq!(config["custom_introspection_headers"], json!({"x-api-key": "sealed", "x.tenant": "sealed"}));
        assert_eq!(
            (&config["authorization_value"], &config["introspection_url"]),
            (&json!("sealed"), &json!("http://i/x"))
        );
        for bad in ["ftp://x/y", "not a url", "http://"] {
            assert!(validated(json!({"introspection_url": bad, "authorization_value": "v"})).is_err(), "{bad}");
        }
        for (auth, headers) in [
            ("Basic a\r\nX-Evil: 1", json!({})),
            ("Basic eDp5", json!({"bad name": "v"})),
            ("Basic eDp5", json!({"x_ok": "line\nbreak"})),
        ] {
            let config = json!({"introspection_url": "http://i/introspect",
                "authorization_value": auth, "custom_introspection_headers": headers});
            assert!(validated(config).is_err(), "{auth}");
        }
    }
}
