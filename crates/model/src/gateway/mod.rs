//! Kong Gateway's entities (services, routes, consumers, plugins) and Konnect control planes: schemas, Kong's
//! validation rules and the `url` shorthand, as pure code so the Admin API, Konnect's core-entities API and
//! offline file validation all apply the same rules.

pub mod cluster;
pub mod control_plane;
pub mod entities;
pub mod form;
pub mod plugins;
pub mod public_key;
pub mod route_regex;
pub mod schema;
pub mod snapshot;
pub mod upstreams;

pub use entities::{EntityKind, Normalized, StoredEntity, validate_entity};

/// A canonical, hyphenated UUID.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}
