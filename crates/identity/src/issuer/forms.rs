//! Reading OAuth requests: `application/x-www-form-urlencoded` bodies (RFC 6749 §3.2: no parameter twice) and
//! client credentials from HTTP Basic or the body — never both (§2.3).

use std::collections::HashMap;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use gatehouse_model::SecretString;
use gatehouse_model::oauth::OAuthErrorCode;
use gatehouse_runtime::errors::{OAuthError, Surface};
use gatehouse_runtime::extract::read_body_limited;

#[derive(Debug, Default)]
pub struct Form {
    pairs: HashMap<String, String>,
}

impl Form {
    pub async fn read(parts: &Parts, body: Body) -> Result<Form, OAuthError> {
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidRequest,
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        let bytes = read_body_limited(&parts.headers, body, OAuthError::BODY_LIMIT).await?;
        Self::parse(&bytes)
    }

    pub fn parse(bytes: &[u8]) -> Result<Form, OAuthError> {
        let mut pairs = HashMap::new();
        for (k, v) in form_urlencoded::parse(bytes) {
            if pairs.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidRequest,
                    format!("parameter [{k}] is given more than once"),
                ));
            }
        }
        Ok(Self { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.get(name).map(String::as_str)
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::new(OAuthErrorCode::InvalidRequest, format!("parameter [{name}] is required")))
    }
}

/// What a caller presented to authenticate as a client.
#[derive(Debug)]
pub enum Presented {
    /// An id and a secret. `secrets` holds the value as sent and, when it differs, its form-decoded reading
    /// (RFC 6749 §2.3.1 asks clients to form-encode Basic credentials; many do not).
    Secret {
        client_id: String,
        secrets: Vec<SecretString>,
        via_basic: bool,
    },
    /// A `client_id` without a secret (`token_endpoint_auth_method: none`).
    IdOnly {
        client_id: String,
    },
    Nothing,
}

fn invalid_client(description: &str, via_basic: bool) -> OAuthError {
    let mut e = OAuthError::new(OAuthErrorCode::InvalidClient, description);
    e.basic_challenge = via_basic;
    e
}

pub fn presented(headers: &HeaderMap, form: &Form) -> Result<Presented, OAuthError> {
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then(|| rest.trim().to_owned())
    });
    if let Some(encoded) = basic {
        if form.get("client_secret").is_some() {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidRequest,
                "use one client authentication method, not two",
            ));
        }
        let decoded = STANDARD
            .decode(encoded.as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| invalid_client("malformed Basic credentials", true))?;
        let (id, secret) =
            decoded.split_once(':').ok_or_else(|| invalid_client("malformed Basic credentials", true))?;
        let id = form_decode(id);
        if form.get("client_id").is_some_and(|f| f != id) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidRequest,
                "client_id differs from the Basic credentials",
            ));
        }
        let mut secrets = vec![SecretString::from(secret)];
        let alt = form_decode(secret);
        if alt != secret {
            secrets.push(SecretString::new(alt));
        }
        return Ok(Presented::Secret { client_id: id, secrets, via_basic: true });
    }
    match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Ok(Presented::Secret {
            client_id: id.to_owned(),
            secrets: vec![SecretString::from(secret)],
            via_basic: false,
        }),
        (Some(id), None) => Ok(Presented::IdOnly { client_id: id.to_owned() }),
        (None, Some(_)) => Err(OAuthError::new(OAuthErrorCode::InvalidRequest, "client_secret without client_id")),
        (None, None) => Ok(Presented::Nothing),
    }
}

fn form_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(s: &str) -> Form {
        Form::parse(s.as_bytes()).unwrap()
    }

    fn basic(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Basic {}", STANDARD.encode(v)).parse().unwrap());
        h
    }

    #[test]
    fn forms_refuse_repeated_parameters() {
        assert!(Form::parse(b"a=1&a=2").is_err());
        assert_eq!(form("grant_type=client_credentials&scope=a+b").get("scope"), Some("a b"));
    }

    #[test]
    fn credentials_from_basic_or_post_never_both() {
        match presented(&basic("id:se%2Bcret"), &form("")).unwrap() {
            Presented::Secret { client_id, secrets, via_basic } => {
                assert_eq!(client_id, "id");
                assert_eq!(
                    secrets.iter().map(|s| s.expose().to_owned()).collect::<Vec<_>>(),
                    vec!["se%2Bcret", "se+cret"]
                );
                assert!(via_basic);
            }
            other => panic!("{other:?}"),
        }
        assert!(presented(&basic("id:s"), &form("client_secret=s")).is_err());
        assert!(presented(&basic("id:s"), &form("client_id=other")).is_err());
        assert!(presented(&basic("id:s"), &form("client_id=id")).is_ok());
        assert!(presented(&basic("no-colon"), &form("")).is_err());
        let mut bad = HeaderMap::new();
        bad.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert!(presented(&bad, &form("")).is_err());
        assert!(matches!(
            presented(&HeaderMap::new(), &form("client_id=a&client_secret=b")).unwrap(),
            Presented::Secret { via_basic: false, .. }
        ));
        assert!(matches!(presented(&HeaderMap::new(), &form("client_id=a")).unwrap(), Presented::IdOnly { .. }));
        assert!(presented(&HeaderMap::new(), &form("client_secret=b")).is_err());
        assert!(matches!(presented(&HeaderMap::new(), &form("")).unwrap(), Presented::Nothing));
    }
}
