//! Signing algorithms and the stored form of a signing key.

use serde::{Deserialize, Serialize};

use crate::body::Choice;
use crate::{AuthServerId, SigningKeyId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SigningAlgorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    /// Gatehouse addition: ECDSA P-256, far cheaper to sign than RSA.
    ES256,
    /// Gatehouse addition: Ed25519.
    EdDSA,
}

impl Choice for SigningAlgorithm {
    const ALL: &'static [Self] =
        &[Self::RS256, Self::RS384, Self::RS512, Self::PS256, Self::PS384, Self::PS512, Self::ES256, Self::EdDSA];

    fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }
}

impl SigningAlgorithm {
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512)
    }
}

/// A key pair of an auth server. The private key is stored only encrypted with the master key; the public half
/// is kept as a JWK so JWKS is served without touching private material.
#[derive(Clone)]
pub struct SigningKey {
    pub id: SigningKeyId,
    pub auth_server_id: AuthServerId,
    pub algorithm: SigningAlgorithm,
    /// Nonce and AES-256-GCM ciphertext of the PKCS#8 document.
    pub encrypted_private_key: Vec<u8>,
    pub public_jwk: serde_json::Value,
    pub created_at: Timestamp,
    /// Set when a newer key took over; the key stays published until `retired_at` plus the longest token life.
    pub retired_at: Option<Timestamp>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("auth_server_id", &self.auth_server_id)
            .field("algorithm", &self.algorithm)
            .field("encrypted_private_key", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}
