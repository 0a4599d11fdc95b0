//! Hybrid mode's vocabulary: the messages a control plane and a data plane exchange on their stream, the rule
//! for which data plane versions a control plane serves, and a data plane's record as the control plane keeps it
//! (Konnect's `…/nodes`, Kong's `/clustering/data-planes`).

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// A control message (a JSON frame; configurations travel in binary frames of their own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// A data plane's first message: who it is and what it serves already (from its cache).
    Hello {
        node_id: uuid::Uuid,
        hostname: String,
        version: String,
        config_hash: Option<String>,
    },
    /// The control plane will not serve this data plane; it closes the stream after sending it.
    Refused {
        reason: String,
    },
    /// A data plane installed the configuration with this hash.
    Applied {
        hash: String,
        version: u64,
    },
    /// A data plane could not install a configuration and keeps serving the one it had.
    ApplyFailed {
        hash: String,
        version: u64,
        error: String,
    },
    /// A heartbeat; a data plane's carries the hash it serves.
    Ping {
        config_hash: Option<String>,
    },
    Pong,
}

/// A data plane known to a control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlaneNode {
    pub id: uuid::Uuid,
    pub control_plane_id: uuid::Uuid,
    pub hostname: String,
    pub version: String,
    /// What the data plane last said it serves; empty before its first configuration.
    pub config_hash: String,
    /// The last configuration it could not apply, with the reason (cleared when one applies).
    pub last_error: Option<String>,
    pub last_ping: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Whether a control plane of version `cp` serves a data plane of version `dp` (Kong's rule,
/// `check_kong_version_compatibility`): the same major version, and a data plane's minor version no newer than the
/// control plane's, whose configuration it might not understand otherwise.
pub fn check_compatibility(cp: &str, dp: &str) -> Result<(), String> {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.trim().split(['.', '-', ' ']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    let (Some((cp_major, cp_minor)), Some((dp_major, dp_minor))) = (parse(cp), parse(dp)) else {
        return Err(format!("data plane version [{dp}] is not major.minor.patch"));
    };
    if cp_major != dp_major {
        return Err(format!(
            "data plane major version {dp_major} differs from the control plane's {cp_major} (control plane {cp}, \
             data plane {dp})"
        ));
    }
    if dp_minor > cp_minor {
        return Err(format!(
            "data plane minor version {dp_minor} is newer than the control plane's {cp_minor} (control plane {cp}, \
             data plane {dp})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kongs_version_rule() {
        check_compatibility("3.9.1", "3.9.0").unwrap();
        check_compatibility("3.9.1", "3.2.7").unwrap();
        assert!(check_compatibility("3.9.1", "3.10.0").unwrap_err().contains("minor version 10 is newer"));
        assert!(check_compatibility("3.9.1", "2.8.0").unwrap_err().contains("major version 2 differs"));
        assert!(check_compatibility("3.9.1", "banana").unwrap_err().contains("not major.minor.patch"));
    }

    #[test]
    fn messages_are_tagged_json() {
        let m = Message::Applied { hash: "ab".into(), version: 3 };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"type":"applied","hash":"ab","version":3}"#);
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), m);
        assert!(serde_json::from_str::<Message>(r#"{"type":"launch"}"#).is_err());
    }
}
