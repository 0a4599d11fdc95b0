//! The fields of Kong's `openid-connect` schema that only auth methods and features Gatehouse does not implement
//! use (sessions, authorization code, DPoP, mTLS, …): declared with Kong's types and defaults and marked
//! unsupported, so Kong's own configurations and decK dumps are accepted while they leave them unset.

use serde_json::json;

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

/// Every other field of Kong's schema (Kong Gateway 3.15), in Kong's alphabetical order, with Kong's types,
/// defaults and choices, each accepted only unset or at its default (`Field::unsupported`). Array defaults are in
/// Kong's own order, not the sorted one of Kong's published JSON schema: decK compares arrays element by element.
pub fn other_fields() -> Vec<Field> {
    vec![
        strings("authenticated_groups_claim")
            .describe_as("Claim naming the groups the caller is authenticated as (for the acl plugin)."),
        Field::string("authorization_cookie_domain")
            .describe_as("Domain attribute of the cookie that carries the authorization code flow's state."),
        Field::boolean("authorization_cookie_http_only")
            .default(json!(true))
            .describe_as("Whether the authorization flow cookie is hidden from scripts."),
        Field::string("authorization_cookie_name")
            .default(json!("authorization"))
            .describe_as("Name of the cookie that carries the authorization code flow's state."),
        Field::string("authorization_cookie_path")
            .default(json!("/"))
            .describe_as("Path attribute of the authorization flow cookie."),
        Field::string("authorization_cookie_same_site")
            .default(json!("Default"))
            .one_of(SAME_SITE)
            .describe_as("SameSite attribute of the authorization flow cookie."),
        Field::boolean("authorization_cookie_secure")
            .describe_as("Whether the authorization flow cookie is sent over HTTPS only."),
        Field::string("authorization_endpoint").describe_as("Authorization endpoint, instead of the discovered one."),
        strings("authorization_query_args_client")
            .describe_as("Query arguments copied from the client's request to the authorization endpoint."),
        strings("authorization_query_args_names")
            .describe_as("Names of extra query arguments sent to the authorization endpoint."),
        strings("authorization_query_args_values")
            .describe_as("Values of extra query arguments sent to the authorization endpoint."),
        Field::number("authorization_rolling_timeout")
            .default(json!(600))
            .describe_as("Seconds the authorization flow's state stays usable."),
        Field::string("bearer_token_cookie_name")
            .describe_as("Cookie to read the bearer token from, with `bearer_token_param_type: cookie`."),
        Field::boolean("cache_token_exchange")
            .default(json!(true))
            .describe_as("Whether token exchange answers are cached."),
        Field::number("cache_ttl_max").describe_as("Upper bound, in seconds, on any cache entry's lifetime."),
        Field::number("cache_ttl_min").describe_as("Lower bound, in seconds, on any cache entry's lifetime."),
        Field::number("cache_ttl_neg").describe_as("Seconds a failed lookup is cached."),
        Field::number("cache_ttl_resurrect")
            .describe_as("Seconds a stale cache entry may be served when a refresh fails."),
        Field::boolean("cache_user_info").default(json!(true)).describe_as("Whether user info answers are cached."),
        strings("claims_forbidden").describe_as("Claims a token must not carry."),
        strings_of(
            "client_alg",
            &[
                "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384",
                "PS512", "EdDSA",
            ],
        )
        .describe_as(
            "Signing algorithm of the client's assertion, per client (`client_secret_jwt`, `private_key_jwt`).",
        ),
        Field::array(
            "client_jwk",
            Field::record(
                "client_jwk",
                vec![
                    Field::string("alg"),
                    Field::string("crv"),
                    Field::string("d").encrypted(),
                    Field::string("dp").encrypted(),
                    Field::string("dq").encrypted(),
                    Field::string("e"),
                    Field::string("issuer"),
                    Field::string("k").encrypted(),
                    strings("key_ops"),
                    Field::string("kid"),
                    Field::string("kty"),
                    Field::string("n"),
                    Field::string("oth").encrypted(),
                    Field::string("p").encrypted(),
                    Field::string("q").encrypted(),
                    Field::string("qi").encrypted(),
                    Field::string("r").encrypted(),
                    Field::string("t").encrypted(),
                    Field::string("use"),
                    Field::string("x"),
                    strings("x5c"),
                    Field::string("x5t"),
                    Field::string("x5t#S256"),
                    Field::string("x5u"),
                    Field::string("y"),
                ],
            ),
        )
        .describe_as("Private key of each client for `private_key_jwt` authentication."),
        strings_of("cluster_cache_items", &["introspection", "tokens"])
            .default(json!(["introspection"]))
            .describe_as("Which cached answers are shared through the cluster cache."),
        redis("cluster_cache_redis", false).describe_as("Redis server of the cluster cache."),
        Field::string("cluster_cache_strategy")
            .default(json!("off"))
            .one_of(&["off", "redis"])
            .describe_as("Where cached answers are shared between nodes: `off` or `redis`."),
        strings("consumer_groups_claim").describe_as("Claim naming the consumer groups to apply."),
        Field::boolean("consumer_groups_optional")
            .default(json!(false))
            .describe_as("Whether a missing consumer groups claim is tolerated."),
        strings_of("disable_session", GRANTS).describe_as("Grants after which no session cookie is issued."),
        strings("discovery_headers_names").describe_as("Names of extra headers sent to the discovery endpoint."),
        strings("discovery_headers_values").describe_as("Values of extra headers sent to the discovery endpoint."),
        strings("domains").describe_as("Accepted values of the `hd` (hosted domain) claim."),
        Field::string("downstream_access_token_header")
            .describe_as("Response header that returns the access token to the client."),
        Field::string("downstream_access_token_jwk_header")
            .describe_as("Response header that returns the access token's signing key."),
        Field::array(
            "downstream_headers",
            Field::record(
                "downstream_headers",
                vec![Field::string("header").required(), strings("path").required().len_min(1)],
            ),
        )
        .describe_as("Claims returned to the client as response headers, by claim path."),
        strings("downstream_headers_claims").describe_as("Claims returned to the client as response headers."),
        strings("downstream_headers_names").describe_as("Response header names for `downstream_headers_claims`."),
        Field::string("downstream_id_token_header").describe_as("Response header that returns the ID token."),
        Field::string("downstream_id_token_jwk_header")
            .describe_as("Response header that returns the ID token's signing key."),
        Field::string("downstream_introspection_header")
            .describe_as("Response header that returns the introspection answer."),
        Field::string("downstream_introspection_jwt_header")
            .describe_as("Response header that returns the introspection answer as a JWT."),
        Field::string("downstream_refresh_token_header").describe_as("Response header that returns the refresh token."),
        Field::string("downstream_session_id_header").describe_as("Response header that returns the session id."),
        Field::string("downstream_user_info_header").describe_as("Response header that returns the user info answer."),
        Field::string("downstream_user_info_jwt_header")
            .describe_as("Response header that returns the user info answer as a JWT."),
        Field::number("dpop_proof_lifetime").default(json!(300)).describe_as("Seconds a DPoP proof stays valid."),
        Field::boolean("dpop_use_nonce")
            .default(json!(false))
            .describe_as("Whether DPoP proofs must carry a server nonce."),
        Field::boolean("enable_hs_signatures")
            .default(json!(false))
            .describe_as("Whether tokens signed with a shared secret (HS256…) are accepted."),
        Field::string("end_session_endpoint")
            .describe_as("End session (logout) endpoint, instead of the discovered one."),
        Field::boolean("expose_error_code")
            .default(json!(true))
            .describe_as("Whether the error code is sent in `WWW-Authenticate`."),
        Field::set("extra_jwks_uris", Field::string("extra_jwks_uris"))
            .describe_as("Further JWKS URIs whose keys are trusted."),
        Field::boolean("forbidden_destroy_session")
            .default(json!(true))
            .describe_as("Whether a forbidden request ends the session."),
        strings("forbidden_redirect_uri").describe_as("Where a forbidden request is redirected."),
        strings("groups_claim").default(json!(["groups"])).describe_as("Claim that holds the groups."),
        strings("groups_required").describe_as("Groups a token must hold."),
        Field::string("http_proxy").describe_as("HTTP proxy for requests to the IdP."),
        Field::string("http_proxy_authorization").describe_as("`Proxy-Authorization` value for `http_proxy`."),
        Field::number("http_version").default(json!(1.1)).describe_as("HTTP version of requests to the IdP."),
        Field::string("https_proxy").describe_as("HTTPS proxy for requests to the IdP."),
        Field::string("https_proxy_authorization").describe_as("`Proxy-Authorization` value for `https_proxy`."),
        Field::string("id_token_param_name").describe_as("Parameter that carries an ID token."),
        strings_of("id_token_param_type", PLACES)
            .default(json!(["header", "query", "body"]))
            .describe_as("Where an ID token is looked for."),
        strings_of(
            "ignore_signature",
            &[
                "password",
                "client_credentials",
                "authorization_code",
                "refresh_token",
                "session",
                "introspection",
                "userinfo",
            ],
        )
        .default(json!([]))
        .describe_as("Grants whose tokens are not signature-checked."),
        Field::string("introspection_accept")
            .default(json!("application/json"))
            .one_of(&["application/json", "application/token-introspection+jwt", "application/jwt"])
            .describe_as("`Accept` header of introspection requests (JSON or JWT answers)."),
        strings("introspection_headers_client")
            .describe_as("Headers copied from the client's request to the introspection endpoint."),
        strings("introspection_headers_names")
            .describe_as("Names of extra headers sent to the introspection endpoint."),
        strings("introspection_headers_values")
            .encrypted()
            .describe_as("Values of extra headers sent to the introspection endpoint; secret."),
        strings("introspection_post_args_client")
            .describe_as("Arguments copied from the client's request to the introspection request."),
        strings("introspection_post_args_client_headers")
            .describe_as("Client request headers sent as introspection request arguments."),
        strings("introspection_post_args_names").describe_as("Names of extra arguments of introspection requests."),
        strings("introspection_post_args_values").describe_as("Values of extra arguments of introspection requests."),
        Field::string("jwks_endpoint").describe_as("JWKS endpoint, instead of the discovered `jwks_uri`."),
        Field::string("jwt_session_claim")
            .default(json!("sid"))
            .describe_as("Claim matched against the JWT session cookie."),
        Field::string("jwt_session_cookie").describe_as("Name of the JWT session cookie."),
        Field::string("login_action")
            .default(json!("upstream"))
            .one_of(&["upstream", "response", "redirect"])
            .describe_as("What follows a login: proxy upstream, answer, or redirect."),
        strings_of("login_methods", GRANTS)
            .default(json!(["authorization_code"]))
            .describe_as("Grants that count as a login."),
        Field::string("login_redirect_mode")
            .default(json!("fragment"))
            .one_of(&["query", "fragment"])
            .describe_as("Where tokens go in a login redirect: query or fragment."),
        strings("login_redirect_uri").describe_as("Where a login redirects with `login_action: redirect`."),
        strings_of("login_tokens", &["id_token", "access_token", "refresh_token", "tokens", "introspection"])
            .default(json!(["id_token"]))
            .describe_as("Tokens included in a login answer or redirect."),
        strings_of("logout_methods", &["POST", "GET", "DELETE"])
            .default(json!(["POST", "DELETE"]))
            .describe_as("Request methods that can trigger a logout."),
        Field::string("logout_post_arg").describe_as("Body argument that triggers a logout."),
        Field::string("logout_query_arg").describe_as("Query argument that triggers a logout."),
        strings("logout_redirect_uri").describe_as("Where a logout redirects."),
        Field::boolean("logout_revoke").default(json!(false)).describe_as("Whether tokens are revoked at logout."),
        Field::boolean("logout_revoke_access_token")
            .default(json!(true))
            .describe_as("Whether the access token is revoked at logout."),
        Field::boolean("logout_revoke_refresh_token")
            .default(json!(true))
            .describe_as("Whether the refresh token is revoked at logout."),
        Field::string("logout_uri_suffix").describe_as("Path suffix that triggers a logout."),
        Field::number("max_age").describe_as("Maximum age, in seconds, of the `auth_time` claim."),
        Field::string("mtls_introspection_endpoint")
            .describe_as("Introspection endpoint used with mTLS client authentication."),
        Field::string("mtls_revocation_endpoint")
            .describe_as("Revocation endpoint used with mTLS client authentication."),
        Field::string("mtls_token_endpoint").describe_as("Token endpoint used with mTLS client authentication."),
        Field::string("no_proxy").describe_as("Hosts reached without the proxy."),
        strings_of("password_param_type", PLACES)
            .default(json!(["header", "query", "body"]))
            .describe_as("Where the password grant's username and password are looked for."),
        Field::boolean("preserve_query_args")
            .default(json!(false))
            .describe_as("Whether query arguments survive the authorization code flow."),
        Field::record(
            "principals",
            vec![
                Field::string("directory").default(json!("default")),
                Field::boolean("enabled").default(json!(false)),
                Field::boolean("error_on_miss").default(json!(true)),
                Field::boolean("match_consumer").default(json!(true)),
                Field::boolean("match_consumer_groups").default(json!(true)),
                Field::string("principal_by").len_min(1),
                Field::array("principal_claim", Field::string("principal_claim").len_min(1)).len_min(1),
            ],
        )
        .required()
        .describe_as("Mapping of token claims to principals."),
        Field::boolean("proof_of_possession_auth_methods_validation")
            .default(json!(true))
            .describe_as("Whether proof of possession restricts `auth_methods` to those it supports."),
        Field::string("proof_of_possession_dpop")
            .default(json!("off"))
            .one_of(POP_MODES)
            .describe_as("DPoP proof of possession: `off`, `strict` or `optional`."),
        Field::string("proof_of_possession_mtls")
            .default(json!("off"))
            .one_of(POP_MODES)
            .describe_as("mTLS certificate-bound tokens: `off`, `strict` or `optional`."),
        Field::record(
            "proof_of_possession_mtls_from_header",
            vec![
                Field::boolean("allow_partial_chain").default(json!(false)),
                strings("ca_certificates").required(),
                Field::number("cert_cache_ttl").default(json!(60000)),
                Field::string("certificate_header_format")
                    .default(json!("url_encoded"))
                    .one_of(&["base64_encoded", "url_encoded"]),
                Field::string("certificate_header_name").required(),
                Field::string("http_proxy_host"),
                Field::integer("http_proxy_port").between(0, 65535),
                Field::number("http_timeout").default(json!(30000)),
                Field::string("https_proxy_host"),
                Field::integer("https_proxy_port").between(0, 65535),
                Field::string("revocation_check_mode").default(json!("IGNORE_CA_ERROR")).one_of(&[
                    "IGNORE_CA_ERROR",
                    "SKIP",
                    "STRICT",
                ]),
                Field::boolean("secure_source").default(json!(true)),
                Field::boolean("ssl_verify").default(json!(true)),
            ],
        )
        .describe_as("Client certificate taken from a request header for mTLS proof of possession."),
        Field::string("pushed_authorization_request_endpoint")
            .describe_as("Pushed authorization request endpoint, instead of the discovered one."),
        Field::string("pushed_authorization_request_endpoint_auth_method")
            .one_of(ENDPOINT_AUTH)
            .describe_as("How the plugin authenticates to the pushed authorization request endpoint."),
        strings("redirect_uri").describe_as("Redirect URI of the authorization code flow."),
        redis("redis", true).describe_as("Redis server of the session store."),
        Field::string("refresh_token_param_name").describe_as("Parameter that carries a refresh token."),
        strings_of("refresh_token_param_type", PLACES)
            .default(json!(["header", "query", "body"]))
            .describe_as("Where a refresh token is looked for."),
        Field::boolean("refresh_tokens")
            .default(json!(true))
            .describe_as("Whether expiring access tokens are refreshed."),
        Field::boolean("require_proof_key_for_code_exchange")
            .describe_as("Whether PKCE is used, instead of what discovery says."),
        Field::boolean("require_pushed_authorization_requests")
            .describe_as("Whether pushed authorization requests are used, instead of what discovery says."),
        Field::boolean("require_signed_request_object")
            .describe_as("Whether authorization requests are signed, instead of what discovery says."),
        Field::boolean("resolve_distributed_claims")
            .default(json!(false))
            .describe_as("Whether distributed claims are fetched."),
        Field::string("response_mode")
            .default(json!("query"))
            .one_of(&["query", "form_post", "fragment", "query.jwt", "form_post.jwt", "fragment.jwt", "jwt"])
            .describe_as("How the IdP returns the authorization code."),
        strings("response_type")
            .default(json!(["code"]))
            .describe_as("Response type asked of the authorization endpoint."),
        Field::boolean("reverify")
            .default(json!(false))
            .describe_as("Whether tokens kept in a session are verified again on each request."),
        Field::string("revocation_endpoint").describe_as("Revocation endpoint, instead of the discovered one."),
        Field::string("revocation_endpoint_auth_method")
            .one_of(ENDPOINT_AUTH)
            .describe_as("How the plugin authenticates to the revocation endpoint."),
        Field::string("revocation_token_param_name")
            .default(json!("token"))
            .describe_as("Parameter name of the token in revocation requests."),
        strings("roles_claim").default(json!(["roles"])).describe_as("Claim that holds the roles."),
        strings("roles_required").describe_as("Roles a token must hold."),
        Field::boolean("search_user_info")
            .default(json!(false))
            .describe_as("Whether the user info endpoint is asked for further claims."),
        Field::number("session_absolute_timeout")
            .default(json!(86400))
            .describe_as("Seconds after which a session ends however active it is."),
        Field::string("session_audience").default(json!("default")).describe_as("Audience a session is issued for."),
        strings_of("session_bind", &["ip", "scheme", "user-agent"])
            .describe_as("Request properties a session is bound to."),
        Field::string("session_cookie_domain").describe_as("Domain attribute of the session cookie."),
        Field::boolean("session_cookie_http_only")
            .default(json!(true))
            .describe_as("Whether the session cookie is hidden from scripts."),
        Field::string("session_cookie_name").default(json!("session")).describe_as("Name of the session cookie."),
        Field::string("session_cookie_path").default(json!("/")).describe_as("Path attribute of the session cookie."),
        Field::string("session_cookie_same_site")
            .default(json!("Lax"))
            .one_of(SAME_SITE)
            .describe_as("SameSite attribute of the session cookie."),
        Field::boolean("session_cookie_secure").describe_as("Whether the session cookie is sent over HTTPS only."),
        Field::boolean("session_enforce_same_subject")
            .default(json!(false))
            .describe_as("Whether a session's audiences must share one subject."),
        Field::boolean("session_hash_storage_key")
            .default(json!(false))
            .describe_as("Whether session ids are hashed in the store."),
        Field::boolean("session_hash_subject")
            .default(json!(false))
            .describe_as("Whether subjects are hashed in session metadata."),
        Field::number("session_idling_timeout")
            .default(json!(900))
            .describe_as("Seconds of inactivity after which a session ends."),
        Field::string("session_memcached_host")
            .default(json!("127.0.0.1"))
            .describe_as("memcached host of the session store."),
        Field::integer("session_memcached_port")
            .default(json!(11211))
            .between(0, 65535)
            .describe_as("memcached port of the session store."),
        Field::string("session_memcached_prefix").describe_as("Key prefix in the memcached session store."),
        Field::string("session_memcached_socket").describe_as("Unix socket of the memcached session store."),
        Field::boolean("session_memcached_ssl").describe_as("Whether the memcached session store is reached over TLS."),
        Field::boolean("session_memcached_ssl_verify")
            .default(json!(true))
            .describe_as("Whether the memcached server's certificate is verified."),
        Field::boolean("session_remember")
            .default(json!(false))
            .describe_as("Whether persistent (remember me) sessions are issued."),
        Field::number("session_remember_absolute_timeout")
            .default(json!(2592000))
            .describe_as("Seconds after which a persistent session ends."),
        Field::string("session_remember_cookie_name")
            .default(json!("remember"))
            .describe_as("Name of the persistent session cookie."),
        Field::number("session_remember_rolling_timeout")
            .default(json!(604800))
            .describe_as("Seconds a persistent session stays valid without renewal."),
        Field::set("session_request_headers", Field::string("session_request_headers").one_of(SESSION_HEADERS))
            .describe_as("Session details sent upstream as headers."),
        Field::set("session_response_headers", Field::string("session_response_headers").one_of(SESSION_HEADERS))
            .describe_as("Session details returned to the client as headers."),
        Field::number("session_rolling_timeout")
            .default(json!(3600))
            .describe_as("Seconds a session stays valid without renewal."),
        Field::string("session_secret").encrypted().describe_as("Secret that protects session cookies."),
        Field::string("session_storage")
            .default(json!("cookie"))
            .one_of(&["cookie", "memcache", "memcached", "redis"])
            .describe_as("Where session data lives: `cookie`, `memcached` or `redis`."),
        Field::boolean("session_store_metadata")
            .default(json!(false))
            .describe_as("Whether session metadata is stored."),
        Field::string("tls_client_auth_cert_id")
            .describe_as("Certificate entity the plugin presents for mTLS client authentication."),
        Field::boolean("tls_client_auth_ssl_verify")
            .default(json!(true))
            .describe_as("Whether the IdP's certificate is verified during mTLS client authentication."),
        Field::boolean("token_cache_key_include_scope")
            .default(json!(false))
            .describe_as("Whether cached tokens are keyed by scope too."),
        Field::record(
            "token_exchange",
            vec![
                Field::record("cache", vec![Field::boolean("enabled").default(json!(true)), Field::integer("ttl")])
                    .required(),
                Field::record(
                    "request",
                    vec![
                        strings("audience"),
                        Field::boolean("empty_audience").default(json!(false)),
                        Field::boolean("empty_scopes").default(json!(false)),
                        strings("scopes"),
                    ],
                )
                .required(),
                Field::array(
                    "subject_token_issuers",
                    Field::record(
                        "subject_token_issuers",
                        vec![
                            Field::record(
                                "conditions",
                                vec![
                                    strings("has_audience"),
                                    strings("has_scopes"),
                                    strings("missing_audience"),
                                    strings("missing_scopes"),
                                ],
                            ),
                            Field::string("issuer").required(),
                            Field::string("jwks_uri"),
                            Field::boolean("verify_signature").default(json!(false)),
                        ],
                    ),
                )
                .required()
                .len_min(1),
            ],
        )
        .describe_as("Exchange of tokens from other issuers for this issuer's."),
        Field::string("token_exchange_endpoint").describe_as("Token exchange endpoint."),
        strings("token_headers_client").describe_as("Headers copied from the client's request to the token endpoint."),
        strings_of("token_headers_grants", &["password", "client_credentials", "authorization_code", "refresh_token"])
            .describe_as("Grants whose token endpoint response headers are returned to the client."),
        strings("token_headers_names").describe_as("Names of extra headers sent to the token endpoint."),
        Field::string("token_headers_prefix")
            .describe_as("Prefix of token endpoint response headers returned to the client."),
        strings("token_headers_replay").describe_as("Token endpoint response headers returned to the client."),
        strings("token_headers_values").describe_as("Values of extra headers sent to the token endpoint."),
        strings("token_post_args_client").describe_as("Arguments copied from the client's request to token requests."),
        strings("token_post_args_names").describe_as("Names of extra arguments of token requests."),
        strings("token_post_args_values").describe_as("Values of extra arguments of token requests."),
        Field::boolean("unauthorized_destroy_session")
            .default(json!(true))
            .describe_as("Whether an unauthorized request ends the session."),
        strings("unauthorized_redirect_uri").describe_as("Where an unauthorized request is redirected."),
        strings("unexpected_redirect_uri").describe_as("Where a request that meets an unexpected error is redirected."),
        Field::string("upstream_access_token_jwk_header")
            .describe_as("Upstream header that carries the access token's signing key."),
        Field::array(
            "upstream_headers",
            Field::record(
                "upstream_headers",
                vec![Field::string("header").required(), strings("path").required().len_min(1)],
            ),
        )
        .describe_as("Claims sent upstream as headers, by claim path."),
        Field::string("upstream_id_token_header").describe_as("Upstream header that carries the ID token."),
        Field::string("upstream_id_token_jwk_header")
            .describe_as("Upstream header that carries the ID token's signing key."),
        Field::string("upstream_introspection_header")
            .describe_as("Upstream header that carries the introspection answer."),
        Field::string("upstream_introspection_jwt_header")
            .describe_as("Upstream header that carries the introspection answer as a JWT."),
        Field::string("upstream_refresh_token_header").describe_as("Upstream header that carries the refresh token."),
        Field::string("upstream_session_id_header").describe_as("Upstream header that carries the session id."),
        Field::string("upstream_user_info_header").describe_as("Upstream header that carries the user info answer."),
        Field::string("upstream_user_info_jwt_header")
            .describe_as("Upstream header that carries the user info answer as a JWT."),
        Field::string("userinfo_accept")
            .default(json!("application/json"))
            .one_of(&["application/json", "application/jwt"])
            .describe_as("`Accept` header of user info requests (JSON or JWT answers)."),
        Field::string("userinfo_endpoint").describe_as("User info endpoint, instead of the discovered one."),
        strings("userinfo_headers_client")
            .describe_as("Headers copied from the client's request to the user info endpoint."),
        strings("userinfo_headers_names").describe_as("Names of extra headers sent to the user info endpoint."),
        strings("userinfo_headers_values").describe_as("Values of extra headers sent to the user info endpoint."),
        strings("userinfo_query_args_client")
            .describe_as("Query arguments copied from the client's request to the user info endpoint."),
        strings("userinfo_query_args_names")
            .describe_as("Names of extra query arguments sent to the user info endpoint."),
        strings("userinfo_query_args_values")
            .describe_as("Values of extra query arguments sent to the user info endpoint."),
        Field::boolean("using_pseudo_issuer")
            .default(json!(false))
            .describe_as("Whether `issuer` is only a name, with no discovery behind it."),
        Field::boolean("verify_nonce")
            .default(json!(true))
            .describe_as("Whether the authorization code flow's nonce is checked."),
        Field::boolean("verify_parameters")
            .default(json!(false))
            .describe_as("Whether the configuration is checked against discovery."),
    ]
    .into_iter()
    .map(Field::unsupported)
    .collect()
}

/// Kong's grants and auth methods, in Kong's order.
const GRANTS: &[&str] = &[
    "password",
    "client_credentials",
    "authorization_code",
    "bearer",
    "introspection",
    "userinfo",
    "kong_oauth2",
    "refresh_token",
    "session",
];
/// How the plugin authenticates to an IdP endpoint.
const ENDPOINT_AUTH: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
    "none",
];
const SAME_SITE: &[&str] = &["Strict", "Lax", "None", "Default"];
const SESSION_HEADERS: &[&str] =
    &["id", "audience", "subject", "timeout", "idling-timeout", "rolling-timeout", "absolute-timeout"];
/// Where a credential is looked for.
const PLACES: &[&str] = &["header", "query", "body"];
/// Proof-of-possession modes.
const POP_MODES: &[&str] = &["off", "strict", "optional"];

/// An array of strings.
fn strings(name: &'static str) -> Field {
    Field::array(name, Field::string(name))
}

/// An array of strings, each one of `choices`.
fn strings_of(name: &'static str, choices: &[&'static str]) -> Field {
    Field::array(name, Field::string(name).one_of(choices))
}

/// Kong Enterprise's Redis block, as `redis` (the session store, which adds `prefix` and `socket`) and
/// `cluster_cache_redis` use it. Kong fills both records with their defaults when they are absent (a record field
/// is required unless it says otherwise), so `required` here: a dump of Kong's holds `redis: {host: 127.0.0.1, …}`.
fn redis(name: &'static str, session: bool) -> Field {
    let mut fields = vec![
        Field::record(
            "cloud_authentication",
            vec![
                Field::string("auth_provider").one_of(&["aws", "azure", "gcp"]),
                Field::string("aws_access_key_id").encrypted(),
                Field::string("aws_assume_role_arn").encrypted(),
                Field::string("aws_cache_name"),
                Field::boolean("aws_is_serverless").default(json!(true)),
                Field::string("aws_region"),
                Field::string("aws_role_session_name").encrypted(),
                Field::string("aws_secret_access_key").encrypted(),
                Field::string("azure_client_id").encrypted(),
                Field::string("azure_client_secret").encrypted(),
                Field::string("azure_tenant_id").encrypted(),
                Field::string("gcp_service_account_json").encrypted(),
            ],
        )
        .required(),
        Field::integer("cluster_max_redirections").default(json!(5)),
        Field::array(
            "cluster_nodes",
            Field::record(
                "cluster_nodes",
                vec![
                    Field::string("ip").default(json!("127.0.0.1")),
                    Field::integer("port").default(json!(6379)).between(0, 65535),
                ],
            ),
        )
        .len_min(1),
        Field::integer("connect_timeout").default(json!(2000)).between(0, 2147483646),
        Field::boolean("connection_is_proxied").default(json!(false)),
        Field::integer("database").default(json!(0)),
        Field::string("host").default(json!("127.0.0.1")),
        Field::integer("keepalive_backlog").between(0, 2147483646),
        Field::integer("keepalive_pool_size").default(json!(256)).between(1, 2147483646),
        Field::string("password").encrypted(),
        Field::integer("port").default(json!(6379)).between(0, 65535),
        Field::integer("read_timeout").default(json!(2000)).between(0, 2147483646),
        Field::integer("send_timeout").default(json!(2000)).between(0, 2147483646),
        Field::string("sentinel_master"),
        Field::array(
            "sentinel_nodes",
            Field::record(
                "sentinel_nodes",
                vec![
                    Field::string("host").default(json!("127.0.0.1")),
                    Field::integer("port").default(json!(6379)).between(0, 65535),
                ],
            ),
        )
        .len_min(1),
        Field::string("sentinel_password").encrypted(),
        Field::string("sentinel_role").one_of(&["master", "slave", "any"]),
        Field::string("sentinel_username"),
        Field::string("server_name"),
        Field::boolean("ssl").default(json!(false)),
        Field::boolean("ssl_verify").default(json!(true)),
        Field::string("username"),
    ];
    if session {
        fields.extend([Field::string("prefix"), Field::string("socket")]);
        fields.sort_by_key(|f| f.name);
    }
    Field::record(name, fields).required()
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;
    use crate::gateway::schema::{Kind, Violation, normalize};

    /// The names of Kong's 234 config fields (Kong Gateway 3.15's `openid-connect` schema), alphabetical.
    const KONG: &str = "
        anonymous audience audience_claim audience_required auth_methods authenticated_groups_claim
        authorization_cookie_domain authorization_cookie_http_only authorization_cookie_name
        authorization_cookie_path authorization_cookie_same_site authorization_cookie_secure authorization_endpoint
        authorization_query_args_client authorization_query_args_names authorization_query_args_values
        authorization_rolling_timeout bearer_token_cookie_name bearer_token_header_name bearer_token_param_type
        by_username_ignore_case cache_introspection cache_token_exchange cache_tokens cache_tokens_salt cache_ttl
        cache_ttl_max cache_ttl_min cache_ttl_neg cache_ttl_resurrect cache_user_info claims_forbidden client_alg
        client_arg client_auth client_credentials_param_type client_id client_jwk client_secret cluster_cache_items
        cluster_cache_redis cluster_cache_strategy consumer_by consumer_claims consumer_groups_claim
        consumer_groups_optional consumer_optional credential_claim disable_session discovery_headers_names
        discovery_headers_values display_errors domains downstream_access_token_header
        downstream_access_token_jwk_header downstream_headers downstream_headers_claims downstream_headers_names
        downstream_id_token_header downstream_id_token_jwk_header downstream_introspection_header
        downstream_introspection_jwt_header downstream_refresh_token_header downstream_session_id_header
        downstream_user_info_header downstream_user_info_jwt_header dpop_proof_lifetime dpop_use_nonce
        enable_hs_signatures end_session_endpoint expose_error_code extra_jwks_uris forbidden_destroy_session
        forbidden_error_message forbidden_redirect_uri groups_claim groups_required hide_credentials http_proxy
        http_proxy_authorization http_version https_proxy https_proxy_authorization id_token_param_name
        id_token_param_type ignore_signature introspect_jwt_tokens introspection_accept introspection_check_active
        introspection_endpoint introspection_endpoint_auth_method introspection_headers_client
        introspection_headers_names introspection_headers_values introspection_hint introspection_post_args_client
        introspection_post_args_client_headers introspection_post_args_names introspection_post_args_values
        introspection_token_param_name issuer issuers_allowed jwks_endpoint jwt_session_claim jwt_session_cookie
        keepalive leeway login_action login_methods login_redirect_mode login_redirect_uri login_tokens
        logout_methods logout_post_arg logout_query_arg logout_redirect_uri logout_revoke
        logout_revoke_access_token logout_revoke_refresh_token logout_uri_suffix max_age
        mtls_introspection_endpoint mtls_revocation_endpoint mtls_token_endpoint no_proxy password_param_type
        preserve_query_args principals proof_of_possession_auth_methods_validation proof_of_possession_dpop
        proof_of_possession_mtls proof_of_possession_mtls_from_header pushed_authorization_request_endpoint
        pushed_authorization_request_endpoint_auth_method redirect_uri redis rediscovery_lifetime
        refresh_token_param_name refresh_token_param_type refresh_tokens require_proof_key_for_code_exchange
        require_pushed_authorization_requests require_signed_request_object resolve_distributed_claims
        response_mode response_type reverify revocation_endpoint revocation_endpoint_auth_method
        revocation_token_param_name roles_claim roles_required run_on_preflight scopes scopes_claim scopes_required
        search_user_info session_absolute_timeout session_audience session_bind session_cookie_domain
        session_cookie_http_only session_cookie_name session_cookie_path session_cookie_same_site
        session_cookie_secure session_enforce_same_subject session_hash_storage_key session_hash_subject
        session_idling_timeout session_memcached_host session_memcached_port session_memcached_prefix
        session_memcached_socket session_memcached_ssl session_memcached_ssl_verify session_remember
        session_remember_absolute_timeout session_remember_cookie_name session_remember_rolling_timeout
        session_request_headers session_response_headers session_rolling_timeout session_secret session_storage
        session_store_metadata ssl_verify timeout tls_client_auth_cert_id tls_client_auth_ssl_verify
        token_cache_key_include_scope token_endpoint token_endpoint_auth_method token_exchange
        token_exchange_endpoint token_headers_client token_headers_grants token_headers_names token_headers_prefix
        token_headers_replay token_headers_values token_post_args_client token_post_args_names
        token_post_args_values unauthorized_destroy_session unauthorized_error_message unauthorized_redirect_uri
        unexpected_redirect_uri upstream_access_token_header upstream_access_token_jwk_header upstream_headers
        upstream_headers_claims upstream_headers_names upstream_id_token_header upstream_id_token_jwk_header
        upstream_introspection_header upstream_introspection_jwt_header upstream_refresh_token_header
        upstream_session_id_header upstream_user_info_header upstream_user_info_jwt_header userinfo_accept
        userinfo_endpoint userinfo_headers_client userinfo_headers_names userinfo_headers_values
        userinfo_query_args_client userinfo_query_args_names userinfo_query_args_values using_pseudo_issuer
        verify_claims verify_nonce verify_parameters verify_signature
    ";

    fn validated(config: Value) -> Result<Map<String, Value>, Vec<Violation>> {
        let mut violations = Vec::new();
        let out = normalize(&other_fields(), config.as_object().unwrap(), "config", &mut violations);
        if violations.is_empty() { Ok(out) } else { Err(violations) }
    }

    #[test]
    fn supported_and_other_fields_make_kongs_field_list() {
        let others = other_fields();
        let mut names: Vec<&str> = SUPPORTED.iter().copied().chain(others.iter().map(|f| f.name)).collect();
        let declared = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), declared, "a field is declared twice");
        let kong: Vec<&str> = KONG.split_whitespace().collect();
        assert_eq!(kong.len(), 234);
        assert_eq!(names, kong);
        assert!(others.iter().all(|f| f.unsupported && !f.input_only), "Kong returns every field");
        // Nested records too: a name twice in a record would be one key of its JSON object.
        fn unique(fields: &[Field]) {
            let mut names: Vec<&str> = fields.iter().map(|f| f.name).collect();
            names.sort_unstable();
            assert!(names.windows(2).all(|w| w[0] != w[1]), "{names:?}");
            for f in fields {
                match &f.kind {
                    Kind::Record(inner) => unique(inner),
                    Kind::Array(of) | Kind::Set(of) => unique(std::slice::from_ref(of)),
                    _ => {}
                }
            }
        }
        unique(&others);
    }

    /// A config that leaves every field unset is stored as Kong stores it, and what is stored (a dump of Kong's)
    /// comes back unchanged.
    #[test]
    fn unset_fields_hold_kongs_defaults() {
        let unset = validated(json!({})).unwrap();
        assert_eq!(unset.len(), other_fields().len());
        assert_eq!(unset["session_cookie_name"], "session");
        assert_eq!(unset["session_cookie_same_site"], "Lax");
        assert_eq!(unset["session_remember_absolute_timeout"], 2592000);
        assert_eq!(unset["http_version"], 1.1);
        assert_eq!(unset["response_type"], json!(["code"]));
        assert_eq!(unset["logout_methods"], json!(["POST", "DELETE"]));
        assert_eq!(unset["password_param_type"], json!(["header", "query", "body"]));
        assert_eq!(unset["ignore_signature"], json!([]));
        assert_eq!(unset["redirect_uri"], Value::Null);
        assert_eq!(unset["token_exchange"], Value::Null, "Kong's record with required fields is not filled");
        assert_eq!(unset["proof_of_possession_mtls_from_header"], Value::Null);
        assert_eq!(unset["principals"]["enabled"], false);
        let redis = &unset["redis"];
        assert_eq!(
            (&redis["host"], &redis["port"], &redis["ssl_verify"]),
            (&json!("127.0.0.1"), &json!(6379), &json!(true))
        );
        assert_eq!(
            (&redis["prefix"], &redis["socket"], &redis["password"]),
            (&Value::Null, &Value::Null, &Value::Null)
        );
        assert_eq!(redis["cloud_authentication"]["aws_is_serverless"], true);
        assert_eq!(redis.as_object().unwrap().len(), 24);
        let cluster = unset["cluster_cache_redis"].as_object().unwrap();
        assert_eq!(cluster.len(), 22, "no session prefix nor socket");
        assert_eq!(cluster["keepalive_pool_size"], 256);

        assert_eq!(validated(Value::Object(unset.clone())).unwrap(), unset, "a dump goes back in unchanged");
        let nulls: Map<String, Value> = unset.keys().map(|k| (k.clone(), Value::Null)).collect();
        assert_eq!(validated(Value::Object(nulls)).unwrap(), unset);
    }

    #[test]
    fn a_value_other_than_kongs_default_is_refused_by_name() {
        let only_default = |d: &str| format!("not supported by Gatehouse: only its default ({d}) is accepted");
        let only_empty = "not supported by Gatehouse: only null or an empty value is accepted".to_owned();
        for (config, path, message) in [
            // Sessions.
            (json!({"session_cookie_name": "sid"}), "config.session_cookie_name", only_default("\"session\"")),
            (json!({"session_secret": "s3cr3t-s3cr3t"}), "config.session_secret", only_empty.clone()),
            (json!({"session_storage": "redis"}), "config.session_storage", only_default("\"cookie\"")),
            // The authorization code flow.
            (json!({"redirect_uri": ["https://app.example/cb"]}), "config.redirect_uri", only_empty.clone()),
            (json!({"response_mode": "form_post"}), "config.response_mode", only_default("\"query\"")),
            (json!({"login_methods": ["password"]}), "config.login_methods", only_default("[\"authorization_code\"]")),
            (
                json!({"logout_methods": ["DELETE", "POST"]}),
                "config.logout_methods",
                only_default("[\"POST\",\"DELETE\"]"),
            ),
            // Redis, down to a field of a nested record.
            (json!({"redis": {"host": "redis.internal"}}), "config.redis.host", only_default("\"127.0.0.1\"")),
            (json!({"redis": {"password": "pw"}}), "config.redis.password", only_empty.clone()),
            (
                json!({"cluster_cache_redis": {"cloud_authentication": {"auth_provider": "aws"}}}),
                "config.cluster_cache_redis.cloud_authentication.auth_provider",
                only_empty.clone(),
            ),
            (json!({"redis": {"db": 1}}), "config.redis.db", "unknown field".to_owned()),
        ] {
            assert_eq!(validated(config.clone()), Err(vec![Violation::new(path, message)]), "{config}");
        }
        let at_defaults = json!({"session_cookie_name": "session", "session_secret": null, "session_storage": "cookie",
            "redirect_uri": [], "response_mode": "query", "login_methods": ["authorization_code"],
            "logout_methods": ["POST", "DELETE"], "redis": {"host": "127.0.0.1", "port": 6379.0, "password": ""},
            "cluster_cache_redis": {"cloud_authentication": {"auth_provider": null, "aws_is_serverless": true}}});
        assert_eq!(validated(at_defaults), validated(json!({})));
    }

    /// Kong's `encrypted` fields are marked so, wherever they sit: the control plane seals what they hold.
    #[test]
    fn kongs_secrets_are_marked_encrypted() {
        let others = other_fields();
        let field = |name: &str| others.iter().find(|f| f.name == name).unwrap();
        assert!(field("session_secret").encrypted && field("introspection_headers_values").encrypted);
        let Kind::Record(redis) = &field("redis").kind else { panic!("redis is a record") };
        let encrypted: Vec<&str> = redis.iter().filter(|f| f.encrypted).map(|f| f.name).collect();
        assert_eq!(encrypted, ["password", "sentinel_password"]);
        let Kind::Array(jwk) = &field("client_jwk").kind else { panic!("client_jwk is an array") };
        let Kind::Record(jwk) = &jwk.kind else { panic!("of records") };
        let encrypted: Vec<&str> = jwk.iter().filter(|f| f.encrypted).map(|f| f.name).collect();
        assert_eq!(encrypted, ["d", "dp", "dq", "k", "oth", "p", "q", "qi", "r", "t"]);
    }
}
