//! Identifiers. Each aggregate has its own type so an id of one kind cannot be passed where another is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7), so ids sort roughly by creation time.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                parse_uuid(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// An auth server's id.
    AuthServerId
);
uuid_id!(
    /// A scope's id.
    ScopeId
);
uuid_id!(
    /// A claim's id.
    ClaimId
);
uuid_id!(
    /// One secret of a client.
    ClientSecretId
);
uuid_id!(
    /// A signing key; also the JWT `kid`.
    SigningKeyId
);
uuid_id!(
    /// A personal access token's id.
    PatId
);
uuid_id!(
    /// An issued access token: its record's id and the JWT `jti`.
    TokenId
);

/// The id was not in the expected format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id")]
pub struct InvalidId;

/// Only the canonical hyphenated form is accepted: `Uuid::parse_str` also takes braces, URNs and the simple form,
/// which would let one entity have several spellings in URLs and filters.
fn parse_uuid(s: &str) -> Result<Uuid, InvalidId> {
    if s.len() != 36 {
        return Err(InvalidId);
    }
    Uuid::try_parse(s).map_err(|_| InvalidId)
}

/// An OAuth client id, also the client's id in the management API: 1–36 ASCII letters, digits, `-` or `_`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,36}$")]
pub struct ClientId(String);

impl ClientId {
    pub const MAX_LEN: usize = 36;
    /// Generated ids look like Kong Identity's: 16 lowercase letters and digits.
    pub const GENERATED_LEN: usize = 16;

    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok { Ok(Self(s.to_owned())) } else { Err(InvalidId) }
    }

    /// Wraps a value that is already known to be valid (read back from the store).
    pub fn from_trusted(s: String) -> Self {
        debug_assert!(Self::parse(&s).is_ok());
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({})", self.0)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(|_| serde::de::Error::custom("invalid client id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_accept_only_the_hyphenated_form() {
        let id = AuthServerId::new();
        assert_eq!(id.to_string().parse::<AuthServerId>(), Ok(id));
        assert!("not-a-uuid".parse::<AuthServerId>().is_err());
        assert!(id.0.simple().to_string().parse::<AuthServerId>().is_err());
        assert!(format!("{{{}}}", id).parse::<AuthServerId>().is_err());
        assert!(format!("urn:uuid:{}", id).parse::<AuthServerId>().is_err());
    }

    #[test]
    fn client_ids_follow_the_documented_pattern() {
        for ok in ["a", "12yvvmecnlghhnfg", "legacy_client-01", &"x".repeat(36)] {
            assert!(ClientId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", &"x".repeat(37), "a b", "a@b", "a+b", "../x", "é", "a/b", "a.b"] {
            assert!(ClientId::parse(bad).is_err(), "{bad}");
        }
    }
}
