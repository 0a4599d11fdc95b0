//! Console sessions: server-side state keyed by a random id; the browser holds the id and its HMAC under a key
//! derived from the master key (`DerivedKeys::console_session_tag`), in an `HttpOnly`, `SameSite=Strict` cookie.
//!
//! A session remembers the personal access token it was opened with, because every page calls the platform APIs
//! with it: the console can do exactly what that token can. The token is checked again on every request, so
//! revoking it (or its expiry) ends its sessions at the next click.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;
use axum::http::header;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use gatehouse_model::pat::{PersonalAccessToken, looks_like_pat};
use gatehouse_model::{PatId, SecretHash, SecretString, Timestamp};
use gatehouse_runtime::Services;
use gatehouse_store::StoreError;

/// The session cookie's name.
pub const COOKIE: &str = "gatehouse_console";
const ID_LEN: usize = 32;
/// Sessions kept at most; the least recently used gives way beyond it.
const MAX_SESSIONS: usize = 10_000;

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    /// Seconds without a request after which a session ends.
    pub idle_secs: i64,
    /// Seconds after sign-in after which a session ends however busy.
    pub absolute_secs: i64,
    /// Mark the cookie `Secure` (the platform listener serves TLS).
    pub secure_cookie: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self { idle_secs: 30 * 60, absolute_secs: 12 * 3600, secure_cookie: false }
    }
}

struct Session {
    token: SecretString,
    token_hash: SecretHash,
    token_id: PatId,
    token_name: String,
    csrf: String,
    created: Timestamp,
    seen: Timestamp,
}

/// The signed-in caller of one request.
#[derive(Debug, Clone)]
pub struct Current {
    id: [u8; ID_LEN],
    pub token: SecretString,
    pub token_id: PatId,
    pub token_name: String,
    pub csrf: String,
}

impl Current {
    /// Whether a form's CSRF token is this session's (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        presented.len() == self.csrf.len() && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

/// Why a sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("This is not a valid, unexpired personal access token.")]
    BadToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Sessions {
    services: Services,
    settings: SessionSettings,
    map: Mutex<HashMap<[u8; ID_LEN], Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn new(services: Services, settings: SessionSettings) -> Self {
        Self { services, settings, map: Mutex::new(HashMap::new()) }
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; ID_LEN], Session>> {
        // A panic while holding the map cannot leave a session half-written: entries are replaced whole.
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks a pasted token and opens a session for it; returns the cookie value.
    pub async fn sign_in(&self, token: &str) -> Result<String, SignInError> {
        let token = token.trim();
        if !looks_like_pat(token) {
            return Err(SignInError::BadToken);
        }
        let hash = self.services.keys.hash_pat(token);
        let pat = self.valid_pat(&hash).await?.ok_or(SignInError::BadToken)?;
        let id: [u8; ID_LEN] = gatehouse_runtime::random::bytes();
        let now = self.services.clock.now();
        let session = Session {
            token: SecretString::new(token.to_owned()),
            token_hash: hash,
            token_id: pat.id,
            token_name: pat.name,
            csrf: URL_SAFE_NO_PAD.encode(gatehouse_runtime::random::bytes::<32>()),
            created: now,
            seen: now,
        };
        let mut map = self.lock();
        self.prune(&mut map, now);
        map.insert(id, session);
        Ok(self.cookie_value(&id))
    }

    async fn valid_pat(&self, hash: &SecretHash) -> Result<Option<PersonalAccessToken>, StoreError> {
        let now = self.services.clock.now();
        Ok(self.services.store.find_pat(hash).await?.filter(|pat| pat.expires_at > now))
    }

    fn prune(&self, map: &mut HashMap<[u8; ID_LEN], Session>, now: Timestamp) {
        map.retain(|_, s| self.alive(s, now));
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.seen).map(|(id, _)| *id) else { break };
            map.remove(&oldest);
        }
    }

    fn alive(&self, s: &Session, now: Timestamp) -> bool {
        now < s.seen.plus_secs(self.settings.idle_secs) && now < s.created.plus_secs(self.settings.absolute_secs)
    }

    fn cookie_value(&self, id: &[u8; ID_LEN]) -> String {
        let tag = self.services.keys.console_session_tag(id);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(id), URL_SAFE_NO_PAD.encode(tag))
    }

    /// The session id a cookie names, when its tag is this master key's.
    fn verified_id(&self, headers: &HeaderMap) -> Option<[u8; ID_LEN]> {
        let value = cookie(headers, COOKIE)?;
        let (id, tag) = value.split_once('.')?;
        let id: [u8; ID_LEN] = URL_SAFE_NO_PAD.decode(id).ok()?.try_into().ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.services.keys.verify_console_session(&id, &tag).then_some(id)
    }

    /// The request's session, when its cookie is genuine, the session has not expired and its token is still
    /// valid. An expired session or a revoked token ends the session.
    pub async fn current(&self, headers: &HeaderMap) -> Result<Option<Current>, StoreError> {
        let Some(id) = self.verified_id(headers) else { return Ok(None) };
        let now = self.services.clock.now();
        let hash = {
            let mut map = self.lock();
            let Some(session) = map.get(&id) else { return Ok(None) };
            if !self.alive(session, now) {
                map.remove(&id);
                return Ok(None);
            }
            session.token_hash.clone()
        };
        if self.valid_pat(&hash).await?.is_none() {
            self.lock().remove(&id);
            return Ok(None);
        }
        let mut map = self.lock();
        let Some(session) = map.get_mut(&id) else { return Ok(None) };
        session.seen = now;
        Ok(Some(Current {
            id,
            token: session.token.clone(),
            token_id: session.token_id,
            token_name: session.token_name.clone(),
            csrf: session.csrf.clone(),
        }))
    }

    pub fn sign_out(&self, current: &Current) {
        self.lock().remove(&current.id);
    }

    /// Ends every session opened with a token (it was just revoked).
    pub fn end_for_token(&self, token: PatId) {
        self.lock().retain(|_, s| s.token_id != token);
    }

    /// The `Set-Cookie` value that opens a session.
    pub fn set_cookie(&self, value: &str) -> String {
        let secure = if self.settings.secure_cookie { "; Secure" } else { "" };
        format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}")
    }

    /// The `Set-Cookie` value that removes it.
    pub fn clear_cookie(&self) -> String {
        let secure = if self.settings.secure_cookie { "; Secure" } else { "" };
        format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}")
    }
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; gatehouse_console=x.y; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE), Some("x.y"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
