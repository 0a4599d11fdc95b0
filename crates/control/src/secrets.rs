//! Secret plugin fields (`authorization_value`, every value of `custom_introspection_headers`, every element of
//! `openid-connect`'s encrypted arrays) are sealed with the master key before they are stored and opened when read;
//! the APIs return them in clear, as Kong returns `encrypted` fields.
//!
//! A value stored in clear (custom headers were, before they were sealed) is read as it is and sealed on the
//! entity's next write.
//!
//! A certificate's `key` and `key_alt` are sealed the same way, bound to the certificate's id; the Admin API returns
//! them in clear, as Kong does.
//!
//! A `keyauth_credentials` entity's `key` is sealed the same way, bound to the credential's id; what finds it by
//! key (the store's unique index, `/key-auths/{key}`, the proxy) is its keyed hash (`DerivedKeys::hash_api_key`),
//! kept in the entity's `endpoint_key` column, never the key.
//!
//! A `jwt_secrets` entity's `secret` (an HMAC key) is sealed the same way, bound to the credential's id; its `key`
//! is an identifier (a token's `iss`), not a secret, and is its endpoint key in clear, as in Kong.
//!
//! A `basicauth_credentials` entity's `password` is Kong's hash of the password (never the password), and that
//! hash is sealed too, so a database dump holds nothing to brute-force offline.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::{config_value_mut, encrypted_values};
use gatehouse_model::gateway::{EntityKind, Normalized};
use gatehouse_runtime::master_key::DerivedKeys;

const SEALED_PREFIX: &str = "gatehouse:sealed:v1:";

/// What a sealed value is bound to: its plugin and its place in the config (`config.authorization_value`,
/// `config.custom_introspection_headers.x-api-key`, `config.client_secret.0`), so it opens nowhere else.
fn context(plugin_id: &str, path: &str) -> String {
    format!("plugin:{plugin_id}:config.{path}")
}

/// The id and the config of a plugin entity, with the paths of its secret values.
fn secrets_of(kind: EntityKind, data: &mut Normalized) -> Option<(String, &mut Map<String, Value>, Vec<String>)> {
    if kind != EntityKind::Plugin {
        return None;
    }
    let id = data.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let name = data.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let config = data.get_mut("config")?.as_object_mut()?;
    let paths = encrypted_values(&name, config).into_iter().map(|(path, _)| path).collect();
    Some((id, config, paths))
}

/// The secret top-level fields of an entity and what each is sealed bound to: a keyauth credential's `key`, a
/// certificate's `key` and `key_alt` (Kong's `encrypted = true` fields).
fn sealed_fields(kind: EntityKind, data: &Normalized) -> Vec<(&'static str, String)> {
    let id = data.get("id").and_then(Value::as_str).unwrap_or_default();
    match kind {
        EntityKind::KeyAuth => vec![("key", format!("keyauth_credential:{id}:key"))],
        EntityKind::Jwt => vec![("secret", format!("jwt_secret:{id}:secret"))],
        EntityKind::BasicAuth => vec![("password", format!("basicauth_credential:{id}:password"))],
        EntityKind::Certificate => {
            vec![("key", format!("certificate:{id}:key")), ("key_alt", format!("certificate:{id}:key_alt"))]
        }
        _ => Vec::new(),
    }
}

pub fn seal(keys: &DerivedKeys, kind: EntityKind, data: &mut Normalized) {
    let fields = sealed_fields(kind, data);
    if !fields.is_empty() {
        for (field, context) in fields {
            if let Some(Value::String(clear)) = data.get_mut(field)
                && !clear.starts_with(SEALED_PREFIX)
            {
                let sealed = keys.seal(&context, clear.as_bytes());
                *clear = format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed));
            }
        }
        return;
    }
    let Some((id, config, paths)) = secrets_of(kind, data) else { return };
    for path in paths {
        if let Some(Value::String(clear)) = config_value_mut(config, &path) {
            let sealed = keys.seal(&context(&id, &path), clear.as_bytes());
            *clear = format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed));
        }
    }
}

/// Opens sealed fields; a value that does not open (another master key, tampering) is withheld as null. Returns
/// how many secret values were found stored in clear.
pub fn open(keys: &DerivedKeys, kind: EntityKind, data: &mut Normalized) -> usize {
    let fields = sealed_fields(kind, data);
    if !fields.is_empty() {
        let mut in_clear = 0;
        for (field, context) in fields {
            let Some(value) = data.get_mut(field) else { continue };
            let Some(sealed) = value.as_str().and_then(|s| s.strip_prefix(SEALED_PREFIX)) else {
                in_clear += usize::from(value.is_string());
                continue;
            };
            let clear = STANDARD
                .decode(sealed)
                .ok()
                .and_then(|b| keys.open(&context, &b).ok())
                .and_then(|b| String::from_utf8(b.to_vec()).ok());
            if clear.is_none() {
                tracing::error!(context, "a sealed key does not open with this master key");
            }
            *value = clear.map_or(Value::Null, Value::String);
        }
        return in_clear;
    }
    let Some((id, config, paths)) = secrets_of(kind, data) else { return 0 };
    let mut in_clear = 0;
    for path in paths {
        let Some(value) = config_value_mut(config, &path) else { continue };
        let Some(sealed) = value.as_str().and_then(|s| s.strip_prefix(SEALED_PREFIX)) else {
            in_clear += 1;
            continue;
        };
        let clear = STANDARD
            .decode(sealed)
            .ok()
            .and_then(|b| keys.open(&context(&id, &path), &b).ok())
            .and_then(|b| String::from_utf8(b.to_vec()).ok());
        if clear.is_none() {
            tracing::error!(plugin = id, field = %path, "a sealed plugin field does not open with this master key");
        }
        *value = clear.map_or(Value::Null, Value::String);
    }
    in_clear
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_runtime::master_key::MasterKey;
    use serde_json::json;

    fn plugin(config: Value) -> Normalized {
        json!({"id": "0190a0a0-0000-7000-8000-000000000001", "name": "oauth2-introspection", "config": config})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn seals_and_opens_secret_fields_only() {
        let keys = MasterKey::generate().derive();
        let mut data = plugin(json!({"authorization_value": "Basic c2VjcmV0", "introspection_url": "http://x/i",
            "custom_introspection_headers": {"x-api-key": "key-0123456789", "x_tenant": "tenant-42"}}));
        seal(&keys, EntityKind::Plugin, &mut data);
        let stored = serde_json::to_string(&data).unwrap();
        for secret in ["c2VjcmV0", "key-0123456789", "tenant-42"] {
            assert!(!stored.contains(secret), "{stored}");
        }
        assert!(stored.contains("http://x/i") && stored.contains("x-api-key"), "names and other fields stay readable");
        let mut copy = data.clone();
        copy["id"] = json!("0190a0a0-0000-7000-8000-000000000002");
        open(&keys, EntityKind::Plugin, &mut copy);
        assert_eq!(copy["config"]["authorization_value"], Value::Null, "bound to its plugin");
        assert_eq!(copy["config"]["custom_introspection_headers"]["x-api-key"], Value::Null);
        // Bound to the header too: values swapped between two headers do not open.
        let mut swapped = data.clone();
        let headers = swapped["config"]["custom_introspection_headers"].as_object_mut().unwrap();
        let (a, b) = (headers["x-api-key"].clone(), headers["x_tenant"].clone());
        (headers["x-api-key"], headers["x_tenant"]) = (b, a);
        open(&keys, EntityKind::Plugin, &mut swapped);
        assert_eq!(swapped["config"]["custom_introspection_headers"], json!({"x-api-key": null, "x_tenant": null}));
        assert_eq!(open(&keys, EntityKind::Plugin, &mut data), 0, "nothing was in clear");
        assert_eq!(data["config"]["authorization_value"], "Basic c2VjcmV0");
        assert_eq!(
            data["config"]["custom_introspection_headers"],
            json!({"x-api-key": "key-0123456789", "x_tenant": "tenant-42"})
        );
    }

    /// Kong's `openid-connect` keeps secrets in arrays (`client_secret`, `introspection_headers_values`): each
    /// element is sealed on its own, bound to its index, and the array keeps its shape.
    #[test]
    fn each_element_of_an_encrypted_array_is_sealed() {
        let keys = MasterKey::generate().derive();
        let mut data = json!({"id": "0190a0a0-0000-7000-8000-000000000001", "name": "openid-connect",
            "config": {"introspection_headers_values": ["hv-secret-1", null, "hv-secret-3"],
                "introspection_headers_names": ["x-one", "x-two", "x-three"]}})
        .as_object()
        .cloned()
        .unwrap();
        seal(&keys, EntityKind::Plugin, &mut data);
        let sealed = data["config"]["introspection_headers_values"].as_array().unwrap().clone();
        assert_eq!(sealed.len(), 3);
        assert!(sealed[0].as_str().unwrap().starts_with(SEALED_PREFIX) && sealed[1].is_null(), "{sealed:?}");
        let stored = serde_json::to_string(&data).unwrap();
        assert!(!stored.contains("hv-secret") && stored.contains("x-three"), "{stored}");
        let mut swapped = data.clone();
        swapped["config"]["introspection_headers_values"] = json!([sealed[2], null, sealed[0]]);
        open(&keys, EntityKind::Plugin, &mut swapped);
        assert_eq!(swapped["config"]["introspection_headers_values"], json!([null, null, null]), "bound to the index");
        assert_eq!(open(&keys, EntityKind::Plugin, &mut data), 0);
        assert_eq!(data["config"]["introspection_headers_values"], json!(["hv-secret-1", null, "hv-secret-3"]));
    }

    #[test]
    fn api_keys_are_sealed_bound_to_their_credential() {
        let keys = MasterKey::generate().derive();
        let mut data = json!({"id": "0190a0a0-0000-7000-8000-000000000001", "key": "my-api-key-123"})
            .as_object()
            .cloned()
            .unwrap();
        seal(&keys, EntityKind::KeyAuth, &mut data);
        let sealed = data["key"].as_str().unwrap().to_owned();
        assert!(sealed.starts_with(SEALED_PREFIX) && !sealed.contains("my-api-key-123"));
        seal(&keys, EntityKind::KeyAuth, &mut data);
        assert_eq!(data["key"], sealed.as_str(), "sealing twice changes nothing");
        let mut other = data.clone();
        other["id"] = json!("0190a0a0-0000-7000-8000-000000000002");
        open(&keys, EntityKind::KeyAuth, &mut other);
        assert_eq!(other["key"], Value::Null, "a key copied to another credential does not open");
        assert_eq!(open(&keys, EntityKind::KeyAuth, &mut data), 0);
        assert_eq!(data["key"], "my-api-key-123");
        assert_eq!(keys.hash_api_key("my-api-key-123").len(), 64);
        assert_ne!(keys.hash_api_key("my-api-key-123"), MasterKey::generate().derive().hash_api_key("my-api-key-123"));
    }

    /// Rows written before header values were sealed hold them in clear: they still load, are counted (the
    /// publisher warns), and the next write seals them.
    #[test]
    fn values_stored_in_clear_still_open_and_are_sealed_on_write() {
        let keys = MasterKey::generate().derive();
        let mut data = plugin(json!({"authorization_value": "Basic c2VjcmV0",
            "custom_introspection_headers": {"x-api-key": "key-0123456789"}}));
        seal(&keys, EntityKind::Plugin, &mut data);
        data["config"]["custom_introspection_headers"]["x-api-key"] = json!("key-0123456789");
        let stored = data.clone();
        let mut read = stored.clone();
        assert_eq!(open(&keys, EntityKind::Plugin, &mut read), 1);
        assert_eq!(read["config"]["custom_introspection_headers"]["x-api-key"], "key-0123456789");
        assert_eq!(read["config"]["authorization_value"], "Basic c2VjcmV0");
        seal(&keys, EntityKind::Plugin, &mut read);
        assert!(!serde_json::to_string(&read).unwrap().contains("key-0123456789"));
        assert_eq!(open(&keys, EntityKind::Plugin, &mut read), 0);
        assert_eq!(read["config"]["custom_introspection_headers"]["x-api-key"], "key-0123456789");
    }
}
