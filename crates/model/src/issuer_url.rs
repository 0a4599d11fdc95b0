//! Issuer URLs. An auth server's issuer is computed from the configured `identity_public_url` and the server's
//! random key, never taken from a request: path-based (`http://127.0.0.1:8003` → `http://127.0.0.1:8003/<key>`) or
//! host-based when the template puts `{key}` in the host (`https://{key}.id.example.com`).

use url::Url;

const KEY_PLACEHOLDER: &str = "{key}";
/// Issuer keys are 16 lowercase letters and digits, like Kong Identity's issuer host labels.
pub const ISSUER_KEY_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerUrlTemplate {
    /// `base` has no trailing slash.
    PathBased {
        base: String,
    },
    HostBased {
        template: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerUrlError {
    #[error("identity_public_url [{0}] is not an absolute http(s) URL")]
    NotHttp(String),
    #[error("identity_public_url [{0}] must not have a query or fragment")]
    QueryOrFragment(String),
    #[error("identity_public_url [{0}] may use {{key}} only as the first label of the host")]
    MisplacedKey(String),
}

impl IssuerUrlTemplate {
    pub fn parse(raw: &str) -> Result<Self, IssuerUrlError> {
        let raw = raw.trim_end_matches('/');
        let probe = raw.replace(KEY_PLACEHOLDER, "issuerkeyprobe00");
        let url = Url::parse(&probe).map_err(|_| IssuerUrlError::NotHttp(raw.to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(IssuerUrlError::NotHttp(raw.to_owned()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(IssuerUrlError::QueryOrFragment(raw.to_owned()));
        }
        if !raw.contains(KEY_PLACEHOLDER) {
            return Ok(Self::PathBased { base: raw.to_owned() });
        }
        let host_starts_with_key = raw
            .split_once("://")
            .is_some_and(|(_, rest)| rest.starts_with("{key}.") && rest.matches(KEY_PLACEHOLDER).count() == 1);
        if !host_starts_with_key {
            return Err(IssuerUrlError::MisplacedKey(raw.to_owned()));
        }
        Ok(Self::HostBased { template: raw.to_owned() })
    }

    pub fn issuer(&self, key: &str) -> String {
        match self {
            Self::PathBased { base } => format!("{base}/{key}"),
            Self::HostBased { template } => template.replace(KEY_PLACEHOLDER, key),
        }
    }

    /// The path part of the configured URL (`""` for `http://127.0.0.1:8003`, `/auth` for `https://x/auth`):
    /// requests arrive under it.
    fn prefix(&self) -> &str {
        let raw = match self {
            Self::PathBased { base } => base.as_str(),
            Self::HostBased { template } => template.as_str(),
        };
        let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
        after_scheme.find('/').map_or("", |i| &after_scheme[i..])
    }

    /// Finds the auth server a request is for, and the endpoint path relative to its issuer. Path-based: the key
    /// is the first segment after the prefix; host-based: it is the first label of `Host`, and the rest of the
    /// host must match the template. Also accepts RFC 8414's location,
    /// `/.well-known/oauth-authorization-server{issuer path}`, answered as the issuer's own metadata path.
    pub fn resolve<'a>(&self, host: Option<&str>, path: &'a str) -> Option<(String, std::borrow::Cow<'a, str>)> {
        const RFC8414: &str = "/.well-known/oauth-authorization-server";
        let prefix = self.prefix();
        match self {
            Self::PathBased { .. } => {
                if let Some(issuer_path) = path.strip_prefix(RFC8414).filter(|p| p.starts_with('/')) {
                    let key = issuer_path.strip_prefix(prefix)?.strip_prefix('/')?;
                    return is_issuer_key(key).then(|| (key.to_owned(), RFC8414.into()));
                }
                let rest = path.strip_prefix(prefix)?.strip_prefix('/')?;
                let (key, endpoint) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                is_issuer_key(key).then(|| (key.to_owned(), endpoint.into()))
            }
            Self::HostBased { template } => {
                let host = host?.rsplit_once(':').map_or(host?, |(h, port)| {
                    if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host.unwrap_or_default() }
                });
                let template_host = template.split_once("://")?.1.split('/').next()?;
                let suffix = template_host.strip_prefix(KEY_PLACEHOLDER)?;
                let suffix = suffix.rsplit_once(':').map_or(suffix, |(h, _)| h);
                let lower = host.to_ascii_lowercase();
                let key = lower.strip_suffix(&suffix.to_ascii_lowercase())?;
                if !is_issuer_key(key) {
                    return None;
                }
                let endpoint = if path == format!("{RFC8414}{prefix}") || (prefix.is_empty() && path == RFC8414) {
                    RFC8414
                } else if prefix.is_empty() {
                    path
                } else {
                    path.strip_prefix(prefix)?
                };
                (endpoint.is_empty() || endpoint.starts_with('/')).then(|| (key.to_owned(), endpoint.into()))
            }
        }
    }
}

/// Whether `key` has the shape of an issuer key (checked before any lookup).
pub fn is_issuer_key(key: &str) -> bool {
    key.len() == ISSUER_KEY_LEN && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_host_templates() {
        let p = IssuerUrlTemplate::parse("http://127.0.0.1:8003/").unwrap();
        assert_eq!(p.issuer("abcdefghijklmnop"), "http://127.0.0.1:8003/abcdefghijklmnop");
        let p = IssuerUrlTemplate::parse("https://id.example.com/auth").unwrap();
        assert_eq!(p.issuer("k"), "https://id.example.com/auth/k");
        let h = IssuerUrlTemplate::parse("https://{key}.id.example.com/auth").unwrap();
        assert_eq!(h.issuer("abc"), "https://abc.id.example.com/auth");
    }

    #[test]
    fn resolves_requests_to_issuer_keys() {
        let key = "abcdefghij012345";
        let p = IssuerUrlTemplate::parse("http://127.0.0.1:8003").unwrap();
        assert_eq!(p.resolve(None, &format!("/{key}/oauth/token")), Some((key.to_owned(), "/oauth/token".into())));
        assert_eq!(p.resolve(None, &format!("/{key}")), Some((key.to_owned(), "".into())));
        assert_eq!(
            p.resolve(None, &format!("/.well-known/oauth-authorization-server/{key}")),
            Some((key.to_owned(), "/.well-known/oauth-authorization-server".into()))
        );
        assert_eq!(p.resolve(None, "/health"), None);
        assert_eq!(p.resolve(None, "/SHOUTINGKEY00000/x"), None);
        let prefixed = IssuerUrlTemplate::parse("https://id.example.com/auth").unwrap();
        assert_eq!(
            prefixed.resolve(None, &format!("/auth/{key}/introspect")),
            Some((key.to_owned(), "/introspect".into()))
        );
        assert_eq!(prefixed.resolve(None, &format!("/{key}/introspect")), None);
        assert_eq!(
            prefixed.resolve(None, &format!("/.well-known/oauth-authorization-server/auth/{key}")).map(|r| r.0),
            Some(key.to_owned())
        );

        let h = IssuerUrlTemplate::parse("https://{key}.id.example.com/auth").unwrap();
        let host = format!("{key}.id.example.com");
        assert_eq!(h.resolve(Some(&host), "/auth/oauth/token"), Some((key.to_owned(), "/oauth/token".into())));
        assert_eq!(
            h.resolve(Some(&format!("{key}.ID.example.com:443")), "/auth/jwks").map(|r| r.0),
            Some(key.to_owned())
        );
        assert_eq!(
            h.resolve(Some(&host), "/.well-known/oauth-authorization-server/auth"),
            Some((key.to_owned(), "/.well-known/oauth-authorization-server".into()))
        );
        assert_eq!(h.resolve(Some(&host), "/other/oauth/token"), None);
        assert_eq!(h.resolve(Some("evil.example.com"), "/auth/oauth/token"), None);
        assert_eq!(h.resolve(Some(&format!("{key}.id.example.com.evil.net")), "/auth/x"), None);
        assert_eq!(h.resolve(None, "/auth/x"), None);
    }

    #[test]
    fn refuses_bad_templates() {
        for bad in [
            "ftp://x",
            "not a url",
            "http://x/?a=1",
            "http://x/#f",
            "https://id.example.com/{key}",
            "https://a{key}.example.com",
            "https://{key}.{key}.example.com",
        ] {
            assert!(IssuerUrlTemplate::parse(bad).is_err(), "{bad}");
        }
        assert!(is_issuer_key("abcdefghij012345"));
        assert!(!is_issuer_key("ABCDEFGHIJ012345"));
        assert!(!is_issuer_key("short"));
    }
}
