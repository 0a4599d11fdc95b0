//! Personal access tokens: bearer credentials of the platform API (`gpat_…`), stored as keyed hashes.

use crate::{PatId, SecretHash, Timestamp};

pub const PAT_PREFIX: &str = "gpat_";
/// Random characters after the prefix: 40 of `[A-Za-z0-9]`, about 238 bits.
pub const PAT_RANDOM_LEN: usize = 40;
pub const DEFAULT_PAT_LIFETIME_DAYS: i64 = 90;
pub const MAX_PAT_LIFETIME_DAYS: i64 = 365;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalAccessToken {
    pub id: PatId,
    pub name: String,
    pub hash: SecretHash,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Token names: 1–64 letters, digits, `.`, `_` or `-`.
pub fn is_valid_pat_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether a bearer value has the shape of a token; checked before hashing so junk is refused cheaply.
pub fn looks_like_pat(value: &str) -> bool {
    value
        .strip_prefix(PAT_PREFIX)
        .is_some_and(|rest| rest.len() == PAT_RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_shapes() {
        assert!(is_valid_pat_name("quickstart"));
        assert!(!is_valid_pat_name("a b"));
        assert!(!is_valid_pat_name(""));
        assert!(looks_like_pat(&format!("gpat_{}", "a".repeat(40))));
        assert!(!looks_like_pat(&format!("kpat_{}", "a".repeat(40))));
        assert!(!looks_like_pat("gpat_short"));
    }
}
