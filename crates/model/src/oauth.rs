//! RFC 6749 §5.2 error bodies of the OAuth endpoints.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    /// RFC 7009 §2.2.1.
    UnsupportedTokenType,
    ServerError,
    TemporarilyUnavailable,
}

impl OAuthErrorCode {
    pub fn status(self) -> u16 {
        match self {
            OAuthErrorCode::InvalidClient => 401,
            OAuthErrorCode::ServerError => 500,
            OAuthErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

/// `{"error": …, "error_description": …}`.
#[derive(Debug, Clone, Serialize)]
pub struct OAuthErrorBody {
    pub error: OAuthErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}
