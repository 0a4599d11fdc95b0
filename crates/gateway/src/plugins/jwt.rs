//! `jwt` (priority 1450): identifies the consumer by a JWT signed with one of its `jwt_secrets`, as Kong's OSS
//! `kong/plugins/jwt/handler.lua` does. The token is looked for in the query (`uri_param_names`), then cookies
//! (`cookie_names`), then `Bearer` headers (`header_names`); more than one distinct token is refused. The claim
//! `key_claim_name` (default `iss`, read from the claims, then the header) names the credential; its `algorithm`
//! must be the token's `alg` exactly, and the signature is checked with its HMAC secret (base64url-decoded with
//! `secret_is_base64`) or its public key (loaded once per configuration, `consumers.rs`). Then `claims_to_verify`
//! (`exp`, `nbf`) and `maximum_expiration` against the node's clock. Kong's 401 bodies and `WWW-Authenticate:
//! Bearer` challenges; the consumer's headers and `X-Credential-Identifier` (the credential's `key`) on success.
//!
//! Signatures are checked by jsonwebtoken's `crypto::verify` (aws-lc-rs; HMAC tags compared in constant time),
//! pinned to the credential's algorithm: a token cannot pick its verifier.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value, json};

use gatehouse_model::gateway::entities::JWT_ALGORITHMS;
use gatehouse_model::gateway::plugins::jwt::{Config, INFO, NAME};
use gatehouse_model::{Clock, SharedClock};

use super::key_auth::X_CREDENTIAL_IDENTIFIER;
use super::{Credential, Flow, Phases, Plugin, PluginDef, RequestContext, Shared, auth};

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: true, rewrite: false, response: false, log: false },
    build: |config, shared: &Shared| Ok(Arc::new(Jwt::new(config, shared)?)),
};

/// Kong's `ngx.base64.decode_base64url` after its padding: the URL-safe alphabet, padded or not.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Exp,
    Nbf,
}

#[derive(Debug)]
pub struct Jwt {
    uri_param_names: Box<[String]>,
    cookie_names: Box<[String]>,
    /// As Kong's header table finds them: lower case, `_` read as `-`.
    header_names: Box<[HeaderName]>,
    key_claim_name: String,
    secret_is_base64: bool,
    claims_to_verify: Box<[Claim]>,
    anonymous: Option<String>,
    run_on_preflight: bool,
    maximum_expiration: f64,
    /// `Bearer` (or `Bearer realm="…"`), and the same with `error="invalid_token"`: made once.
    challenge: HeaderValue,
    challenge_invalid: HeaderValue,
    clock: SharedClock,
}

/// Why a request was not authenticated: Kong's 401 body and which challenge goes with it.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// No token at all: `{"message": "Unauthorized"}` with the plain challenge.
    NoToken,
    Message(Cow<'static, str>),
    /// Claim checks: Kong answers with the errors table itself (`{"exp": "token expired"}`).
    Claims(Map<String, Value>),
}

/// The tokens a request carries, as Kong's `retrieve_tokens` collects them (a set: one token sent twice is one).
#[derive(Default)]
struct Found<'a> {
    tokens: Vec<Cow<'a, str>>,
    /// A bare `?jwt` (Kong reads `true`, not a string).
    not_text: bool,
}

impl<'a> Found<'a> {
    fn add(&mut self, token: Cow<'a, str>) {
        if !token.is_empty() && !self.tokens.contains(&token) {
            self.tokens.push(token);
        }
    }
}

impl Jwt {
    pub fn new(config: &Map<String, Value>, shared: &Shared) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let (challenge, challenge_invalid) = match &config.realm {
            Some(realm) => {
                (format!("Bearer realm=\"{realm}\""), format!("Bearer realm=\"{realm}\", error=\"invalid_token\""))
            }
            None => ("Bearer".to_owned(), "Bearer error=\"invalid_token\"".to_owned()),
        };
        let header_value = |text: String| {
            HeaderValue::from_str(&text).map_err(|_| format!("realm {:?} cannot be a header value", config.realm))
        };
        let header_names = config
            .header_names
            .unwrap_or_default()
            .into_iter()
            .filter_map(|name| HeaderName::from_bytes(name.to_ascii_lowercase().replace('_', "-").as_bytes()).ok())
            .collect();
        let claims_to_verify = config
            .claims_to_verify
            .unwrap_or_default()
            .iter()
            .filter_map(|c| match c.as_str() {
                "exp" => Some(Claim::Exp),
                "nbf" => Some(Claim::Nbf),
                _ => None,
            })
            .collect();
        Ok(Self {
            uri_param_names: config.uri_param_names.unwrap_or_default().into_boxed_slice(),
            cookie_names: config.cookie_names.unwrap_or_default().into_boxed_slice(),
            header_names,
            key_claim_name: config.key_claim_name.unwrap_or_else(|| "iss".to_owned()),
            secret_is_base64: config.secret_is_base64,
            claims_to_verify,
            anonymous: config.anonymous.filter(|a| !a.is_empty()),
            run_on_preflight: config.run_on_preflight,
            maximum_expiration: config.maximum_expiration.unwrap_or(0.0),
            challenge: header_value(challenge)?,
            challenge_invalid: header_value(challenge_invalid)?,
            clock: shared.clock.clone(),
        })
    }

    fn refuse(&self, refusal: Refusal) -> Flow {
        let (body, challenge) = match refusal {
            Refusal::NoToken => (json!({"message": "Unauthorized"}), &self.challenge),
            Refusal::Message(message) => (json!({ "message": message }), &self.challenge_invalid),
            Refusal::Claims(errors) => (Value::Object(errors), &self.challenge_invalid),
        };
        Flow::Respond(auth::json_response(StatusCode::UNAUTHORIZED, &body, Some(challenge.clone())))
    }

    /// Kong's `retrieve_tokens`: query parameters, then cookies, then `Bearer` headers.
    fn tokens<'r>(&self, query: Option<&'r str>, headers: &'r HeaderMap) -> Found<'r> {
        let mut found = Found::default();
        if let Some(query) = query {
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (raw_key, raw_value) = match pair.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (pair, None),
                };
                if !self.uri_param_names.iter().any(|n| decode(raw_key) == n.as_str()) {
                    continue;
                }
                match raw_value {
                    Some(v) => found.add(decode(v)),
                    None => found.not_text = true,
                }
            }
        }
        for name in &self.cookie_names {
            if let Some(value) = cookie(headers, name) {
                found.add(Cow::Borrowed(value));
            }
        }
        for name in &self.header_names {
            if let Some(token) = headers.get(name).and_then(|v| v.to_str().ok()).and_then(bearer) {
                found.add(Cow::Borrowed(token));
            }
        }
        found
    }

    /// Kong's `do_authentication`, up to the consumer.
    fn authenticate(&self, ctx: &mut RequestContext<'_>) -> Result<(), Refusal> {
        let found = self.tokens(ctx.query.as_deref(), ctx.headers);
        let token = match (found.tokens.as_slice(), found.not_text) {
            ([], false) => return Err(Refusal::NoToken),
            ([], true) => return Err(message("Unrecognizable token")),
            ([one], false) => one,
            _ => return Err(message("Multiple tokens provided")),
        };
        let parsed = Parsed::new(token).map_err(|e| Refusal::Message(Cow::Owned(format!("Bad token; {e}"))))?;
        let claim = &self.key_claim_name;
        let key = match parsed.claims.get(claim).filter(|v| !is_falsy(v)).or_else(|| parsed.header.get(claim)) {
            None => return Err(owned(format!("No mandatory '{claim}' in claims"))),
            Some(v) if is_falsy(v) => return Err(owned(format!("No mandatory '{claim}' in claims"))),
            Some(Value::String(s)) if s.is_empty() => return Err(owned(format!("Invalid '{claim}' in claims"))),
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(owned(format!("No credentials found for given '{claim}'"))),
        };
        let Some(credential) = ctx.consumers.by_jwt_key(key) else {
            return Err(owned(format!("No credentials found for given '{claim}'")));
        };
        if *parsed.alg != *credential.algorithm_name {
            return Err(message("Invalid algorithm"));
        }
        let Some(algorithm) = credential.algorithm else { return Err(message("Invalid algorithm")) };
        let hmac;
        let verifier: &DecodingKey = if credential.algorithm_name.starts_with("HS") {
            let secret = credential.secret.as_ref().map(|s| s.expose().as_bytes());
            let bytes = match secret {
                Some(secret) if self.secret_is_base64 => BASE64URL.decode(secret).ok().map(Cow::Owned),
                Some(secret) => Some(Cow::Borrowed(secret)),
                None => None,
            };
            let Some(bytes) = bytes else { return Err(message("Invalid key/secret")) };
            hmac = DecodingKey::from_secret(&bytes);
            &hmac
        } else {
            match &credential.public_key {
                Some(key) => key,
                None => return Err(message("Invalid key/secret")),
            }
        };
        if !verify(&parsed, verifier, algorithm) {
            return Err(message("Invalid signature"));
        }
        let now = self.clock.now().secs() as f64;
        let mut errors = Map::new();
        for claim in self.claims_to_verify.iter() {
            let (name, value) = match claim {
                Claim::Exp => ("exp", parsed.claims.get("exp")),
                Claim::Nbf => ("nbf", parsed.claims.get("nbf")),
            };
            let problem = match (claim, value.and_then(Value::as_f64)) {
                (_, None) => "must be a number",
                (Claim::Exp, Some(exp)) if exp <= now => "token expired",
                (Claim::Nbf, Some(nbf)) if nbf > now => "token not valid yet",
                _ => continue,
            };
            errors.insert(name.to_owned(), json!(problem));
        }
        if !errors.is_empty() {
            return Err(Refusal::Claims(errors));
        }
        if self.maximum_expiration > 0.0 {
            let exp = parsed.claims.get("exp").and_then(Value::as_f64);
            if exp.is_none_or(|exp| exp - now > self.maximum_expiration) {
                let mut errors = Map::new();
                errors.insert("exp".into(), json!("exceeds maximum allowed expiration"));
                return Err(Refusal::Claims(errors));
            }
        }
        let consumer = credential.consumer.clone();
        let credential_id = credential.credential_id.clone();
        match &credential.key_header {
            Some(key) => ctx.headers.insert(X_CREDENTIAL_IDENTIFIER, key.clone()),
            None => ctx.headers.remove(X_CREDENTIAL_IDENTIFIER),
        };
        auth::set_consumer_headers(ctx.headers, &consumer);
        ctx.headers.remove(auth::X_ANONYMOUS_CONSUMER);
        ctx.consumer = Some(consumer);
        // Kong's credential is the jwt_secrets row: rate limiting by credential counts per credential id.
        let len = credential_id.len();
        ctx.credential = Credential::in_header(&credential_id, 0..len);
        Ok(())
    }
}

fn message(text: &'static str) -> Refusal {
    Refusal::Message(Cow::Borrowed(text))
}

fn owned(text: String) -> Refusal {
    Refusal::Message(Cow::Owned(text))
}

/// What Lua's `or` skips: a missing value reads as `nil`, and `false` is false.
fn is_falsy(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(false))
}

/// A token split and decoded as Kong's `jwt_parser` does: header and claims JSON objects, a supported `alg`, a
/// decodable signature.
#[derive(Debug)]
struct Parsed<'t> {
    /// `header.claims`, the signed text.
    message: &'t str,
    signature: &'t str,
    alg: String,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl<'t> Parsed<'t> {
    fn new(token: &'t str) -> Result<Self, &'static str> {
        // Kong's tokenizer: three parts at most, the last one keeping any further dot.
        let mut parts = token.splitn(3, '.');
        let (Some(header_64), Some(claims_64), Some(signature)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("invalid JSON");
        };
        let object = |part: &str| -> Option<Map<String, Value>> {
            let bytes = BASE64URL.decode(part).ok()?;
            match serde_json::from_slice(&bytes).ok()? {
                Value::Object(map) => Some(map),
                _ => None,
            }
        };
        let (Some(header), Some(claims)) = (object(header_64), object(claims_64)) else { return Err("invalid JSON") };
        let alg = match header.get("alg") {
            Some(Value::String(alg)) if JWT_ALGORITHMS.contains(&alg.as_str()) => alg.clone(),
            _ => return Err("invalid alg"),
        };
        if BASE64URL.decode(signature).is_err() {
            return Err("invalid signature");
        }
        let message = &token[..header_64.len() + 1 + claims_64.len()];
        Ok(Self { message, signature: signature.trim_end_matches('='), alg, header, claims })
    }
}

fn verify(parsed: &Parsed<'_>, key: &DecodingKey, algorithm: Algorithm) -> bool {
    jsonwebtoken::crypto::verify(parsed.signature, parsed.message.as_bytes(), key, algorithm).unwrap_or(false)
}

/// The value of the first cookie named `name` (nginx's `$cookie_name`).
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
        .filter(|v| !v.is_empty())
}

/// Kong's `\s*[Bb]earer\s+(.+)`, unanchored: the text after the first `Bearer` (or `bearer`) and its whitespace.
fn bearer(value: &str) -> Option<&str> {
    let bytes = value.as_bytes();
    let mut from = 0;
    while let Some(at) = value[from..].find("earer").map(|i| i + from) {
        from = at + 1;
        if at == 0 || !matches!(bytes[at - 1], b'B' | b'b') {
            continue;
        }
        let rest = &value[at + 5..];
        let spaces = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_whitespace()).len();
        if spaces == 0 {
            continue;
        }
        if spaces < rest.len() {
            return Some(&rest[spaces..]);
        }
        // Only whitespace after it: the regex backtracks and takes all but the first whitespace character.
        if spaces >= 2 {
            return Some(&rest[1..]);
        }
    }
    None
}

fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(raw);
    }
    let mut pairs = form_urlencoded::parse(raw.as_bytes());
    pairs.next().map(|(k, _)| Cow::Owned(k.into_owned())).unwrap_or(Cow::Borrowed(""))
}

#[async_trait]
impl Plugin for Jwt {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        // "Logical OR": with `anonymous` set, a request another authentication plugin already accepted passes.
        if let Some(anonymous) = &self.anonymous
            && auth::accepted_by_another(anonymous, ctx)
        {
            return Flow::Continue;
        }
        auth::remove_spoofed(ctx.headers);
        if !self.run_on_preflight && ctx.method == Method::OPTIONS {
            return Flow::Continue;
        }
        match self.authenticate(ctx) {
            Ok(()) => Flow::Continue,
            Err(refusal) => match &self.anonymous {
                Some(anonymous) => auth::as_anonymous(ctx, anonymous, NAME),
                None => self.refuse(refusal),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_is_found_as_kongs_regex_finds_it() {
        assert_eq!(bearer("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer("bearer   abc"), Some("abc"));
        assert_eq!(bearer("  Bearer x y"), Some("x y"));
        assert_eq!(bearer("Token xBearer abc"), Some("abc"), "unanchored, as ngx.re.gmatch");
        assert_eq!(bearer("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("BEARER abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; jwt=tok; jwt=second"));
        assert_eq!(cookie(&headers, "jwt"), Some("tok"));
        assert_eq!(cookie(&headers, "b"), None);
    }

    #[test]
    fn tokens_are_parsed_as_kongs_parser_parses_them() {
        let part = |v: Value| BASE64URL.encode(v.to_string());
        let header = part(json!({"alg": "HS256", "typ": "JWT"}));
        let claims = part(json!({"iss": "k"}));
        let token = format!("{header}.{claims}.c2ln");
        let parsed = Parsed::new(&token).unwrap();
        assert_eq!((parsed.alg.as_str(), parsed.signature), ("HS256", "c2ln"));
        assert_eq!(parsed.message, format!("{header}.{claims}"));
        assert_eq!(Parsed::new("abc").unwrap_err(), "invalid JSON");
        assert_eq!(Parsed::new(&format!("{header}.{claims}")).unwrap_err(), "invalid JSON");
        assert_eq!(Parsed::new(&format!("{header}.bm90IGpzb24.c2ln")).unwrap_err(), "invalid JSON");
        let none = part(json!({"alg": "none"}));
        assert_eq!(Parsed::new(&format!("{none}.{claims}.c2ln")).unwrap_err(), "invalid alg");
        assert_eq!(Parsed::new(&format!("{header}.{claims}.%%%")).unwrap_err(), "invalid signature");
    }
}
