//! Auth servers (`/v1/auth-servers`).

use serde::Serialize;
use serde_json::{Map, Value};

use super::{DESCRIPTION_LEN, NAME_LEN, SigningAlgorithm};
use crate::body::{BodyReader, Len, Presence, string_within};
use crate::issuer_url::IssuerUrlTemplate;
use crate::labels::{LabelsPatch, apply_labels_patch};
use crate::listing::{CollectionSpec, Field, FilterKind};
use crate::problem::{InvalidParameter, Rule};
use crate::{AuthServerId, Labels, Timestamp};

pub const AUDIENCE_LEN: Len = Len::new(1, 1024);
pub const MAX_TRUSTED_ORIGINS: usize = 16;

pub const COLLECTION: CollectionSpec = CollectionSpec {
    filters: &[
        (Field::Name, FilterKind::Text),
        (Field::Description, FilterKind::Text),
        (Field::Audience, FilterKind::Text),
        (Field::Id, FilterKind::Equals),
        (Field::Labels, FilterKind::Label),
    ],
    sorts: &[Field::CreatedAt, Field::UpdatedAt, Field::Name, Field::Audience],
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthServer {
    pub id: AuthServerId,
    /// The random part of the issuer URL.
    pub issuer_key: String,
    pub name: String,
    pub audience: String,
    pub description: String,
    pub signing_algorithm: SigningAlgorithm,
    pub labels: Labels,
    pub trusted_origins: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
pub struct NewAuthServer {
    pub name: String,
    pub audience: String,
    #[schema(required = false)]
    pub description: String,
    #[schema(required = false)]
    pub signing_algorithm: SigningAlgorithm,
    #[schema(required = false)]
    pub labels: Labels,
    #[schema(required = false)]
    pub trusted_origins: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, utoipa::ToSchema)]
pub struct AuthServerPatch {
    #[schema(nullable = false)]
    pub name: Option<String>,
    #[schema(nullable = false)]
    pub audience: Option<String>,
    #[schema(nullable = false)]
    pub description: Option<String>,
    #[schema(nullable = false)]
    pub signing_algorithm: Option<SigningAlgorithm>,
    /// A `null` value removes that label; `null` for the whole map removes them all.
    #[schema(value_type = Option<std::collections::HashMap<String, Option<String>>>)]
    pub labels: Presence<LabelsPatch>,
    #[schema(nullable = false)]
    pub trusted_origins: Option<Vec<String>>,
}

const FIELDS: &[&str] = &["name", "audience", "description", "signing_algorithm", "labels", "trusted_origins"];

impl NewAuthServer {
    pub fn from_body(obj: &Map<String, Value>) -> Result<Self, Vec<InvalidParameter>> {
        let mut r = BodyReader::new(obj, FIELDS, &[]);
        let name = r.required_string("name", NAME_LEN);
        let audience = r.required_string("audience", AUDIENCE_LEN);
        let description = r.string("description", DESCRIPTION_LEN);
        let signing_algorithm = r.choice("signing_algorithm");
        let labels = r.labels("labels");
        let trusted_origins = trusted_origins(&mut r);
        r.finish()?;
        Ok(Self {
            name: name.unwrap_or_default(),
            audience: audience.unwrap_or_default(),
            description: description.unwrap_or_default(),
            signing_algorithm: signing_algorithm.unwrap_or(SigningAlgorithm::RS256),
            labels: labels.unwrap_or_default(),
            trusted_origins: trusted_origins.unwrap_or_default(),
        })
    }
}

impl AuthServerPatch {
    pub fn from_body(obj: &Map<String, Value>) -> Result<Self, Vec<InvalidParameter>> {
        let mut r = BodyReader::new(obj, FIELDS, &[]);
        let patch = Self {
            name: r.string("name", NAME_LEN),
            audience: r.string("audience", AUDIENCE_LEN),
            description: r.string("description", DESCRIPTION_LEN),
            signing_algorithm: r.choice("signing_algorithm"),
            labels: r.labels_patch("labels"),
            trusted_origins: trusted_origins(&mut r),
        };
        r.finish()?;
        Ok(patch)
    }

    pub fn apply(&self, current: &AuthServer, now: Timestamp) -> Result<AuthServer, Vec<InvalidParameter>> {
        let labels = apply_labels_patch(&current.labels, &self.labels).map_err(|e| vec![e])?;
        Ok(AuthServer {
            name: self.name.clone().unwrap_or_else(|| current.name.clone()),
            audience: self.audience.clone().unwrap_or_else(|| current.audience.clone()),
            description: self.description.clone().unwrap_or_else(|| current.description.clone()),
            signing_algorithm: self.signing_algorithm.unwrap_or(current.signing_algorithm),
            labels,
            trusted_origins: self.trusted_origins.clone().unwrap_or_else(|| current.trusted_origins.clone()),
            updated_at: now,
            ..current.clone()
        })
    }
}

/// `trusted_origins` are CORS origins; they are stored in origin form (`scheme://host[:port]`) because browsers
/// send exactly that in `Origin`, so a stored path could never match.
fn trusted_origins(r: &mut BodyReader<'_>) -> Option<Vec<String>> {
    r.array("trusted_origins", MAX_TRUSTED_ORIGINS, true, |field, v| {
        let s = string_within(field, v, Len::new(1, 2048))?;
        let bad = || {
            InvalidParameter::new(field, Rule::Invalid, "must be an http(s) origin such as https://app.example.com")
                .in_body()
        };
        let url = url::Url::parse(&s).map_err(|_| bad())?;
        let origin = url.origin();
        let path_ok = url.path() == "/" || url.path().is_empty();
        if !matches!(url.scheme(), "http" | "https")
            || !origin.is_tuple()
            || !path_ok
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
        {
            return Err(bad());
        }
        Ok(origin.ascii_serialization())
    })
}

/// The management API's view of an auth server, with its computed URLs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthServerView<'a> {
    pub id: AuthServerId,
    pub name: &'a str,
    pub description: &'a str,
    pub audience: &'a str,
    pub signing_algorithm: SigningAlgorithm,
    pub issuer: String,
    pub metadata_uri: String,
    pub jwks_uri: String,
    pub labels: &'a Labels,
    pub trusted_origins: &'a [String],
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl AuthServer {
    pub fn issuer(&self, template: &IssuerUrlTemplate) -> String {
        template.issuer(&self.issuer_key)
    }

    pub fn view<'a>(&'a self, template: &IssuerUrlTemplate) -> AuthServerView<'a> {
        let issuer = self.issuer(template);
        AuthServerView {
            id: self.id,
            name: &self.name,
            description: &self.description,
            audience: &self.audience,
            signing_algorithm: self.signing_algorithm,
            metadata_uri: format!("{issuer}/.well-known/openid-configuration"),
            jwks_uri: format!("{issuer}/.well-known/jwks"),
            issuer,
            labels: &self.labels,
            trusted_origins: &self.trusted_origins,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn tutorial_body_parses_with_defaults() {
        let b = obj(json!({"name": "Appointments Dev", "audience": "http://myhttpbin.dev",
            "description": "Auth server for the Appointment dev environment"}));
        let s = NewAuthServer::from_body(&b).unwrap();
        assert_eq!(s.signing_algorithm, SigningAlgorithm::RS256);
        assert!(s.labels.0.is_empty() && s.trusted_origins.is_empty());
    }

    #[test]
    fn trusted_origins_are_normalised_origins() {
        let b = obj(
            json!({"name": "a", "audience": "b", "trusted_origins": ["https://App.example.com/", "http://localhost:3000"]}),
        );
        assert_eq!(
            NewAuthServer::from_body(&b).unwrap().trusted_origins,
            vec!["https://app.example.com", "http://localhost:3000"]
        );
        for bad in ["https://a.com/path", "ftp://a.com", "https://a.com?q", "a.com", "https://u@a.com"] {
            let b = obj(json!({"name": "a", "audience": "b", "trusted_origins": [bad]}));
            assert!(NewAuthServer::from_body(&b).is_err(), "{bad}");
        }
        let b = obj(json!({"name": "a", "audience": "b", "trusted_origins": ["https://a.com", "https://a.com/"]}));
        assert!(NewAuthServer::from_body(&b).is_err(), "duplicates after normalising");
    }

    #[test]
    fn missing_and_wrong_fields_are_all_reported() {
        let b = obj(json!({"signing_algorithm": "HS256", "issuer": "x"}));
        let errors = NewAuthServer::from_body(&b).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["issuer", "name", "audience", "signing_algorithm"]);
    }
}
