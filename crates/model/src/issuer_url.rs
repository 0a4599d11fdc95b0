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
