//! The plugins Gatehouse knows: their config schemas (with a default per field, as Kong's) and their traits.
//! Behaviour lives in the gateway crate, one folder per plugin; schemas live here so the control plane and the
//! CLI can validate configurations without the data plane.

pub mod oauth2_introspection;
pub mod request_termination;

use serde_json::{Value, json};

use super::entities::plugin_fields;
use super::schema::{Field, describe_fields};

/// What the control plane needs to know about a plugin.
#[derive(Debug, Clone, Copy)]
pub struct PluginInfo {
    pub name: &'static str,
    /// Kong's priority: plugins run in descending order.
    pub priority: i32,
    pub consumer_scope: bool,
    pub config: fn() -> Vec<Field>,
}

pub const PLUGINS: &[PluginInfo] = &[
    PluginInfo {
        name: oauth2_introspection::NAME,
        priority: oauth2_introspection::PRIORITY,
        consumer_scope: false,
        config: oauth2_introspection::config_fields,
    },
    PluginInfo {
        name: request_termination::NAME,
        priority: request_termination::PRIORITY,
        consumer_scope: true,
        config: request_termination::config_fields,
    },
];

pub fn info(name: &str) -> Option<&'static PluginInfo> {
    PLUGINS.iter().find(|p| p.name == name)
}

pub fn config_fields(name: &str) -> Option<Vec<Field>> {
    info(name).map(|p| (p.config)())
}

pub fn allows_consumer_scope(name: &str) -> bool {
    info(name).is_none_or(|p| p.consumer_scope)
}

/// `GET /schemas/plugins/{name}`.
pub fn schema_document(name: &str) -> Option<Value> {
    let config = config_fields(name)?;
    let visible: Vec<Field> = config.into_iter().filter(|f| !f.gatehouse_only).collect();
    Some(json!({ "fields": describe_fields(&plugin_fields(Some(visible))) }))
}

/// Dotted paths of the config fields stored encrypted (`authorization_value`).
pub fn encrypted_config_fields(name: &str) -> Vec<&'static str> {
    config_fields(name).map(|f| f.iter().filter(|f| f.encrypted).map(|f| f.name).collect()).unwrap_or_default()
}

/// Gatehouse-only config fields and their defaults (`negative_ttl`): dumps leave them out while they have them,
/// so a dump reads like Kong's.
pub fn gatehouse_only_defaults(name: &str) -> Vec<(&'static str, Value)> {
    config_fields(name)
        .map(|f| f.into_iter().filter(|f| f.gatehouse_only).filter_map(|f| Some((f.name, f.default?))).collect())
        .unwrap_or_default()
}
