//! Claims (`/v1/auth-servers/{id}/claims`).

use serde::Serialize;
use serde_json::{Map, Value};

use super::scope_id_item;
use crate::body::{BodyReader, Len};
use crate::listing::{CollectionSpec, Field, FilterKind};
use crate::problem::{InvalidParameter, Rule};
use crate::{AuthServerId, ClaimId, ScopeId, Timestamp};

pub const CLAIM_NAME_LEN: Len = Len::new(1, 128);
pub const CLAIM_VALUE_LEN: Len = Len::new(1, 4096);
pub const MAX_INCLUDE_IN_SCOPES: usize = 100;

/// Registered JWT claims and the names introspection answers carry: a custom claim with one of these names would
/// overwrite what resource servers rely on (`sub`, `client_id`, `scope`, `active`), so they are refused.
pub const RESERVED_CLAIM_NAMES: &[&str] =
    &["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "active", "token_type"];

pub const COLLECTION: CollectionSpec = CollectionSpec {
    filters: &[(Field::Name, FilterKind::Text), (Field::Id, FilterKind::Equals)],
    sorts: &[Field::CreatedAt, Field::UpdatedAt, Field::Name],
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Claim {
    pub id: ClaimId,
    #[serde(skip)]
    pub auth_server_id: AuthServerId,
    pub name: String,
    pub value: String,
    pub include_in_token: bool,
    pub include_in_all_scopes: bool,
    pub include_in_scopes: Vec<ScopeId>,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
pub struct NewClaim {
    pub name: String,
    pub value: String,
    #[schema(required = false)]
    pub include_in_token: bool,
    #[schema(required = false)]
    pub include_in_all_scopes: bool,
    #[schema(required = false)]
    pub include_in_scopes: Vec<ScopeId>,
    #[schema(required = false)]
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, utoipa::ToSchema)]
pub struct ClaimPatch {
    #[schema(nullable = false)]
    pub name: Option<String>,
    #[schema(nullable = false)]
    pub value: Option<String>,
    #[schema(nullable = false)]
    pub include_in_token: Option<bool>,
    #[schema(nullable = false)]
    pub include_in_all_scopes: Option<bool>,
    #[schema(nullable = false)]
    pub include_in_scopes: Option<Vec<ScopeId>>,
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
}

const FIELDS: &[&str] = &["name", "value", "include_in_token", "include_in_all_scopes", "include_in_scopes", "enabled"];

fn claim_name(r: &mut BodyReader<'_>, required: bool) -> Option<String> {
    let name = if required { r.required_string("name", CLAIM_NAME_LEN) } else { r.string("name", CLAIM_NAME_LEN) };
    match name {
        Some(n) if RESERVED_CLAIM_NAMES.contains(&n.as_str()) => {
            r.error(InvalidParameter::new("name", Rule::Invalid, format!("[{n}] is a reserved claim name")).in_body());
            None
        }
        other => other,
    }
}

fn include_in_scopes(r: &mut BodyReader<'_>) -> Option<Vec<ScopeId>> {
    r.array("include_in_scopes", MAX_INCLUDE_IN_SCOPES, true, scope_id_item)
}

impl NewClaim {
    pub fn from_body(obj: &Map<String, Value>) -> Result<Self, Vec<InvalidParameter>> {
        let mut r = BodyReader::new(obj, FIELDS, &[]);
        let name = claim_name(&mut r, true);
        let value = r.required_string("value", CLAIM_VALUE_LEN);
        let include_in_token = r.boolean("include_in_token");
        let include_in_all_scopes = r.boolean("include_in_all_scopes");
        let scopes = include_in_scopes(&mut r);
        let enabled = r.boolean("enabled");
        r.finish()?;
        Ok(Self {
            name: name.unwrap_or_default(),
            value: value.unwrap_or_default(),
            include_in_token: include_in_token.unwrap_or(false),
            include_in_all_scopes: include_in_all_scopes.unwrap_or(false),
            include_in_scopes: scopes.unwrap_or_default(),
            enabled: enabled.unwrap_or(true),
        })
    }
}

impl ClaimPatch {
    pub fn from_body(obj: &Map<String, Value>) -> Result<Self, Vec<InvalidParameter>> {
        let mut r = BodyReader::new(obj, FIELDS, &[]);
        let patch = Self {
            name: claim_name(&mut r, false),
            value: r.string("value", CLAIM_VALUE_LEN),
            include_in_token: r.boolean("include_in_token"),
            include_in_all_scopes: r.boolean("include_in_all_scopes"),
            include_in_scopes: include_in_scopes(&mut r),
            enabled: r.boolean("enabled"),
        };
        r.finish()?;
        Ok(patch)
    }

    pub fn apply(&self, current: &Claim, now: Timestamp) -> Claim {
        Claim {
            name: self.name.clone().unwrap_or_else(|| current.name.clone()),
            value: self.value.clone().unwrap_or_else(|| current.value.clone()),
            include_in_token: self.include_in_token.unwrap_or(current.include_in_token),
            include_in_all_scopes: self.include_in_all_scopes.unwrap_or(current.include_in_all_scopes),
            include_in_scopes: self.include_in_scopes.clone().unwrap_or_else(|| current.include_in_scopes.clone()),
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
    fn tutorial_claim() {
        let sid = ScopeId::new();
        let b = json!({"name": "test-claim", "value": "test", "include_in_token": true,
            "include_in_all_scopes": false, "include_in_scopes": [sid.to_string()], "enabled": true});
        let c = NewClaim::from_body(b.as_object().unwrap()).unwrap();
        assert_eq!(c.include_in_scopes, vec![sid]);
    }

    #[test]
    fn reserved_names_and_bad_scope_ids() {
        for name in RESERVED_CLAIM_NAMES {
            assert!(NewClaim::from_body(json!({"name": name, "value": "x"}).as_object().unwrap()).is_err());
        }
        let e =
            NewClaim::from_body(json!({"name": "a", "value": "x", "include_in_scopes": ["nope"]}).as_object().unwrap())
                .unwrap_err();
        assert_eq!(e[0].rule, Some(Rule::IsUuid));
        assert_eq!(e[0].field, "include_in_scopes[0]");
    }
}
