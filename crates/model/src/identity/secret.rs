//! Client secrets (`/v1/auth-servers/{id}/clients/{clientId}/secrets`): several per client so they can be rotated.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::body::{BodyReader, Presence};
use crate::listing::{CollectionSpec, Field, FilterKind};
use crate::problem::{InvalidParameter, Rule};
use crate::{AuthServerId, ClientId, ClientSecretId, SecretHash, SecretString, Timestamp};

/// Generated secrets: 32 characters of `[A-Za-z0-9]` (about 190 bits).
pub const GENERATED_SECRET_LEN: usize = 32;
/// Chosen secrets must be at least as long as Kong's generated ones (24), so imports work and guesses do not.
pub const MIN_CHOSEN_SECRET_LEN: usize = 24;
pub const MAX_CHOSEN_SECRET_LEN: usize = 256;
/// Two enabled secrets allow a rotation with overlap; more would only widen what a leak exposes.
pub const MAX_ENABLED_SECRETS: usize = 2;
pub const MAX_SECRETS: usize = 10;

pub const COLLECTION: CollectionSpec = CollectionSpec {
    filters: &[(Field::Id, FilterKind::Equals), (Field::Enabled, FilterKind::Boolean)],
    sorts: &[Field::CreatedAt, Field::UpdatedAt],
};

/// A stored secret: only its keyed hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClientSecret {
    pub id: ClientSecretId,
    #[serde(skip)]
    pub auth_server_id: AuthServerId,
    #[serde(skip)]
    pub client_id: ClientId,
    #[serde(skip)]
    pub hash: SecretHash,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The create response: the item plus the secret, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedSecretView<'a> {
    #[serde(flatten)]
    #[schema(value_type = ClientSecret)]
    pub item: &'a ClientSecret,
    pub secret: &'a str,
}

/// A caller-chosen secret: 24–256 printable ASCII characters without spaces, so it survives form encoding,
/// Basic auth and shells unchanged. The value never appears in an error.
pub fn chosen_secret(field: &str, v: &Value) -> Result<SecretString, InvalidParameter> {
    let Value::String(s) = v else {
        return Err(InvalidParameter::new(field, Rule::IsString, "must be a string").in_body());
    };
    if s.len() < MIN_CHOSEN_SECRET_LEN {
        return Err(InvalidParameter::new(
            field,
            Rule::MinLength,
            format!("must have at least {MIN_CHOSEN_SECRET_LEN} characters"),
        )
        .with_minimum(MIN_CHOSEN_SECRET_LEN as i64)
        .in_body());
    }
    if s.len() > MAX_CHOSEN_SECRET_LEN {
        return Err(InvalidParameter::new(
            field,
            Rule::MaxLength,
            format!("must have at most {MAX_CHOSEN_SECRET_LEN} characters"),
        )
        .with_maximum(MAX_CHOSEN_SECRET_LEN as i64)
        .in_body());
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidParameter::new(field, Rule::Invalid, "must be printable ASCII without spaces").in_body());
    }
    Ok(SecretString::new(s.clone()))
}

/// `POST …/secrets`: `{ "secret"?: string, "enabled"?: bool }`.
#[derive(Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
pub struct NewSecret {
    #[schema(value_type = String, required = false, min_length = 24, max_length = 256)]
    pub secret: Option<SecretString>,
    #[schema(required = false)]
    pub enabled: bool,
}

impl NewSecret {
    pub fn from_body(obj: &Map<String, Value>) -> Result<Self, Vec<InvalidParameter>> {
        let mut r = BodyReader::new(obj, &["secret", "enabled"], &[]);
        let secret = match r.raw("secret") {
            Presence::Absent => None,
            Presence::Null => {
                r.error(InvalidParameter::new("secret", Rule::IsString, "must be a string").in_body());
                None
            }
            Presence::Value(v) => chosen_secret("secret", v).map_err(|e| r.error(e)).ok(),
        };
        let enabled = r.boolean("enabled");
        r.finish()?;
        Ok(Self { secret, enabled: enabled.unwrap_or(true) })
    }
}

/// `PATCH …/secrets/{id}`: `{ "enabled": bool }`.
pub fn secret_patch_from_body(obj: &Map<String, Value>) -> Result<bool, Vec<InvalidParameter>> {
    let mut r = BodyReader::new(obj, &["enabled"], &[]);
    let enabled = r.boolean("enabled");
    let enabled = r.required("enabled", enabled);
    r.finish()?;
    Ok(enabled.unwrap_or(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chosen_secrets() {
        assert!(chosen_secret("s", &json!("a".repeat(24))).is_ok());
        for bad in [json!("a".repeat(23)), json!("a".repeat(257)), json!(format!("{} b", "a".repeat(24))), json!(5)] {
            let e = chosen_secret("s", &bad).unwrap_err();
            assert!(!e.reason.contains("aaaa"), "the value never appears in an error");
        }
    }

    #[test]
    fn secret_bodies() {
        assert_eq!(
            NewSecret::from_body(json!({}).as_object().unwrap()).unwrap(),
            NewSecret { secret: None, enabled: true }
        );
        assert!(NewSecret::from_body(json!({"secret": "short"}).as_object().unwrap()).is_err());
        assert!(secret_patch_from_body(json!({}).as_object().unwrap()).is_err());
        assert_eq!(secret_patch_from_body(json!({"enabled": false}).as_object().unwrap()), Ok(false));
    }
}
