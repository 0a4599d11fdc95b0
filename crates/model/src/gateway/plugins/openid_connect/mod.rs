//! `openid-connect`'s config (Kong's Enterprise `OpenidConnect` schema, every field). The fields the gateway
//! implements are declared here; the rest of Kong's list, accepted only empty or at Kong's default, is in
//! `kong_fields`.
//!
//! One default differs from Kong's: `auth_methods`. Kong's lists all nine methods, six of which (browser flows,
//! sessions, passwords, …) Gatehouse does not implement; a configuration that enables any of those is refused by
//! name (see [`check`]). A configuration that leaves `auth_methods` out gets the three Gatehouse implements, so the
//! common `{"issuer": …}` configuration works and never silently drops a method the operator chose.

mod kong_fields;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Checks, PluginInfo};
use crate::gateway::schema::Field;
use crate::secret::SecretString;

pub use kong_fields::SUPPORTED;

pub const NAME: &str = "openid-connect";
/// Kong's priority: after `key-auth` (1250), before `acl` (950) and `rate-limiting` (910).
pub const PRIORITY: i32 = 1050;

/// Kong's schema has no `consumer` reference: the plugin is what finds the consumer.
pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: false, config: config_fields, check };

/// Kong's nine `auth_methods`.
pub const AUTH_METHODS: &[&str] = &[
    "authorization_code",
    "bearer",
    "client_credentials",
    "introspection",
    "kong_oauth2",
    "password",
    "refresh_token",
    "session",
    "userinfo",
];

/// The methods Gatehouse implements, and the default of `auth_methods`.
pub const SUPPORTED_AUTH_METHODS: &[&str] = &["bearer", "client_credentials", "introspection"];

/// How a client authenticates to the IdP (Kong's list); Gatehouse sends secrets only (`client_secret_basic`,
/// `client_secret_post`) or nothing (`none`).
const CLIENT_AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_jwt",
    "client_secret_post",
    "none",
    "private_key_jwt",
    "self_signed_tls_client_auth",
    "tls_client_auth",
];
const SUPPORTED_CLIENT_AUTH: &[&str] = &["client_secret_basic", "client_secret_post", "none"];

pub fn config_fields() -> Vec<Field> {
    let mut fields = supported_fields();
    fields.extend(kong_fields::other_fields());
    fields
}

fn strings(name: &'static str) -> Field {
    Field::array(name, Field::string(name))
}

/// The fields in [`SUPPORTED`], in that order.
#[rustfmt::skip]
fn supported_fields() -> Vec<Field> {
    vec![
        Field::string("issuer").required().check(check_url)
            .describe_as("The IdP's issuer URL (or its discovery document's URL); its metadata and keys are fetched from `<issuer>/.well-known/openid-configuration`."),
        Field::array("auth_methods", Field::string("auth_method").one_of(AUTH_METHODS))
            .default(json!(SUPPORTED_AUTH_METHODS))
            .describe_as("The ways a request may authenticate. Gatehouse implements `bearer`, `introspection` and `client_credentials`, and refuses the others; left out, it is those three (Kong's default lists all nine)."),
        Field::array("bearer_token_param_type", Field::string("param_type").one_of(&["body", "cookie", "header", "query"]))
            .default(json!(["body", "header", "query"]))
            .describe_as("Where a bearer token is looked for: the `Authorization` header, an `access_token` query argument or body field (form, JSON or multipart)."),
        Field::string("bearer_token_header_name")
            .describe_as("A header that carries the token instead of `Authorization`; when set, only it is looked at."),
        strings("issuers_allowed")
            .describe_as("The `iss` values accepted; unset, the issuer's own. Each one's keys are discovered from it, so tokens from several auth servers validate."),
        Field::number("rediscovery_lifetime").default(json!(30)).check(non_negative)
            .describe_as("The least seconds between two refreshes of an issuer's keys caused by a token signed with a key the node does not know."),
        Field::boolean("verify_signature").default(json!(true))
            .describe_as("Verify the token's signature against the issuer's keys. Turning it off trusts any token's claims."),
        Field::boolean("verify_claims").default(json!(true))
            .describe_as("Verify the standard claims: `iss`, `exp`, `nbf` and, when configured, the audience."),
        Field::number("leeway").default(json!(0)).check(non_negative)
            .describe_as("Seconds of clock skew allowed when checking `exp` and `nbf`."),
        strings("audience")
            .describe_as("Accepted audiences: the token's audience claim must hold one of them (401 otherwise)."),
        strings("audience_required")
            .describe_as("Required audiences: each entry is a space-separated list that must all be in the token; any one entry suffices (403 otherwise)."),
        strings("audience_claim").default(json!(["aud"]))
            .describe_as("The path of the claim that holds the audience."),
        strings("scopes_required")
            .describe_as("Required scopes: each entry is a space-separated list that must all be granted; any one entry suffices (403 otherwise)."),
        strings("scopes_claim").default(json!(["scope"]))
            .describe_as("The path of the claim that holds the scopes (a space-separated string or an array)."),
        Field::string("introspection_endpoint").check(check_url)
            .describe_as("The RFC 7662 endpoint opaque tokens are checked at; unset, the one the issuer's discovery document names."),
        Field::string("introspection_endpoint_auth_method").one_of(CLIENT_AUTH_METHODS)
            .describe_as("How the plugin authenticates to the introspection endpoint with `client_id` and `client_secret`: `client_secret_basic` (the default), `client_secret_post` or `none`."),
        Field::string("introspection_hint").default(json!("access_token"))
            .describe_as("The `token_type_hint` sent to the introspection endpoint."),
        Field::string("introspection_token_param_name").default(json!("token"))
            .describe_as("The form field the token is sent in to the introspection endpoint."),
        Field::boolean("introspection_check_active").default(json!(true))
            .describe_as("Require `active: true` in the introspection answer."),
        Field::boolean("introspect_jwt_tokens").default(json!(false))
            .describe_as("Introspect JWTs too (after local validation), so a revoked token is refused before it expires."),
        Field::boolean("cache_introspection").default(json!(true))
            .describe_as("Keep introspection answers for `cache_ttl` seconds, never past the token's `exp`."),
        strings("client_id").encrypted()
            .describe_as("The client id(s) the plugin authenticates to the IdP with; the first is used. Sealed at rest."),
        strings("client_secret").encrypted()
            .describe_as("The client secret(s), paired with `client_id` by position. Sealed at rest."),
        Field::array("client_auth", Field::string("client_auth").one_of(CLIENT_AUTH_METHODS))
            .describe_as("How each client authenticates to the token endpoint, paired with `client_id` by position."),
        Field::string("client_arg").default(json!("client_id"))
            .describe_as("The name of the query or body argument that carries the caller's client id for the `client_credentials` method (its secret is in `client_secret`)."),
        Field::array("client_credentials_param_type", Field::string("param_type").one_of(&["body", "header", "query"]))
            .default(json!(["body", "header", "query"]))
            .describe_as("Where the `client_credentials` method looks for the caller's id and secret: `header` (`Authorization: Basic`), `query`, `body`."),
        Field::string("token_endpoint").check(check_url)
            .describe_as("The IdP's token endpoint; unset, the one its discovery document names."),
        Field::string("token_endpoint_auth_method").one_of(CLIENT_AUTH_METHODS)
            .describe_as("How the plugin authenticates to the token endpoint."),
        strings("scopes").default(json!(["openid"]))
            .describe_as("The scopes asked for when the plugin obtains a token (`client_credentials`; `openid` is not sent)."),
        Field::boolean("cache_tokens").default(json!(true))
            .describe_as("Keep tokens the plugin obtained until shortly before they expire."),
        Field::string("cache_tokens_salt")
            .describe_as("Mixed into the SHA-256 digest obtained tokens are cached under (never sent)."),
        Field::array("consumer_claims", strings("consumer_claim"))
            .describe_as("Claim paths that name the consumer, tried in order; the first present one is used."),
        Field::array("consumer_by", Field::string("consumer_by").one_of(&["custom_id", "id", "username"]))
            .default(json!(["custom_id", "username"]))
            .describe_as("The consumer fields the claim's value is matched against, in order."),
        Field::boolean("consumer_optional").default(json!(false))
            .describe_as("Let the request through without a consumer when none matches (403 otherwise)."),
        Field::boolean("by_username_ignore_case").default(json!(false))
            .describe_as("Match usernames case-insensitively."),
        strings("credential_claim").default(json!(["sub"]))
            .describe_as("The claim path whose value identifies the request's credential (what rate limiting by credential counts)."),
        Field::string("anonymous")
            .describe_as("A consumer id or username to continue as when authentication fails; unset answers 401."),
        strings("upstream_headers_claims")
            .describe_as("Claims sent upstream, each in the header at the same position of `upstream_headers_names`."),
        strings("upstream_headers_names")
            .describe_as("The header names of `upstream_headers_claims`."),
        Field::string("upstream_access_token_header").default(json!("authorization:bearer")).len_min(0)
            .describe_as("The header the token is sent upstream in, `name[:bearer]` (`:bearer` prefixes `Bearer `); an empty string sends none."),
        Field::boolean("hide_credentials").default(json!(true))
            .describe_as("Remove the token from where the client sent it (header, query argument, body field) before the request goes upstream."),
        Field::boolean("run_on_preflight").default(json!(true))
            .describe_as("Authenticate `OPTIONS` requests too; when false they pass unauthenticated."),
        Field::boolean("display_errors").default(json!(false))
            .describe_as("Add why a token was refused to the 401/403 `WWW-Authenticate` header's `error_description`. Never the IdP's own text."),
        Field::string("unauthorized_error_message").default(json!("Unauthorized"))
            .describe_as("The `message` of a 401 body."),
        Field::string("forbidden_error_message").default(json!("Forbidden"))
            .describe_as("The `message` of a 403 body."),
        Field::number("cache_ttl").default(json!(3600)).check(non_negative)
            .describe_as("Seconds an issuer's metadata and keys, and introspection answers, are kept before they are fetched again."),
        Field::boolean("ssl_verify").default(json!(true))
            .describe_as("Verify the IdP's TLS certificate against the web PKI roots."),
        Field::number("timeout").default(json!(10000)).check(non_negative)
            .describe_as("Milliseconds to wait for the IdP (discovery, keys, introspection)."),
        Field::boolean("keepalive").default(json!(true))
            .describe_as("Keep idle connections to the IdP for reuse."),
    ]
}

/// The typed config the plugin runs with. Client secrets are credentials for the IdP: their `Debug` is
/// `[redacted]`, and so is the client id's (Kong seals both).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub issuer: String,
    pub auth_methods: Vec<String>,
    pub bearer_token_param_type: Vec<String>,
    pub bearer_token_header_name: Option<String>,
    pub issuers_allowed: Option<Vec<String>>,
    pub rediscovery_lifetime: f64,
    pub verify_signature: bool,
    pub verify_claims: bool,
    pub leeway: f64,
    pub audience: Option<Vec<String>>,
    pub audience_required: Option<Vec<String>>,
    pub audience_claim: Vec<String>,
    pub scopes_required: Option<Vec<String>>,
    pub scopes_claim: Vec<String>,
    pub introspection_endpoint: Option<String>,
    pub introspection_endpoint_auth_method: Option<String>,
    pub introspection_hint: String,
    pub introspection_token_param_name: String,
    pub introspection_check_active: bool,
    pub introspect_jwt_tokens: bool,
    pub cache_introspection: bool,
    pub client_id: Option<Vec<SecretString>>,
    pub client_secret: Option<Vec<SecretString>>,
    pub client_auth: Option<Vec<String>>,
    pub client_arg: String,
    pub client_credentials_param_type: Vec<String>,
    pub token_endpoint: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub scopes: Vec<String>,
    pub cache_tokens: bool,
    pub cache_tokens_salt: Option<SecretString>,
    pub consumer_claims: Option<Vec<Vec<String>>>,
    pub consumer_by: Vec<String>,
    pub consumer_optional: bool,
    pub by_username_ignore_case: bool,
    pub credential_claim: Vec<String>,
    pub anonymous: Option<String>,
    pub upstream_headers_claims: Option<Vec<String>>,
    pub upstream_headers_names: Option<Vec<String>>,
    pub upstream_access_token_header: Option<String>,
    pub hide_credentials: bool,
    pub run_on_preflight: bool,
    pub display_errors: bool,
    pub unauthorized_error_message: String,
    pub forbidden_error_message: String,
    pub cache_ttl: f64,
    pub ssl_verify: bool,
    pub timeout: f64,
    pub keepalive: bool,
}

impl Config {
    /// Whether `auth_methods` enables `method`.
    pub fn allows(&self, method: &str) -> bool {
        self.auth_methods.iter().any(|m| m == method)
    }
}

/// What Gatehouse does not implement yet, named in one 400: auth methods beyond the three, cookies as a token
/// source (they need Kong's `bearer_token_cookie_name`), and client authentication other than by secret.
pub fn check(config: &Map<String, Value>, checks: &mut Checks) {
    let listed = |field: &str| -> Vec<&str> {
        config
            .get(field)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let unsupported: Vec<&str> =
        listed("auth_methods").into_iter().filter(|m| !SUPPORTED_AUTH_METHODS.contains(m)).collect();
    if !unsupported.is_empty() {
        checks.config(format!(
            "auth_methods not supported by Gatehouse: {} (supported: {})",
            unsupported.join(", "),
            SUPPORTED_AUTH_METHODS.join(", ")
        ));
    }
    if listed("bearer_token_param_type").contains(&"cookie") {
        checks.config(
            "bearer_token_param_type 'cookie' is not supported by Gatehouse (it needs bearer_token_cookie_name)",
        );
    }
    let mut methods = listed("client_auth");
    if let Some(m) = config.get("introspection_endpoint_auth_method").and_then(Value::as_str) {
        methods.push(m);
    }
    if let Some(m) = config.get("token_endpoint_auth_method").and_then(Value::as_str) {
        methods.push(m);
    }
    let mut refused: Vec<&str> = methods.into_iter().filter(|m| !SUPPORTED_CLIENT_AUTH.contains(m)).collect();
    refused.dedup();
    if !refused.is_empty() {
        checks.config(format!(
            "client authentication not supported by Gatehouse: {} (supported: {})",
            refused.join(", "),
            SUPPORTED_CLIENT_AUTH.join(", ")
        ));
    }
}

fn check_url(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        Ok(_) => Err("missing host in url".into()),
        Err(_) => Err(format!("invalid url: {s}")),
    }
}

fn non_negative(v: &Value) -> Result<(), String> {
    if v.as_f64().is_some_and(|n| n >= 0.0) { Ok(()) } else { Err("value must be greater than or equal to 0".into()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{EntityKind, validate_entity};

    fn validate(config: Value) -> Result<Map<String, Value>, Vec<(String, String)>> {
        let body = json!({"name": NAME, "config": config});
        validate_entity(EntityKind::Plugin, body.as_object().unwrap())
            .map_err(|e| e.into_iter().map(|v| (v.path, v.message)).collect())
    }

    #[test]
    fn the_supported_list_is_what_is_declared() {
        let names: Vec<&str> = supported_fields().iter().map(|f| f.name).collect();
        assert_eq!(names, SUPPORTED);
    }

    #[test]
    fn the_how_tos_config_validates_with_kongs_defaults() {
        let plugin = validate(json!({"issuer": "http://127.0.0.1:9/a", "auth_methods": ["bearer"],
            "audience": ["http://myhttpbin.dev"]}))
        .unwrap();
        let config: Config = serde_json::from_value(plugin["config"].clone()).unwrap();
        assert_eq!(config.auth_methods, ["bearer"]);
        assert!(config.hide_credentials && config.verify_signature && config.run_on_preflight);
        assert_eq!(config.upstream_access_token_header.as_deref(), Some("authorization:bearer"));
        assert_eq!((config.rediscovery_lifetime, config.cache_ttl, config.timeout), (30.0, 3600.0, 10000.0));
        assert_eq!(config.consumer_by, ["custom_id", "username"]);
        assert_eq!(config.credential_claim, ["sub"]);
        let defaulted = validate(json!({"issuer": "https://idp.example/"})).unwrap();
        assert_eq!(defaulted["config"]["auth_methods"], json!(["bearer", "client_credentials", "introspection"]));
        assert_eq!(INFO.priority, 1050);
    }

    #[test]
    fn unsupported_methods_are_refused_by_name() {
        let errors = validate(json!({"issuer": "https://idp.example", "auth_methods": AUTH_METHODS})).unwrap_err();
        assert_eq!(
            errors,
            [(
                "config".to_owned(),
                "auth_methods not supported by Gatehouse: authorization_code, kong_oauth2, password, refresh_token, \
                 session, userinfo (supported: bearer, client_credentials, introspection)"
                    .to_owned()
            )]
        );
        let errors = validate(json!({"issuer": "https://idp.example", "bearer_token_param_type": ["cookie"],
            "introspection_endpoint_auth_method": "private_key_jwt"}))
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[1].1.contains("private_key_jwt"), "{errors:?}");
        assert_eq!(
            validate(json!({})).unwrap_err()[0],
            ("config.issuer".to_owned(), "required field missing".to_owned())
        );
        assert_eq!(validate(json!({"issuer": "not a url"})).unwrap_err()[0].0, "config.issuer");
        assert_eq!(validate(json!({"issuer": "https://i", "leeway": -1})).unwrap_err()[0].0, "config.leeway");
    }

    #[test]
    fn client_credentials_are_sealed_and_redacted() {
        let config = json!({"issuer": "https://i", "client_id": ["id-1"], "client_secret": ["s-1", "s-2"]});
        let mut config = config.as_object().unwrap().clone();
        let secrets = super::super::encrypted_values(NAME, &config);
        assert_eq!(
            secrets,
            [
                ("client_id.0".to_owned(), "id-1"),
                ("client_secret.0".to_owned(), "s-1"),
                ("client_secret.1".to_owned(), "s-2")
            ]
        );
        let paths: Vec<String> = secrets.into_iter().map(|(p, _)| p).collect();
        for path in &paths {
            *super::super::config_value_mut(&mut config, path).unwrap() = json!("sealed");
        }
        assert_eq!(config["client_secret"], json!(["sealed", "sealed"]));
        let plugin = validate(json!({"issuer": "https://i", "client_secret": ["s-1"]})).unwrap();
        let typed: Config = serde_json::from_value(plugin["config"].clone()).unwrap();
        assert!(!format!("{typed:?}").contains("s-1"));
    }
}
