//! `upstream-oauth`'s config: Kong's full schema (`oauth`, `client`, `behavior`, `cache`), with the parts
//! Gatehouse does not run yet (the `password` grant, `client_secret_jwt`, HTTP proxies, the `redis` strategy)
//! accepted only at their defaults, so a Kong decK file still validates and anything that would be ignored is
//! refused by name.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::checks::{header_token, header_value, http_url};
use super::{PluginInfo, no_check};
use crate::gateway::schema::Field;
use crate::secret::SecretString;

pub const NAME: &str = "upstream-oauth";
/// Kong's priority: after the authentication plugins and rate limiting, so a refused request never costs a token.
pub const PRIORITY: i32 = 760;

pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: true, config: config_fields, check: no_check };

const MAX_TIMEOUT: i64 = 2_147_483_646;

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::record("oauth", oauth_fields())
            .required()
            .describe_as("What the gateway asks the IdP's token endpoint for."),
        Field::record("client", client_fields()).describe_as("How the gateway talks to the IdP."),
        Field::record("behavior", behavior_fields()).describe_as("What the upstream and, on failure, the client get."),
        Field::record("cache", cache_fields()).describe_as("How long tokens are kept, and where."),
    ]
}

fn oauth_fields() -> Vec<Field> {
    vec![
        Field::string("token_endpoint").required().check(http_url).describe_as("The token endpoint URI."),
        Field::string("grant_type")
            .default(json!("client_credentials"))
            .one_of(&["client_credentials", "password"])
            .check(supported_grant)
            .describe_as("The OAuth grant type to be used. Gatehouse runs `client_credentials`."),
        Field::string("client_id")
            .encrypted()
            .describe_as("The client ID for the application registration in the IdP; sealed at rest."),
        Field::string("client_secret")
            .encrypted()
            .describe_as("The client secret for the application registration in the IdP; sealed at rest."),
        Field::string("username")
            .encrypted()
            .unsupported()
            .describe_as("The username for the `password` grant (not supported by Gatehouse yet)."),
        Field::string("password")
            .encrypted()
            .unsupported()
            .describe_as("The password for the `password` grant (not supported by Gatehouse yet)."),
        Field::array("scopes", Field::string("scope"))
            .default(json!(["openid"]))
            .describe_as("List of scopes to request from the IdP when obtaining a new token."),
        Field::array("audience", Field::string("audience"))
            .default(json!([]))
            .describe_as("List of audiences passed to the IdP when obtaining a new token."),
        Field::map(
            "token_headers",
            Field::string("name").check(header_token),
            Field::string("value").check(header_value),
        )
        .describe_as("Extra headers to be passed in the token endpoint request."),
        Field::map("token_post_args", Field::string("name"), Field::string("value").len_min(0))
            .describe_as("Extra post arguments to be passed in the token endpoint request."),
    ]
}

fn client_fields() -> Vec<Field> {
    vec![
        Field::string("auth_method")
            .default(json!("client_secret_post"))
            .one_of(&["client_secret_basic", "client_secret_jwt", "client_secret_post", "none"])
            .check(supported_auth_method)
            .describe_as(
                "How the gateway authenticates to the IdP: `client_secret_basic` (an `Authorization: Basic` \
                 header), `client_secret_post` (in the body) or `none` (the client id only).",
            ),
        Field::string("client_secret_jwt_alg")
            .default(json!("HS512"))
            .one_of(&["HS256", "HS512"])
            .describe_as("The algorithm to use with JWT when using `client_secret_jwt` authentication."),
        Field::number("http_version")
            .default(json!(1.1))
            .unsupported()
            .describe_as("The HTTP version of requests to the IdP (Gatehouse: 1.1 only)."),
        Field::string("http_proxy").unsupported().describe_as("The proxy to use when making HTTP requests to the IdP."),
        Field::string("http_proxy_authorization")
            .unsupported()
            .describe_as("The `Proxy-Authorization` header value to be used with `http_proxy`."),
        Field::string("https_proxy")
            .unsupported()
            .describe_as("The proxy to use when making HTTPS requests to the IdP."),
        Field::string("https_proxy_authorization")
            .unsupported()
            .describe_as("The `Proxy-Authorization` header value to be used with `https_proxy`."),
        Field::string("no_proxy")
            .unsupported()
            .describe_as("A comma-separated list of hosts that should not be proxied."),
        Field::integer("timeout")
            .default(json!(10000))
            .between(0, MAX_TIMEOUT)
            .describe_as("Network I/O timeout for requests to the IdP in milliseconds."),
        Field::boolean("keep_alive")
            .default(json!(true))
            .describe_as("Whether to use keepalive connections to the IdP."),
        Field::boolean("ssl_verify")
            .default(json!(true))
            .describe_as("Whether to verify the certificate presented by the IdP when using HTTPS."),
    ]
}

fn behavior_fields() -> Vec<Field> {
    vec![
        Field::string("upstream_access_token_header_name")
            .default(json!("Authorization"))
            .check(header_token)
            .describe_as("The header the token (as `Bearer <token>`) is sent to the upstream in."),
        Field::array("purge_token_on_upstream_status_codes", Field::integer("status").between(100, 599))
            .default(json!([401]))
            .describe_as("Upstream statuses that make the gateway drop the token it sent; empty disables this."),
        Field::integer("idp_error_response_status_code")
            .default(json!(502))
            .between(500, 599)
            .describe_as("The status the client gets when no token could be obtained from the IdP."),
        Field::string("idp_error_response_content_type")
            .default(json!("application/json; charset=utf-8"))
            .check(header_value)
            .describe_as("The `Content-Type` of that response."),
        Field::string("idp_error_response_message")
            .default(json!("Failed to authenticate request to upstream"))
            .describe_as("The message put in that response's body (`{{message}}`)."),
        Field::string("idp_error_response_body_template")
            .default(json!(r#"{ "code": "{{status}}", "message": "{{message}}" }"#))
            .describe_as("That response's body, where `{{status}}` and `{{message}}` are replaced."),
    ]
}

fn cache_fields() -> Vec<Field> {
    vec![
        Field::string("strategy")
            .default(json!("memory"))
            .one_of(&["memory", "redis"])
            .describe_as("Where tokens are cached: `memory` (the node's own cache) or `redis` (shared by nodes)."),
        Field::record(
            "memory",
            vec![
                Field::string("dictionary_name")
                    .default(json!("kong_db_cache"))
                    .unsupported()
                    .describe_as("Kong's shared dictionary name; Gatehouse's node cache has none."),
            ],
        )
        .describe_as("The `memory` strategy's settings."),
        Field::record("redis", redis_fields()).describe_as("The `redis` strategy's settings."),
        Field::number("default_ttl")
            .default(json!(3600))
            .check(positive)
            .describe_as("The lifetime of a token without an explicit `expires_in` value, in seconds."),
        Field::integer("eagerly_expire")
            .default(json!(5))
            .between(0, MAX_TIMEOUT)
            .describe_as("Seconds before its `expires_in` a cached token is dropped and a new one fetched."),
    ]
}

/// Kong Enterprise's Redis block: a single server (host, port, database, ACL user and password, timeouts, no TLS
/// yet); Sentinel, Cluster, cloud authentication and pool tuning only at their defaults.
fn redis_fields() -> Vec<Field> {
    let timeout = |name| {
        Field::integer(name)
            .default(json!(2000))
            .between(0, MAX_TIMEOUT)
            .describe_as("Milliseconds; the longest of the three bounds connecting and each command.")
    };
    let node = |host: &'static str| {
        Field::record(
            "node",
            vec![
                Field::string(host).default(json!("127.0.0.1")),
                Field::integer("port").default(json!(6379)).between(0, 65535),
            ],
        )
    };
    vec![
        Field::record(
            "cloud_authentication",
            [
                "auth_provider",
                "aws_access_key_id",
                "aws_assume_role_arn",
                "aws_cache_name",
                "aws_region",
                "aws_role_session_name",
                "aws_secret_access_key",
                "azure_client_id",
                "azure_client_secret",
                "azure_tenant_id",
                "gcp_service_account_json",
            ]
            .into_iter()
            .map(|name| Field::string(name).unsupported())
            .chain([Field::boolean("aws_is_serverless").default(json!(true)).unsupported()])
            .collect(),
        ),
        Field::integer("cluster_max_redirections").default(json!(5)).unsupported(),
        Field::array("cluster_nodes", node("ip")).unsupported(),
        timeout("connect_timeout"),
        Field::boolean("connection_is_proxied").default(json!(false)).unsupported(),
        Field::integer("database").default(json!(0)).describe_as("The Redis database tokens are kept in."),
        Field::string("host").default(json!("127.0.0.1")).describe_as("The Redis server's host name or address."),
        Field::integer("keepalive_backlog").unsupported(),
        Field::integer("keepalive_pool_size").default(json!(256)).unsupported(),
        Field::string("password")
            .encrypted()
            .describe_as("The password for Redis's `AUTH`; unset sends none. Sealed at rest."),
        Field::integer("port").default(json!(6379)).between(0, 65535).describe_as("The Redis server's port."),
        timeout("read_timeout"),
        timeout("send_timeout"),
        Field::string("sentinel_master").unsupported(),
        Field::array("sentinel_nodes", node("host")).unsupported(),
        Field::string("sentinel_password").encrypted().unsupported(),
        Field::string("sentinel_role").unsupported(),
        Field::string("sentinel_username").unsupported(),
        Field::string("server_name").unsupported(),
        Field::boolean("ssl").default(json!(false)).unsupported(),
        Field::boolean("ssl_verify").default(json!(true)).describe_as("Verify the server's certificate (with `ssl`)."),
        Field::string("username").describe_as("The ACL user sent with the password (Redis 6+)."),
    ]
}

/// The typed config the plugin runs with. The client id and secret are credentials: their `Debug` is `[redacted]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub oauth: OAuth,
    pub client: Client,
    pub behavior: Behavior,
    pub cache: Cache,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OAuth {
    pub token_endpoint: String,
    pub grant_type: GrantType,
    pub client_id: Option<SecretString>,
    pub client_secret: Option<SecretString>,
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    pub token_headers: Option<BTreeMap<String, String>>,
    pub token_post_args: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    ClientCredentials,
    Password,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Client {
    pub auth_method: AuthMethod,
    pub timeout: u64,
    pub keep_alive: bool,
    pub ssl_verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretJwt,
    ClientSecretPost,
    None,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Behavior {
    pub upstream_access_token_header_name: String,
    pub purge_token_on_upstream_status_codes: Vec<u16>,
    pub idp_error_response_status_code: u16,
    pub idp_error_response_content_type: String,
    pub idp_error_response_message: String,
    pub idp_error_response_body_template: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Cache {
    pub strategy: Strategy,
    pub redis: Redis,
    pub default_ttl: f64,
    pub eagerly_expire: u64,
}

/// The `cache.redis` block's fields Gatehouse runs; the password's `Debug` is `[redacted]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Redis {
    pub host: String,
    pub port: u16,
    pub database: i64,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub connect_timeout: u64,
    pub read_timeout: u64,
    pub send_timeout: u64,
    pub ssl_verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Memory,
    Redis,
}

fn supported_grant(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some("password") => Err("not supported by Gatehouse yet: only client_credentials is accepted".into()),
        _ => Ok(()),
    }
}

fn supported_auth_method(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some("client_secret_jwt") => Err("not supported by Gatehouse yet: use client_secret_basic, \
                                          client_secret_post or none"
            .into()),
        _ => Ok(()),
    }
}

fn positive(v: &Value) -> Result<(), String> {
    if v.as_f64().is_some_and(|n| n > 0.0) { Ok(()) } else { Err("value must be greater than 0".into()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::schema::{Violation, normalize};

    fn validated(config: Value) -> Result<serde_json::Map<String, Value>, Vec<Violation>> {
        let mut violations = Vec::new();
        let out = normalize(&config_fields(), config.as_object().unwrap(), "config", &mut violations);
        if violations.is_empty() { Ok(out) } else { Err(violations) }
    }

    fn refused(config: Value) -> Vec<(String, String)> {
        validated(config).unwrap_err().into_iter().map(|v| (v.path, v.message)).collect()
    }

    #[test]
    fn the_how_tos_config_validates_with_kongs_defaults() {
        let config = validated(json!({"oauth": {"token_endpoint": "http://127.0.0.1:8003/k/oauth/token",
            "grant_type": "client_credentials", "client_id": "id", "client_secret": "s3cret", "scopes": ["Scope"]},
            "behavior": {"upstream_access_token_header_name": "Authorization"}}))
        .unwrap();
        assert_eq!(config["cache"]["redis"]["port"], json!(6379), "Kong's redis defaults are filled");
        assert_eq!(config["cache"]["memory"]["dictionary_name"], json!("kong_db_cache"));
        assert_eq!(config["client"]["http_version"], json!(1.1));
        let typed: Config = serde_json::from_value(Value::Object(config.clone())).unwrap();
        assert_eq!(typed.client.auth_method, AuthMethod::ClientSecretPost);
        assert_eq!((typed.client.timeout, typed.client.keep_alive, typed.client.ssl_verify), (10000, true, true));
        assert_eq!(typed.behavior.purge_token_on_upstream_status_codes, [401]);
        assert_eq!(typed.behavior.idp_error_response_status_code, 502);
        assert_eq!(
            (typed.cache.strategy, typed.cache.default_ttl, typed.cache.eagerly_expire),
            (Strategy::Memory, 3600.0, 5)
        );
        assert_eq!(typed.oauth.audience, Vec::<String>::new());
        let printed = format!("{typed:?}");
        assert!(!printed.contains("s3cret") && printed.contains("[redacted]"), "{printed}");

        let secrets = super::super::encrypted_values(NAME, &config);
        assert_eq!(secrets, [("oauth.client_id".to_owned(), "id"), ("oauth.client_secret".to_owned(), "s3cret")]);
        let defaults = validated(json!({"oauth": {"token_endpoint": "https://idp/t"}})).unwrap();
        assert_eq!(defaults["oauth"]["scopes"], json!(["openid"]));

        // The redis strategy: its password is sealed at rest like the client secret, two records deep.
        let redis = validated(json!({"oauth": {"token_endpoint": "https://idp/t", "client_secret": "s"},
            "cache": {"strategy": "redis", "redis": {"host": "redis.internal", "port": 6380, "password": "pw",
                "username": "gw", "database": 3, "read_timeout": 500}}}))
        .unwrap();
        let typed: Config = serde_json::from_value(Value::Object(redis.clone())).unwrap();
        assert_eq!(typed.cache.strategy, Strategy::Redis);
        assert_eq!(
            (typed.cache.redis.host.as_str(), typed.cache.redis.port, typed.cache.redis.database),
            ("redis.internal", 6380, 3)
        );
        assert_eq!((typed.cache.redis.connect_timeout, typed.cache.redis.read_timeout), (2000, 500));
        let secrets = super::super::encrypted_values(NAME, &redis);
        assert_eq!(secrets, [("oauth.client_secret".to_owned(), "s"), ("cache.redis.password".to_owned(), "pw")]);
        let mut sealed = redis.clone();
        for (path, _) in &secrets {
            *super::super::config_value_mut(&mut sealed, path).unwrap() = json!("sealed");
        }
        assert_eq!(sealed["cache"]["redis"]["password"], json!("sealed"));
        assert_eq!(sealed["cache"]["redis"]["host"], json!("redis.internal"));
    }

    #[test]
    fn what_gatehouse_does_not_run_is_refused_by_name() {
        let base = |extra: Value| {
            let mut config = json!({"oauth": {"token_endpoint": "http://idp/token"}});
            for (k, v) in extra.as_object().unwrap() {
                match config.get_mut(k) {
                    Some(Value::Object(o)) => o.extend(v.as_object().unwrap().clone()),
                    _ => {
                        config[k] = v.clone();
                    }
                }
            }
            config
        };
        for (extra, path) in [
            (json!({"oauth": {"grant_type": "password"}}), "config.oauth.grant_type"),
            (json!({"oauth": {"username": "u"}}), "config.oauth.username"),
            (json!({"client": {"auth_method": "client_secret_jwt"}}), "config.client.auth_method"),
            (json!({"client": {"http_proxy": "http://p:3128"}}), "config.client.http_proxy"),
            (json!({"client": {"http_version": 1.0}}), "config.client.http_version"),
            (json!({"cache": {"redis": {"ssl": true}}}), "config.cache.redis.ssl"),
            (json!({"cache": {"redis": {"sentinel_master": "m"}}}), "config.cache.redis.sentinel_master"),
            (
                json!({"cache": {"redis": {"cloud_authentication": {"auth_provider": "aws"}}}}),
                "config.cache.redis.cloud_authentication.auth_provider",
            ),
            (json!({"cache": {"memory": {"dictionary_name": "mine"}}}), "config.cache.memory.dictionary_name"),
        ] {
            let found = refused(base(extra.clone()));
            assert_eq!(found.len(), 1, "{extra}: {found:?}");
            assert_eq!(found[0].0, path);
            assert!(found[0].1.contains("not supported by Gatehouse"), "{found:?}");
        }
        for (extra, path, message) in [
            (json!({"oauth": {"token_endpoint": "ftp://x/y"}}), "config.oauth.token_endpoint", "missing host in url"),
            (
                json!({"client": {"auth_method": "mtls"}}),
                "config.client.auth_method",
                "expected one of: client_secret_basic, client_secret_jwt, client_secret_post, none",
            ),
            (
                json!({"behavior": {"idp_error_response_status_code": 404}}),
                "config.behavior.idp_error_response_status_code",
                "value should be between 500 and 599",
            ),
            (
                json!({"behavior": {"upstream_access_token_header_name": "X Bad"}}),
                "config.behavior.upstream_access_token_header_name",
                "invalid header name: X Bad",
            ),
            (
                json!({"oauth": {"token_headers": {"x-tenant": "a\r\nb"}}}),
                "config.oauth.token_headers.x-tenant",
                "invalid header value: only visible ASCII characters, spaces and tabs are allowed",
            ),
            (json!({"cache": {"default_ttl": 0}}), "config.cache.default_ttl", "value must be greater than 0"),
        ] {
            assert_eq!(refused(base(extra.clone())), [(path.to_owned(), message.to_owned())], "{extra}");
        }
        assert_eq!(
            refused(json!({})),
            [("config.oauth.token_endpoint".to_owned(), "required field missing".to_owned())]
        );
        // What a Kong dump holds for the unsupported blocks (nulls and defaults) is accepted.
        let dumped = base(json!({"cache": {"redis": {"host": "127.0.0.1", "port": 6379, "password": null,
            "cloud_authentication": {"auth_provider": null, "aws_is_serverless": true}, "cluster_nodes": null}},
            "client": {"http_proxy": null, "http_version": 1.1}}));
        assert!(validated(dumped).is_ok());
    }
}
