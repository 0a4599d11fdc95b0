//! `basic-auth` (priority 1100): identifies the consumer by a username and password in `Proxy-Authorization`,
//! then `Authorization` (`Basic base64(username:password)`), as Kong's `kong/plugins/basic-auth/access.lua` does;
//! sets the consumer's headers and `X-Credential-Identifier` (the credential's username), or answers Kong's 401
//! (`{"message":"Unauthorized"}`) with `WWW-Authenticate: Basic realm="…"`. The proxy drops `Proxy-Authorization`
//! as a hop-by-hop header before plugins run, so in practice `Authorization` is what is read.
//!
//! A presented password is hashed as Kong stores passwords (`sha1(password .. consumer_id)`, `consumers.rs` keeps
//! each credential's hash as bytes) and compared in constant time; the snapshot never carries a password.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use gatehouse_model::gateway::plugins::basic_auth::{Config, INFO, NAME};

use super::key_auth::X_CREDENTIAL_IDENTIFIER;
use super::{Credential, Flow, Phases, Plugin, PluginDef, RequestContext, Shared, auth};

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: true, rewrite: false, response: false, log: false },
    build: |config, _shared: &Shared| Ok(Arc::new(BasicAuth::new(config)?)),
};

/// `ngx.decode_base64`: the standard alphabet, padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug)]
pub struct BasicAuth {
    anonymous: Option<String>,
    hide_credentials: bool,
    /// `Basic realm="…"`: made once.
    challenge: HeaderValue,
}

impl BasicAuth {
    pub fn new(config: &Map<String, Value>) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let challenge = HeaderValue::from_str(&format!("Basic realm=\"{}\"", config.realm))
            .map_err(|_| format!("realm {:?} cannot be a header value", config.realm))?;
        Ok(Self {
            anonymous: config.anonymous.filter(|a| !a.is_empty()),
            hide_credentials: config.hide_credentials,
            challenge,
        })
    }

    fn refuse(&self, ctx: &RequestContext<'_>) -> Flow {
        let body = json!({"message": "Unauthorized", "request_id": ctx.request_id});
        Flow::Respond(auth::json_response(StatusCode::UNAUTHORIZED, &body, Some(self.challenge.clone())))
    }

    /// Kong's `retrieve_credentials`: the header's username and password, the header removed with
    /// `hide_credentials` (whether or not it held any).
    fn retrieve(&self, headers: &mut HeaderMap, name: HeaderName) -> Option<(String, String)> {
        let found = headers.get(&name).and_then(|v| v.to_str().ok()).and_then(credentials);
        if self.hide_credentials {
            headers.remove(name);
        }
        found
    }

    /// Kong's `do_authentication`: `true` once the consumer is set.
    fn authenticate(&self, ctx: &mut RequestContext<'_>) -> bool {
        if !ctx.headers.contains_key(header::AUTHORIZATION) && !ctx.headers.contains_key(header::PROXY_AUTHORIZATION) {
            return false;
        }
        let mut found = None;
        if let Some((username, password)) = self.retrieve(ctx.headers, header::PROXY_AUTHORIZATION) {
            found = ctx.consumers.by_basic_username(&username).map(|c| (c, password));
        }
        if found.is_none() {
            let (username, password) = match self.retrieve(ctx.headers, header::AUTHORIZATION) {
                Some(pair) => pair,
                None => return false,
            };
            found = ctx.consumers.by_basic_username(&username).map(|c| (c, password));
        }
        let Some((credential, password)) = found else { return false };
        if !credential.verifies(&password) {
            return false;
        }
        let consumer = credential.consumer.clone();
        let credential_id = credential.credential_id.clone();
        match &credential.username_header {
            Some(username) => ctx.headers.insert(X_CREDENTIAL_IDENTIFIER, username.clone()),
            None => ctx.headers.remove(X_CREDENTIAL_IDENTIFIER),
        };
        auth::set_consumer_headers(ctx.headers, &consumer);
        ctx.headers.remove(auth::X_ANONYMOUS_CONSUMER);
        ctx.consumer = Some(consumer);
        let len = credential_id.len();
        ctx.credential = Credential::in_header(&credential_id, 0..len);
        true
    }
}

/// Kong's `\s*[Bb]asic\s*(.+)` (unanchored), base64, then `([^:]+):(.*)` (unanchored) over the decoded text.
fn credentials(value: &str) -> Option<(String, String)> {
    let bytes = value.as_bytes();
    let at = (0..value.len().saturating_sub(4))
        .find(|&i| matches!(bytes[i], b'B' | b'b') && &value[i + 1..i + 5] == "asic")?;
    let encoded = value[at + 5..].trim_start_matches(|c: char| c.is_ascii_whitespace());
    if encoded.is_empty() {
        return None;
    }
    let decoded = BASE64.decode(encoded.trim_end()).ok()?;
    let decoded = String::from_utf8_lossy(&decoded);
    // The first colon that follows at least one other character; the username is the run of non-colons before it.
    let start = decoded.find(|c: char| c != ':')?;
    let colon = decoded[start..].find(':')? + start;
    let password = decoded[colon + 1..].split('\n').next().unwrap_or_default();
    Some((decoded[start..colon].to_owned(), password.to_owned()))
}

#[async_trait]
impl Plugin for BasicAuth {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        // "Logical OR": with `anonymous` set, a request another authentication plugin already accepted passes.
        if let Some(anonymous) = &self.anonymous
            && auth::accepted_by_another(anonymous, ctx)
        {
            return Flow::Continue;
        }
        auth::remove_spoofed(ctx.headers);
        if self.authenticate(ctx) {
            return Flow::Continue;
        }
        match &self.anonymous {
            Some(anonymous) => auth::as_anonymous(ctx, anonymous, NAME),
            None => self.refuse(ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_read_as_kongs_patterns_read_them() {
        let basic = |user_pass: &str| format!("Basic {}", BASE64.encode(user_pass));
        assert_eq!(credentials(&basic("alice:s3cret")), Some(("alice".into(), "s3cret".into())));
        assert_eq!(credentials(&basic("alice:pa:ss")), Some(("alice".into(), "pa:ss".into())));
        assert_eq!(credentials(&basic("alice:")), Some(("alice".into(), String::new())));
        assert_eq!(credentials(&basic(":x:y")), Some(("x".into(), "y".into())), "Kong's unanchored match");
        assert_eq!(credentials(&basic("nocolon")), None);
        assert_eq!(credentials(&format!("  basic{}", BASE64.encode("a:b"))), Some(("a".into(), "b".into())));
        assert_eq!(credentials("Bearer abc"), None);
        assert_eq!(credentials("Basic !!!"), None);
        assert_eq!(credentials("Basic "), None);
    }
}
