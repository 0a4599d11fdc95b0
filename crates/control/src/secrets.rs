//! Secret plugin fields (`authorization_value`) are sealed with the master key before they are stored and opened
//! when read; the APIs return them in clear, as Kong returns `encrypted` fields.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use gatehouse_model::gateway::plugins::encrypted_config_fields;
use gatehouse_model::gateway::{EntityKind, Normalized};
use gatehouse_runtime::master_key::DerivedKeys;

const SEALED_PREFIX: &str = "gatehouse:sealed:v1:";

fn context(plugin_id: &str, field: &str) -> String {
    format!("plugin:{plugin_id}:config.{field}")
}

fn fields_of(kind: EntityKind, data: &Normalized) -> Vec<&'static str> {
    if kind != EntityKind::Plugin {
        return Vec::new();
    }
    data.get("name").and_then(Value::as_str).map(encrypted_config_fields).unwrap_or_default()
}

pub fn seal(keys: &DerivedKeys, kind: EntityKind, data: &mut Normalized) {
    let id = data.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    for field in fields_of(kind, data) {
        if let Some(Value::String(clear)) = data.get_mut("config").and_then(|c| c.get_mut(field)) {
            let sealed = keys.seal(&context(&id, field), clear.as_bytes());
            *clear = format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed));
        }
    }
}

/// Opens sealed fields; a value that does not open (another master key, tampering) is withheld as null.
pub fn open(keys: &DerivedKeys, kind: EntityKind, data: &mut Normalized) {
    let id = data.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    for field in fields_of(kind, data) {
        if let Some(value) = data.get_mut("config").and_then(|c| c.get_mut(field))
            && let Some(sealed) = value.as_str().and_then(|s| s.strip_prefix(SEALED_PREFIX))
        {
            let clear = STANDARD
                .decode(sealed)
                .ok()
                .and_then(|b| keys.open(&context(&id, field), &b).ok())
                .and_then(|b| String::from_utf8(b.to_vec()).ok());
            if clear.is_none() {
                tracing::error!(plugin = id, field, "a sealed plugin field does not open with this master key");
            }
            *value = clear.map_or(Value::Null, Value::String);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_runtime::master_key::MasterKey;
    use serde_json::json;

    #[test]
    fn seals_and_opens_secret_fields_only() {
        let keys = MasterKey::generate().derive();
        let mut data = json!({"id": "0190a0a0-0000-7000-8000-000000000001", "name": "oauth2-introspection",
            "config": {"authorization_value": "Basic c2VjcmV0", "introspection_url": "http://x/i"}})
        .as_object()
        .cloned()
        .unwrap();
        seal(&keys, EntityKind::Plugin, &mut data);
        let stored = serde_json::to_string(&data).unwrap();
        assert!(!stored.contains("c2VjcmV0"));
        assert!(stored.contains("http://x/i"));
        let mut copy = data.clone();
        copy["id"] = json!("0190a0a0-0000-7000-8000-000000000002");
        open(&keys, EntityKind::Plugin, &mut copy);
        assert_eq!(copy["config"]["authorization_value"], Value::Null, "bound to its plugin");
        open(&keys, EntityKind::Plugin, &mut data);
        assert_eq!(data["config"]["authorization_value"], "Basic c2VjcmV0");
    }
}
