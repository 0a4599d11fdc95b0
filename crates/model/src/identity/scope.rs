//! Scopes (`/v1/auth-servers/{id}/scopes`).

use serde::Serialize;
use serde_json::{Map, Value};

use super::DESCRIPTION_LEN;
use crate::body::{BodyReader, Len};
use crate::listing::{CollectionSpec, Field, FilterKind};
use crate::problem::{InvalidParameter, Rule};
use crate::{AuthServerId, ScopeId, Timestamp};

/// Scope names are what clients send in `scope=`, a space-delimited list, so they must be RFC 6749 §3.3
/// scope-tokens: printable ASCII without space, `"` or `\`.
pub const SCOPE_NAME_LEN: Len = Len::new(1, 128);

pub const COLLECTION: CollectionSpec = CollectionSpec {
    filters: &[(Field::Name, FilterKind::Text), (Field::Id, FilterKind::Equals)],
    sorts: &[Field::CreatedAt, Field::UpdatedAt, Field::Name],
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Scope {
    pub id: ScopeId,
    #[serde(skip)]
    pub auth_server_id: AuthServerId,
    pub name: String,
    pub description: String,
    pub default: bool,
    pub include_in_metadata: bool,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
pub struct NewScope {
    pub name: String,
    #[schema(required = false)]
    pub description: String,
    #[schema(required = false)]
    pub default: bool,
    #[schema(required = false)]
    pub include_in_metadata: bool,
    #[schema(required = false)]
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, utoipa::ToSchema)]
pub struct ScopePatch {
    #[schema(nullable = false)]
    pub name: Option<String>,
    #[schema(nullable = false)]
    pub description: Option<String>,
    #[schema(nullable = false)]
    pub default: Option<bool>,
    #[schema(nullable = false)]
    pub include_in_metadata: Option<bool>,
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
}

const FIELDS: &[&str] = &["name", "description", "default", "include_in_metadata", "enabled"];

pub fn is_scope_token(name: &str) -> bool {
    name.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

fn scope_name(r: &mut BodyReader<'_>, required: bool) -> Option<String> {
    let name = if required { r.required_string("name", SCOPE_NAME_LEN) } else { r.string("name", SCOPE_NAME_LEN) };
    match name {
        Some(n) if !is_scope_token(&n) => {
            r.error(
                InvalidParameter::new("name", Rule::MatchesRegex, "must be printable ASCII without spaces, \" or \\")
                    .in_body(),
            );
            None
        }
        other => other,
    }
}

impl NewScope {
    pub fn from_body(obj: &Map<String, Value>) -> Result<Self, Vec<InvalidParameter>> {
        let mut r = BodyReader::new(obj, FIELDS, &[]);
        let name = scope_name(&mut r, true);
        let description = r.string("description", DESCRIPTION_LEN);
        let default = r.boolean("default");
        let include_in_metadata = r.boolean("include_in_metadata");
        let enabled = r.boolean("enabled");
        r.finish()?;
        Ok(Self {
            name: name.unwrap_or_default(),
            description: description.unwrap_or_default(),
            default: default.unwrap_or(false),
            include_in_metadata: include_in_metadata.unwrap_or(false),
            enabled: enabled.unwrap_or(true),
        })
    }
}

impl ScopePatch {
    pub fn from_body(obj: &Map<String, Value>) -> Result<Self, Vec<InvalidParameter>> {
        let mut r = BodyReader::new(obj, FIELDS, &[]);
        let patch = Self {
            name: scope_name(&mut r, false),
            description: r.string("description", DESCRIPTION_LEN),
            default: r.boolean("default"),
            include_in_metadata: r.boolean("include_in_metadata"),
            enabled: r.boolean("enabled"),
        };
        r.finish()?;
        Ok(patch)
    }

    pub fn apply(&self, current: &Scope, now: Timestamp) -> Scope {
        Scope {
            name: self.name.clone().unwrap_or_else(|| current.name.clone()),
            description: self.description.clone().unwrap_or_else(|| current.description.clone()),
            default: self.default.unwrap_or(current.default),
            include_in_metadata: self.include_in_metadata.unwrap_or(current.include_in_metadata),
            enabled: self.enabled.unwrap_or(current.enabled),
            updated_at: now,
            ..current.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tutorial_scope_and_name_rules() {
        let b = json!({"name": "my-scope", "description": "Scope to test Kong Identity", "default": false,
            "include_in_metadata": false, "enabled": true});
        let s = NewScope::from_body(b.as_object().unwrap()).unwrap();
        assert_eq!(s.name, "my-scope");
        assert!(s.enabled);
        for bad in ["a b", "a\"b", "a\\b", "é", ""] {
            assert!(NewScope::from_body(json!({"name": bad}).as_object().unwrap()).is_err(), "{bad}");
        }
        assert!(NewScope::from_body(json!({"name": "orders:read"}).as_object().unwrap()).is_ok());
    }
}
