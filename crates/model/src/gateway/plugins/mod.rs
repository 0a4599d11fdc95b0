//! The plugins Gatehouse knows: their config schemas (with a default per field, as Kong's) and their traits.
//! Behaviour lives in the gateway crate, one folder per plugin; schemas live here so the control plane and the
//! CLI can validate configurations without the data plane. This module knows configs only: the plugin entity
//! around them (`name`, scopes, `protocols`, …) is `entities`' business, which depends on this module and not
//! the other way round.

pub mod oauth2_introspection;
pub mod request_size_limiting;
pub mod request_termination;
pub mod request_transformer;
pub mod response_transformer;

use serde_json::{Map, Value};

use super::schema::{Field, Kind};

/// What the control plane needs to know about a plugin: each plugin's module declares one (`INFO`), and the
/// gateway's registry pairs the same value with the plugin's handler.
#[derive(Debug, Clone, Copy)]
pub struct PluginInfo {
    pub name: &'static str,
    /// Kong's priority: plugins run in descending order.
    pub priority: i32,
    pub consumer_scope: bool,
    pub config: fn() -> Vec<Field>,
    /// Kong's entity checks across fields of the (normalised) config, run once every field is valid.
    pub check: fn(&Map<String, Value>) -> Result<(), String>,
}

/// No checks across fields.
pub fn no_check(_: &Map<String, Value>) -> Result<(), String> {
    Ok(())
}

/// Every plugin the control plane accepts. The gateway's registry must hold the same set (a test there checks).
pub const PLUGINS: &[&PluginInfo] = &[
    &oauth2_introspection::INFO,
    &request_termination::INFO,
    &request_size_limiting::INFO,
    &request_transformer::INFO,
    &response_transformer::INFO,
];

pub fn info(name: &str) -> Option<&'static PluginInfo> {
    PLUGINS.iter().copied().find(|p| p.name == name)
}

pub fn config_fields(name: &str) -> Option<Vec<Field>> {
    info(name).map(|p| (p.config)())
}

pub fn allows_consumer_scope(name: &str) -> bool {
    info(name).is_none_or(|p| p.consumer_scope)
}

/// The secret strings of a plugin's `config`, each with its path under `config`: the value of every field marked
/// encrypted (`authorization_value`), and every value of a map whose values are (`custom_introspection_headers.<name>`).
/// Whatever is not a string (an unset field) is left out.
pub fn encrypted_values<'a>(name: &str, config: &'a Map<String, Value>) -> Vec<(String, &'a str)> {
    let Some(fields) = config_fields(name) else { return Vec::new() };
    let mut found = Vec::new();
    for field in fields {
        let Some(value) = config.get(field.name) else { continue };
        match (&field.kind, value) {
            (_, Value::String(text)) if field.encrypted => found.push((field.name.to_owned(), text.as_str())),
            (Kind::Map { values, .. }, Value::Object(map)) if values.encrypted => {
                found.extend(map.iter().filter_map(|(key, v)| Some((format!("{}.{key}", field.name), v.as_str()?))));
            }
            _ => {}
        }
    }
    found
}

/// The value at a path [`encrypted_values`] gave: a field, or `field.key` for a map's value (field names have no
/// dot, so the first one separates them whatever the key holds).
pub fn config_value_mut<'a>(config: &'a mut Map<String, Value>, path: &str) -> Option<&'a mut Value> {
    match path.split_once('.') {
        Some((field, key)) => config.get_mut(field)?.as_object_mut()?.get_mut(key),
        None => config.get_mut(path),
    }
}

/// Gatehouse-only config fields and their defaults (`negative_ttl`): dumps leave them out while they have them,
/// so a dump reads like Kong's.
pub fn gatehouse_only_defaults(name: &str) -> Vec<(&'static str, Value)> {
    config_fields(name)
        .map(|f| f.into_iter().filter(|f| f.gatehouse_only).filter_map(|f| Some((f.name, f.default?))).collect())
        .unwrap_or_default()
}
