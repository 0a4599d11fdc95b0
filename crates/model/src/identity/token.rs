//! Issued access tokens: one record per minted token, listable and revocable (`/clients/{id}/tokens`).

use serde::Serialize;
use uuid::Uuid;

use crate::listing::{CollectionSpec, Field, FilterKind};
use crate::{AuthServerId, ClientId, SigningKeyId, Timestamp, TokenId};

pub const COLLECTION: CollectionSpec =
    CollectionSpec { filters: &[(Field::Id, FilterKind::Equals)], sorts: &[Field::CreatedAt, Field::ExpiresAt] };

/// Records are kept this long after their token expires, then pruned.
pub const RECORD_RETENTION_SECS: i64 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub id: TokenId,
    #[serde(skip)]
    pub auth_server_id: AuthServerId,
    #[serde(skip)]
    pub client_id: ClientId,
    /// The key that signed it: retired keys stay published while tokens they signed are alive.
    #[serde(skip)]
    pub signing_key_id: SigningKeyId,
    pub granted_scope_names: Vec<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A `jti` that also says when the token was issued, to the microsecond: a UUIDv7 whose 12 `rand_a` bits carry
/// the sub-millisecond fraction (RFC 9562 §6.2, method 3). Introspection compares it with the client's
/// `created_at`, so a token never becomes valid again for a client re-created with the same id.
pub fn new_token_id(issued_at: Timestamp, random: [u8; 10]) -> TokenId {
    let micros = issued_at.micros().max(0) as u64;
    let millis = micros / 1000;
    let fraction = ((micros % 1000) * 4096 / 1000) as u16;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70 | (fraction >> 8) as u8;
    bytes[7] = (fraction & 0xff) as u8;
    bytes[8..].copy_from_slice(&random[2..]);
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    TokenId(Uuid::from_bytes(bytes))
}

/// The issue time encoded by [`new_token_id`]; `None` for ids that are not version 7.
pub fn issued_at(id: TokenId) -> Option<Timestamp> {
    let b = id.0.as_bytes();
    if b[6] >> 4 != 7 {
        return None;
    }
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&b[..6]);
    let millis = u64::from_be_bytes(ms);
    let fraction = u64::from(b[6] & 0x0f) << 8 | u64::from(b[7]);
    // Rounding up undoes the rounding down of the encoding exactly for whole microseconds.
    let sub = (fraction * 1000).div_ceil(4096);
    i64::try_from(millis * 1000 + sub).ok().map(Timestamp::from_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_carry_their_issue_time_to_the_microsecond() {
        for micros in [0, 1, 999, 1000, 1_758_864_650_551_157, 1_800_000_000_123_456] {
            let t = Timestamp::from_micros(micros);
            let id = new_token_id(t, [0xab; 10]);
            assert_eq!(id.0.get_version_num(), 7);
            assert_eq!(id.0.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(issued_at(id), Some(t), "{micros}");
        }
        for x in 0..1000 {
            let t = Timestamp::from_micros(1_700_000_000_000_000 + x);
            assert_eq!(issued_at(new_token_id(t, [7; 10])), Some(t));
        }
        assert_eq!(issued_at(TokenId(Uuid::new_v4())), None);
        let a = new_token_id(Timestamp::from_micros(10), [1; 10]);
        let b = new_token_id(Timestamp::from_micros(11), [0; 10]);
        assert!(a.0 < b.0, "ids sort by issue time");
    }
}
