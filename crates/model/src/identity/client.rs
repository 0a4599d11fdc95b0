//! Clients (`/v1/auth-servers/{id}/clients`): the machine-to-machine credentials.

use serde::Serialize;
use serde_json::{Map, Value};

use super::secret::chosen_secret;
use super::{NAME_LEN, scope_id_item, uri_item};
use crate::body::{BodyReader, Choice, Presence, choice_of};
use crate::labels::{LabelsPatch, apply_labels_patch};
use crate::listing::{CollectionSpec, Field, FilterKind};
use crate::problem::{InvalidParameter, Rule};
use crate::{AuthServerId, ClientId, Labels, ScopeId, SecretString, Timestamp};

pub const MIN_TOKEN_DURATION: i64 = 60;
pub const MAX_TOKEN_DURATION: i64 = 2_592_000;
pub const DEFAULT_TOKEN_DURATION: i64 = 300;
pub const MAX_REDIRECT_URIS: usize = 32;
pub const MAX_ALLOW_SCOPES: usize = 1000;

pub const COLLECTION: CollectionSpec = CollectionSpec {
    filters: &[(Field::Name, FilterKind::Text), (Field::Id, FilterKind::Equals), (Field::Labels, FilterKind::Label)],
    sorts: &[Field::CreatedAt, Field::UpdatedAt, Field::Name],
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    Implicit,
    ClientCredentials,
}

impl Choice for GrantType {
    const ALL: &'static [Self] = &[Self::Implicit, Self::ClientCredentials];
    fn as_str(self) -> &'static str {
        match self {
            Self::Implicit => "implicit",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseType {
    None,
    Token,
    Code,
    IdToken,
}

impl Choice for ResponseType {
    const ALL: &'static [Self] = &[Self::None, Self::Token, Self::Code, Self::IdToken];
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Token => "token",
            Self::Code => "code",
            Self::IdToken => "id_token",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    ClientSecretPost,
    None,
}

impl Choice for TokenEndpointAuthMethod {
    const ALL: &'static [Self] = &[Self::ClientSecretPost, Self::None];
    fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Client {
    pub id: ClientId,
    #[serde(skip)]
    pub auth_server_id: AuthServerId,
    pub name: String,
    pub grant_types: Vec<GrantType>,
    pub response_types: Vec<ResponseType>,
    pub redirect_uris: Vec<String>,
    pub login_uri: Option<String>,
    pub access_token_duration: i64,
    pub id_token_duration: i64,
    pub allow_all_scopes: bool,
    pub allow_scopes: Vec<ScopeId>,
    pub labels: Labels,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The body of a create (POST) or replace (PUT).
#[derive(Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
pub struct ClientInput {
    pub name: String,
    pub grant_types: Vec<GrantType>,
    #[schema(required = false)]
    pub response_types: Vec<ResponseType>,
    #[schema(required = false)]
    pub redirect_uris: Vec<String>,
    #[schema(required = false)]
    pub login_uri: Option<String>,
    #[schema(required = false)]
    pub access_token_duration: i64,
    #[schema(required = false)]
    pub id_token_duration: i64,
    #[schema(required = false)]
    pub allow_all_scopes: bool,
    #[schema(required = false)]
    pub allow_scopes: Vec<ScopeId>,
    #[schema(required = false)]
    pub labels: Labels,
    #[schema(required = false)]
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// Required on PUT, refused on POST (the server generates it).
    #[schema(required = false)]
    #[schema(value_type = String)]
    pub client_secret: Option<SecretString>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, utoipa::ToSchema)]
pub struct ClientPatch {
    #[schema(nullable = false)]
    pub name: Option<String>,
    #[schema(nullable = false)]
    pub grant_types: Option<Vec<GrantType>>,
    #[schema(nullable = false)]
    pub response_types: Option<Vec<ResponseType>>,
    #[schema(nullable = false)]
    pub redirect_uris: Option<Vec<String>>,
    #[schema(value_type = Option<String>)]
    pub login_uri: Presence<String>,
    #[schema(nullable = false)]
    pub access_token_duration: Option<i64>,
    #[schema(nullable = false)]
    pub id_token_duration: Option<i64>,
    #[schema(nullable = false)]
    pub allow_all_scopes: Option<bool>,
    #[schema(nullable = false)]
    pub allow_scopes: Option<Vec<ScopeId>>,
    /// A `null` value removes that label; `null` for the whole map removes them all.
    #[schema(value_type = Option<std::collections::HashMap<String, Option<String>>>)]
    pub labels: Presence<LabelsPatch>,
    #[schema(nullable = false)]
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    /// Replaces every secret of the client with this one.
    #[schema(value_type = String, required = false)]
    pub client_secret: Option<SecretString>,
}

const FIELDS: &[&str] = &[
    "name",
    "grant_types",
    "response_types",
    "redirect_uris",
    "login_uri",
    "access_token_duration",
    "id_token_duration",
    "allow_all_scopes",
    "allow_scopes",
    "labels",
    "token_endpoint_auth_method",
];
const READ_ONLY: &[&str] = &["id", "created_at", "updated_at"];

/// The fields every client body shares, read the same way by POST, PUT and PATCH.
struct CommonFields {
    name: Option<String>,
    grant_types: Option<Vec<GrantType>>,
    response_types: Option<Vec<ResponseType>>,
    redirect_uris: Option<Vec<String>>,
    login_uri: Presence<String>,
    access_token_duration: Option<i64>,
    id_token_duration: Option<i64>,
    allow_all_scopes: Option<bool>,
    allow_scopes: Option<Vec<ScopeId>>,
    token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
}

fn common(r: &mut BodyReader<'_>, name_required: bool) -> CommonFields {
    let name = if name_required { r.required_string("name", NAME_LEN) } else { r.string("name", NAME_LEN) };
    let grant_types = r.array("grant_types", GrantType::ALL.len(), true, choice_of::<GrantType>);
    let grant_types = match grant_types {
        Some(g) if g.is_empty() => {
            r.error(
                InvalidParameter::new("grant_types", Rule::MinItems, "must have at least 1 item")
                    .with_minimum(1)
                    .in_body(),
            );
            None
        }
        other => other,
    };
    let grant_types = if name_required { r.required("grant_types", grant_types) } else { grant_types };
    let response_types = r.array("response_types", ResponseType::ALL.len(), true, choice_of::<ResponseType>);
    let redirect_uris = r.array("redirect_uris", MAX_REDIRECT_URIS, true, |f, v| uri_item(f, v, true));
    let login_uri = match r.raw("login_uri") {
        Presence::Value(v) => match uri_item("login_uri", v, true) {
            Ok(u) => Presence::Value(u),
            Err(e) => {
                r.error(e);
                Presence::Absent
            }
        },
        Presence::Null => Presence::Null,
        Presence::Absent => Presence::Absent,
    };
    CommonFields {
        name,
        grant_types,
        response_types,
        redirect_uris,
        login_uri,
        access_token_duration: r.integer("access_token_duration", MIN_TOKEN_DURATION, MAX_TOKEN_DURATION),
        id_token_duration: r.integer("id_token_duration", MIN_TOKEN_DURATION, MAX_TOKEN_DURATION),
        allow_all_scopes: r.boolean("allow_all_scopes"),
        allow_scopes: r.array("allow_scopes", MAX_ALLOW_SCOPES, true, scope_id_item),
        token_endpoint_auth_method: r.choice("token_endpoint_auth_method"),
    }
}

impl ClientInput {
    /// POST: the server chooses the id and the secret.
    pub fn from_create_body(obj: &Map<String, Value>) -> Result<Self, Vec<InvalidParameter>> {
        let mut r = BodyReader::new(obj, FIELDS, &[]);
        let c = common(&mut r, true);
        let labels = r.labels("labels");
        r.finish()?;
        Ok(Self::with_defaults(c, labels, None))
    }

    /// PUT: the caller chooses the id (in the path) and the secret; read-only fields sent back are ignored.
    pub fn from_replace_body(obj: &Map<String, Value>) -> Result<Self, Vec<InvalidParameter>> {
        let known: Vec<&str> = FIELDS.iter().copied().chain(["client_secret"]).collect();
        let mut r = BodyReader::new(obj, &known, READ_ONLY);
        let c = common(&mut r, true);
        let labels = r.labels("labels");
        let secret = secret_field(&mut r);
        let secret = r.required("client_secret", secret);
        r.finish()?;
        Ok(Self::with_defaults(c, labels, secret))
    }

    fn with_defaults(c: CommonFields, labels: Option<Labels>, client_secret: Option<SecretString>) -> Self {
        Self {
            name: c.name.unwrap_or_default(),
            grant_types: c.grant_types.unwrap_or_default(),
            response_types: c.response_types.unwrap_or_else(|| vec![ResponseType::Token]),
            redirect_uris: c.redirect_uris.unwrap_or_default(),
            login_uri: match c.login_uri {
                Presence::Value(u) => Some(u),
                _ => None,
            },
            access_token_duration: c.access_token_duration.unwrap_or(DEFAULT_TOKEN_DURATION),
            id_token_duration: c.id_token_duration.unwrap_or(DEFAULT_TOKEN_DURATION),
            allow_all_scopes: c.allow_all_scopes.unwrap_or(false),
            allow_scopes: c.allow_scopes.unwrap_or_default(),
            labels: labels.unwrap_or_default(),
            token_endpoint_auth_method: c
                .token_endpoint_auth_method
                .unwrap_or(TokenEndpointAuthMethod::ClientSecretPost),
            client_secret,
        }
    }

    /// The client this input describes; `created_at` is kept from the replaced client on PUT.
    pub fn to_client(
        &self,
        id: ClientId,
        auth_server_id: AuthServerId,
        created_at: Timestamp,
        now: Timestamp,
    ) -> Client {
        Client {
            id,
            auth_server_id,
            name: self.name.clone(),
            grant_types: self.grant_types.clone(),
            response_types: self.response_types.clone(),
            redirect_uris: self.redirect_uris.clone(),
            login_uri: self.login_uri.clone(),
            access_token_duration: self.access_token_duration,
            id_token_duration: self.id_token_duration,
            allow_all_scopes: self.allow_all_scopes,
            allow_scopes: self.allow_scopes.clone(),
            labels: self.labels.clone(),
            token_endpoint_auth_method: self.token_endpoint_auth_method,
            created_at,
            updated_at: now,
        }
    }
}

fn secret_field(r: &mut BodyReader<'_>) -> Option<SecretString> {
    match r.raw("client_secret") {
        Presence::Absent => None,
        Presence::Null => {
            r.error(InvalidParameter::new("client_secret", Rule::IsString, "must be a string").in_body());
            None
        }
        Presence::Value(v) => match chosen_secret("client_secret", v) {
            Ok(s) => Some(s),
            Err(e) => {
                r.error(e);
                None
            }
        },
    }
}

impl ClientPatch {
    pub fn from_body(obj: &Map<String, Value>) -> Result<Self, Vec<InvalidParameter>> {
        let known: Vec<&str> = FIELDS.iter().copied().chain(["client_secret"]).collect();
        let mut r = BodyReader::new(obj, &known, &[]);
        let c = common(&mut r, false);
        let labels = r.labels_patch("labels");
        let client_secret = secret_field(&mut r);
        r.finish()?;
        Ok(Self {
            name: c.name,
            grant_types: c.grant_types,
            response_types: c.response_types,
            redirect_uris: c.redirect_uris,
            login_uri: c.login_uri,
            access_token_duration: c.access_token_duration,
            id_token_duration: c.id_token_duration,
            allow_all_scopes: c.allow_all_scopes,
            allow_scopes: c.allow_scopes,
            labels,
            token_endpoint_auth_method: c.token_endpoint_auth_method,
            client_secret,
        })
    }

    pub fn apply(&self, current: &Client, now: Timestamp) -> Result<Client, Vec<InvalidParameter>> {
        let labels = apply_labels_patch(&current.labels, &self.labels).map_err(|e| vec![e])?;
        Ok(Client {
            name: self.name.clone().unwrap_or_else(|| current.name.clone()),
            grant_types: self.grant_types.clone().unwrap_or_else(|| current.grant_types.clone()),
            response_types: self.response_types.clone().unwrap_or_else(|| current.response_types.clone()),
            redirect_uris: self.redirect_uris.clone().unwrap_or_else(|| current.redirect_uris.clone()),
            login_uri: match &self.login_uri {
                Presence::Absent => current.login_uri.clone(),
                Presence::Null => None,
                Presence::Value(u) => Some(u.clone()),
            },
            access_token_duration: self.access_token_duration.unwrap_or(current.access_token_duration),
            id_token_duration: self.id_token_duration.unwrap_or(current.id_token_duration),
            allow_all_scopes: self.allow_all_scopes.unwrap_or(current.allow_all_scopes),
            allow_scopes: self.allow_scopes.clone().unwrap_or_else(|| current.allow_scopes.clone()),
            labels,
            token_endpoint_auth_method: self.token_endpoint_auth_method.unwrap_or(current.token_endpoint_auth_method),
            updated_at: now,
            ..current.clone()
        })
    }
}

/// The create response (`CreatedClient`): the client plus its secret, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedClientView<'a> {
    #[serde(flatten)]
    #[schema(value_type = Client)]
    pub client: &'a Client,
    pub client_secret: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tutorial_client_body() {
        let sid = ScopeId::new();
        let b = json!({"name": "Client", "grant_types": ["client_credentials"], "allow_all_scopes": false,
            "allow_scopes": [sid.to_string()], "access_token_duration": 3600, "id_token_duration": 3600,
            "response_types": ["id_token", "token"]});
        let c = ClientInput::from_create_body(b.as_object().unwrap()).unwrap();
        assert_eq!(c.access_token_duration, 3600);
        assert_eq!(c.response_types, vec![ResponseType::IdToken, ResponseType::Token]);
        assert_eq!(c.token_endpoint_auth_method, TokenEndpointAuthMethod::ClientSecretPost);
    }

    #[test]
    fn defaults_when_omitted() {
        let b = json!({"name": "c", "grant_types": ["client_credentials"]});
        let c = ClientInput::from_create_body(b.as_object().unwrap()).unwrap();
        assert_eq!((c.access_token_duration, c.id_token_duration), (300, 300));
        assert_eq!(c.response_types, vec![ResponseType::Token]);
        assert_eq!(c.login_uri, None);
    }

    #[test]
    fn post_refuses_a_secret_and_put_requires_one() {
        let b = json!({"name": "c", "grant_types": ["client_credentials"], "client_secret": "x".repeat(30)});
        assert_eq!(
            ClientInput::from_create_body(b.as_object().unwrap()).unwrap_err()[0].rule,
            Some(Rule::UnknownProperty)
        );
        let b = json!({"name": "c", "grant_types": ["client_credentials"], "id": "ignored", "created_at": "x"});
        let e = ClientInput::from_replace_body(b.as_object().unwrap()).unwrap_err();
        assert_eq!((e[0].field.as_str(), e[0].rule), ("client_secret", Some(Rule::Required)));
        let b = json!({"name": "c", "grant_types": ["client_credentials"], "client_secret": "short"});
        assert_eq!(ClientInput::from_replace_body(b.as_object().unwrap()).unwrap_err()[0].rule, Some(Rule::MinLength));
    }

    #[test]
    fn refuses_bad_values() {
        for (field, v) in [
            ("grant_types", json!([])),
            ("grant_types", json!(["authorization_code"])),
            ("grant_types", json!(["implicit", "implicit"])),
            ("response_types", json!(["bogus"])),
            ("redirect_uris", json!(["http://insecure.example.com/cb"])),
            ("redirect_uris", json!(["https://a.example.com/cb#frag"])),
            ("redirect_uris", json!(["/relative"])),
            ("login_uri", json!("http://a.example.com")),
            ("access_token_duration", json!(59)),
            ("access_token_duration", json!(2_592_001)),
            ("access_token_duration", json!(1.5)),
            ("access_token_duration", json!("300")),
            ("allow_scopes", json!(["not-a-uuid"])),
            ("allow_all_scopes", json!("true")),
            ("token_endpoint_auth_method", json!("client_secret_basic")),
        ] {
            let mut b = json!({"name": "c", "grant_types": ["client_credentials"]});
            b[field] = v.clone();
            assert!(ClientInput::from_create_body(b.as_object().unwrap()).is_err(), "{field}={v}");
        }
    }

    #[test]
    fn patch_keeps_what_it_does_not_name() {
        let b = json!({"name": "c", "grant_types": ["client_credentials"], "labels": {"a": "1"}, "login_uri": "https://x.example.com"});
        let input = ClientInput::from_create_body(b.as_object().unwrap()).unwrap();
        let c = input.to_client(
            ClientId::parse("abc").unwrap(),
            AuthServerId::new(),
            Timestamp::from_secs(1),
            Timestamp::from_secs(1),
        );
        let p = ClientPatch::from_body(json!({"login_uri": null, "labels": {"b": "2"}}).as_object().unwrap()).unwrap();
        let out = p.apply(&c, Timestamp::from_secs(2)).unwrap();
        assert_eq!(out.login_uri, None);
        assert_eq!(out.labels.0.len(), 2);
        assert_eq!(out.name, "c");
        assert_eq!(out.created_at, Timestamp::from_secs(1));
    }
}
