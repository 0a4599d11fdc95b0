//! Kong Identity's entities: auth servers, their scopes, claims, clients and client secrets.

pub mod auth_server;
pub mod claim;
pub mod client;
pub mod grant;
pub mod scope;
pub mod secret;
pub mod signing;
pub mod token;

pub use auth_server::{AuthServer, AuthServerPatch, NewAuthServer};
pub use claim::{Claim, ClaimPatch, NewClaim};
pub use client::{Client, ClientInput, ClientPatch};
pub use scope::{NewScope, Scope, ScopePatch};
pub use secret::ClientSecret;
pub use signing::{SigningAlgorithm, SigningKey};
pub use token::IssuedToken;

use serde_json::Value;

use crate::ScopeId;
use crate::body::{Len, string_within};
use crate::problem::{InvalidParameter, Rule};

pub const NAME_LEN: Len = Len::new(1, 256);
pub const DESCRIPTION_LEN: Len = Len::new(0, 2048);

/// A scope id inside a body (`allow_scopes`, `include_in_scopes`).
pub fn scope_id_item(field: &str, v: &Value) -> Result<ScopeId, InvalidParameter> {
    let s = v.as_str().ok_or_else(|| InvalidParameter::new(field, Rule::IsUuid, "must be a UUID").in_body())?;
    s.parse().map_err(|_| InvalidParameter::new(field, Rule::IsUuid, "must be a UUID").in_body())
}

/// An absolute URI item, optionally restricted to `https`, never with a fragment.
pub fn uri_item(field: &str, v: &Value, https_only: bool) -> Result<String, InvalidParameter> {
    let s = string_within(field, v, Len::new(1, 2048))?;
    let url = url::Url::parse(&s)
        .map_err(|_| InvalidParameter::new(field, Rule::Invalid, "must be an absolute URI").in_body())?;
    if https_only && url.scheme() != "https" {
        return Err(InvalidParameter::new(field, Rule::Invalid, "must be an https URI").in_body());
    }
    if url.fragment().is_some() {
        return Err(InvalidParameter::new(field, Rule::Invalid, "must not have a fragment").in_body());
    }
    Ok(s)
}
