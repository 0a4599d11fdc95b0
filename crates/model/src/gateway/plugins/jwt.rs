//! `jwt`'s config (Kong's OSS `kong/plugins/jwt/schema.lua`): where a token is looked for, which claim names the
//! credential, which registered claims are checked. The credentials are `jwt_secrets` entities.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Checks, PluginInfo};
use crate::gateway::schema::Field;

pub const NAME: &str = "jwt";
/// Kong's priority: after `openid-connect` (1050 in Kong; here its own), before `key-auth` (1250).
pub const PRIORITY: i32 = 1450;

/// Kong's schema sets `consumer = typedefs.no_consumer`: the plugin is what finds the consumer.
pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: false, config: config_fields, check };

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::set("uri_param_names", Field::string("uri_param_name"))
            .default(json!(["jwt"]))
            .describe_as("Query string parameters a token is looked for in."),
        Field::set("cookie_names", Field::string("cookie_name"))
            .default(json!([]))
            .describe_as("Cookies a token is looked for in."),
        Field::string("key_claim_name").default(json!("iss")).describe_as(
            "The claim naming the credential's `key`; read from the token's claims, then from its header.",
        ),
        Field::boolean("secret_is_base64").required().default(json!(false)).describe_as(
            "The credentials' HMAC secrets are base64url-encoded; tokens are signed with the decoded bytes.",
        ),
        Field::set("claims_to_verify", Field::string("claim").one_of(&["exp", "nbf"]))
            .describe_as("Registered claims (RFC 7519) to check: `exp`, `nbf`."),
        Field::string("anonymous")
            .describe_as("A consumer id or username to continue as when authentication fails; unset answers 401."),
        Field::boolean("run_on_preflight")
            .required()
            .default(json!(true))
            .describe_as("Authenticate `OPTIONS` requests too; when false they pass unauthenticated."),
        Field::number("maximum_expiration").default(json!(0)).between(0, 31_536_000).describe_as(
            "Refuse tokens whose `exp` is more than this many seconds ahead (0: no limit); needs `exp` in \
             `claims_to_verify`.",
        ),
        Field::set("header_names", Field::string("header_name"))
            .default(json!(["authorization"]))
            .describe_as("Headers a `Bearer` token is looked for in."),
        Field::string("realm").describe_as("The `realm` of the `WWW-Authenticate: Bearer` challenge sent with a 401."),
    ]
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub uri_param_names: Option<Vec<String>>,
    pub cookie_names: Option<Vec<String>>,
    pub key_claim_name: Option<String>,
    pub secret_is_base64: bool,
    pub claims_to_verify: Option<Vec<String>>,
    pub anonymous: Option<String>,
    pub run_on_preflight: bool,
    pub maximum_expiration: Option<f64>,
    pub header_names: Option<Vec<String>>,
    pub realm: Option<String>,
}

/// Kong's `conditional`: a `maximum_expiration` above 0 needs `exp` among `claims_to_verify`.
fn check(config: &Map<String, Value>, checks: &mut Checks) {
    let maximum = config.get("maximum_expiration").and_then(Value::as_f64).unwrap_or(0.0);
    let verifies_exp = config
        .get("claims_to_verify")
        .and_then(Value::as_array)
        .is_some_and(|claims| claims.iter().any(|c| c == "exp"));
    if maximum > 0.0 && !verifies_exp {
        checks.at("config.claims_to_verify", "expected to contain: exp");
        checks.entity("failed conditional validation given value of field 'config.maximum_expiration'");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{EntityKind, validate_entity};

    fn validate(config: Value) -> Result<Map<String, Value>, Vec<(String, String)>> {
        let body = json!({"name": "jwt", "config": config});
        validate_entity(EntityKind::Plugin, body.as_object().unwrap())
            .map_err(|e| e.into_iter().map(|v| (v.path, v.message)).collect())
    }

    #[test]
    fn defaults_are_kongs() {
        let plugin = validate(json!({})).unwrap();
        assert_eq!(
            plugin["config"],
            json!({"uri_param_names": ["jwt"], "cookie_names": [], "key_claim_name": "iss",
                "secret_is_base64": false, "claims_to_verify": null, "anonymous": null, "run_on_preflight": true,
                "maximum_expiration": 0, "header_names": ["authorization"], "realm": null})
        );
        let config: Config = serde_json::from_value(plugin["config"].clone()).unwrap();
        assert_eq!(config.key_claim_name.as_deref(), Some("iss"));
        assert_eq!(plugin["protocols"], json!(["grpc", "grpcs", "http", "https"]));
    }

    #[test]
    fn bad_values_are_refused_as_kong_refuses_them() {
        assert_eq!(validate(json!({"claims_to_verify": ["iat"]})).unwrap_err()[0].0, "config.claims_to_verify.1");
        assert_eq!(
            validate(json!({"maximum_expiration": 31_536_001})).unwrap_err()[0],
            ("config.maximum_expiration".to_owned(), "value should be between 0 and 31536000".to_owned())
        );
        assert_eq!(
            validate(json!({"maximum_expiration": 60})).unwrap_err(),
            [
                ("config.claims_to_verify".to_owned(), "expected to contain: exp".to_owned()),
                (
                    "@entity".to_owned(),
                    "failed conditional validation given value of field 'config.maximum_expiration'".to_owned()
                )
            ]
        );
        assert!(validate(json!({"maximum_expiration": 60, "claims_to_verify": ["exp"]})).is_ok());
        let consumer = json!({"name": "jwt", "consumer": {"id": "0190a0a0-0000-7000-8000-000000000001"}});
        assert_eq!(validate_entity(EntityKind::Plugin, consumer.as_object().unwrap()).unwrap_err()[0].path, "consumer");
    }
}
