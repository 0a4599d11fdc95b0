//! `basic-auth`'s config (Kong's OSS `kong/plugins/basic-auth/schema.lua`) and Kong's password hash for
//! `basicauth_credentials` (`crypto.lua`): SHA-1 of the password followed by the consumer's id, in lower-case hex.
//! The control plane stores that hash (sealed), decK computes it for `_transform: true` files and takes it as
//! given for `_transform: false` ones, and the proxy checks a presented password against it.

use serde::Deserialize;
use serde_json::json;
use sha1::{Digest, Sha1};

use super::{PluginInfo, no_check};
use crate::gateway::schema::Field;

pub const NAME: &str = "basic-auth";
/// Kong's priority: after `key-auth` (1250), before `acl` (950).
pub const PRIORITY: i32 = 1100;

/// Kong's schema sets `consumer = typedefs.no_consumer`: the plugin is what finds the consumer.
pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: false, config: config_fields, check: no_check };

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::string("anonymous")
            .describe_as("A consumer id or username to continue as when authentication fails; unset answers 401."),
        Field::boolean("hide_credentials").required().default(json!(false)).describe_as(
            "Remove the `Authorization` (or `Proxy-Authorization`) header before the request goes upstream.",
        ),
        Field::string("realm")
            .required()
            .default(json!("service"))
            .describe_as("The `realm` of the `WWW-Authenticate: Basic` challenge sent with a 401."),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    pub anonymous: Option<String>,
    pub hide_credentials: bool,
    pub realm: String,
}

/// Kong's stored form of a password: `sha1(password .. consumer_id)`, 40 lower-case hex digits.
pub fn kong_hash(consumer_id: &str, password: &str) -> String {
    kong_digest(consumer_id, password).iter().map(|b| format!("{b:02x}")).collect()
}

/// [`kong_hash`] as bytes.
pub fn kong_digest(consumer_id: &str, password: &str) -> [u8; 20] {
    let mut digest = Sha1::new();
    digest.update(password.as_bytes());
    digest.update(consumer_id.as_bytes());
    digest.finalize().into()
}

/// Whether `value` has the shape of [`kong_hash`]'s output (what a `_transform: false` file carries).
pub fn is_kong_hash(value: &str) -> bool {
    value.len() == 40 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{EntityKind, validate_entity};

    #[test]
    fn defaults_are_kongs_and_the_hash_is_kongs() {
        let body = json!({"name": "basic-auth"});
        let plugin = validate_entity(EntityKind::Plugin, body.as_object().unwrap()).unwrap();
        assert_eq!(plugin["config"], json!({"anonymous": null, "hide_credentials": false, "realm": "service"}));
        // sha1("Aladdin" .. "00000000-0000-0000-0000-000000000001"), as Kong's crypto.lua computes it.
        let hash = kong_hash("00000000-0000-0000-0000-000000000001", "Aladdin");
        assert_eq!(hash, "568fe5853e75c56668c60c654d69d097553f8283");
        assert!(is_kong_hash(&hash));
        assert_ne!(hash, kong_hash("00000000-0000-0000-0000-000000000002", "Aladdin"), "salted by the consumer");
        assert!(!is_kong_hash("Aladdin") && !is_kong_hash(&hash.to_uppercase()));
    }
}
