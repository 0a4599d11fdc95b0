//! Error bodies of Kong's surfaces: the Admin API (`{code,name,message,fields}`) and the proxy
//! (`{message,request_id}`).

use serde::Serialize;
use serde_json::Value;

/// Kong's Admin API error: `code` and `name` come from Kong's error codes (e.g. 2 `schema violation`,
/// 3 `primary key violation`, 5 `unique constraint violation`, 6 `not found`).
#[derive(Debug, Clone, Serialize)]
pub struct KongErrorBody {
    pub code: u16,
    pub name: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Value>,
}

/// The shape of simple Kong errors (`{"message": "Not found"}`) and of the Konnect core-entities 401.
#[derive(Debug, Clone, Serialize)]
pub struct MessageBody {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// What the proxy answers when it fails on its own (no route, upstream errors, body too large).
#[derive(Debug, Clone, Serialize)]
pub struct ProxyErrorBody {
    pub message: String,
    pub request_id: String,
}
