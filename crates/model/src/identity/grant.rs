//! What a token request is granted: scopes from the request, the client's permissions and the defaults, and the
//! claims whose inclusion rule matches (Kong Identity's rules, `reference` §5.1).

use serde_json::Value;

use super::{Claim, Client, Scope};
use crate::ScopeId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeError {
    /// The `scope` parameter is not a space-delimited list of scope-tokens.
    Malformed,
    /// Unknown, disabled, or not allowed for this client.
    NotGranted(String),
}

/// The scopes granted, in request order followed by the client's default scopes. A requested scope must exist,
/// be enabled and be allowed to the client; defaults are added only when allowed and enabled.
pub fn grant_scopes<'a>(
    requested: Option<&str>,
    client: &Client,
    scopes: &'a [Scope],
) -> Result<Vec<&'a Scope>, ScopeError> {
    let allowed = |s: &Scope| s.enabled && (client.allow_all_scopes || client.allow_scopes.contains(&s.id));
    let mut granted: Vec<&Scope> = Vec::new();
    if let Some(requested) = requested.filter(|r| !r.is_empty()) {
        for name in requested.split(' ') {
            if name.is_empty() || !super::scope::is_scope_token(name) {
                return Err(ScopeError::Malformed);
            }
            let scope = scopes
                .iter()
                .find(|s| s.name == name)
                .filter(|s| allowed(s))
                .ok_or_else(|| ScopeError::NotGranted(name.to_owned()))?;
            if !granted.iter().any(|g| g.id == scope.id) {
                granted.push(scope);
            }
        }
    }
    for scope in scopes.iter().filter(|s| s.default && allowed(s)) {
        if !granted.iter().any(|g| g.id == scope.id) {
            granted.push(scope);
        }
    }
    Ok(granted)
}

/// Whether a claim belongs with the granted scopes: always (`include_in_all_scopes`), when any listed scope was
/// granted, or — with an empty list — only when no scope was granted at all (defaults count as granted).
pub fn claim_applies(claim: &Claim, granted: &[ScopeId]) -> bool {
    if !claim.enabled {
        return false;
    }
    if claim.include_in_all_scopes {
        return true;
    }
    if claim.include_in_scopes.is_empty() {
        return granted.is_empty();
    }
    claim.include_in_scopes.iter().any(|s| granted.contains(s))
}

/// A static claim value: emitted as JSON when it is valid JSON (`123`, `true`, `["a"]`), else as a string.
pub fn static_claim_value(value: &str) -> Value {
    serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::client::{GrantType, TokenEndpointAuthMethod};
    use crate::{AuthServerId, ClaimId, ClientId, Labels, Timestamp};
    use serde_json::json;

    fn scope(name: &str, default: bool, enabled: bool) -> Scope {
        Scope {
            id: ScopeId::new(),
            auth_server_id: AuthServerId::new(),
            name: name.into(),
            description: String::new(),
            default,
            include_in_metadata: false,
            enabled,
            created_at: Timestamp::from_secs(0),
            updated_at: Timestamp::from_secs(0),
        }
    }

    fn client(allow: Vec<ScopeId>, all: bool) -> Client {
        Client {
            id: ClientId::parse("c").unwrap(),
            auth_server_id: AuthServerId::new(),
            name: "c".into(),
            grant_types: vec![GrantType::ClientCredentials],
            response_types: vec![],
            redirect_uris: vec![],
            login_uri: None,
            access_token_duration: 300,
            id_token_duration: 300,
            allow_all_scopes: all,
            allow_scopes: allow,
            labels: Labels::default(),
            token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
            created_at: Timestamp::from_secs(0),
            updated_at: Timestamp::from_secs(0),
        }
    }

    fn names(granted: &[&Scope]) -> Vec<String> {
        granted.iter().map(|s| s.name.clone()).collect()
    }

    #[test]
    fn scopes_requested_allowed_and_defaults() {
        let scopes = vec![
            scope("read", false, true),
            scope("write", false, true),
            scope("base", true, true),
            scope("off", false, false),
        ];
        let c = client(vec![scopes[0].id, scopes[2].id, scopes[3].id], false);
        assert_eq!(names(&grant_scopes(Some("read"), &c, &scopes).unwrap()), vec!["read", "base"]);
        assert_eq!(names(&grant_scopes(None, &c, &scopes).unwrap()), vec!["base"]);
        assert_eq!(names(&grant_scopes(Some("base read read"), &c, &scopes).unwrap()), vec!["base", "read"]);
        assert_eq!(grant_scopes(Some("write"), &c, &scopes), Err(ScopeError::NotGranted("write".into())));
        assert_eq!(grant_scopes(Some("off"), &c, &scopes), Err(ScopeError::NotGranted("off".into())));
        assert_eq!(grant_scopes(Some("nope"), &c, &scopes), Err(ScopeError::NotGranted("nope".into())));
        assert_eq!(grant_scopes(Some("read  base"), &c, &scopes), Err(ScopeError::Malformed));
        assert_eq!(grant_scopes(Some(" read"), &c, &scopes), Err(ScopeError::Malformed));
        let all = client(vec![], true);
        assert_eq!(names(&grant_scopes(Some("write"), &all, &scopes).unwrap()), vec!["write", "base"]);
        assert!(grant_scopes(Some("off"), &all, &scopes).is_err(), "allow_all_scopes never grants a disabled scope");
        let none = client(vec![], false);
        assert!(grant_scopes(None, &none, &scopes).unwrap().is_empty(), "defaults need permission too");
    }

    #[test]
    fn claim_inclusion_rules() {
        let (a, b) = (ScopeId::new(), ScopeId::new());
        let claim = |all: bool, scopes: Vec<ScopeId>, enabled: bool| Claim {
            id: ClaimId::new(),
            auth_server_id: AuthServerId::new(),
            name: "c".into(),
            value: "v".into(),
            include_in_token: true,
            include_in_all_scopes: all,
            include_in_scopes: scopes,
            enabled,
            created_at: Timestamp::from_secs(0),
            updated_at: Timestamp::from_secs(0),
        };
        // Always include.
        assert!(claim_applies(&claim(true, vec![], true), &[]));
        assert!(claim_applies(&claim(true, vec![], true), &[a]));
        // Only when specific scopes are granted.
        assert!(claim_applies(&claim(false, vec![a], true), &[b, a]));
        assert!(!claim_applies(&claim(false, vec![a], true), &[b]));
        assert!(!claim_applies(&claim(false, vec![a], true), &[]));
        // Only when no scopes are granted.
        assert!(claim_applies(&claim(false, vec![], true), &[]));
        assert!(!claim_applies(&claim(false, vec![], true), &[a]));
        // Disabled: never.
        assert!(!claim_applies(&claim(true, vec![], false), &[]));
    }

    #[test]
    fn static_values_keep_their_json_type() {
        assert_eq!(static_claim_value("test"), json!("test"));
        assert_eq!(static_claim_value("42"), json!(42));
        assert_eq!(static_claim_value("true"), json!(true));
        assert_eq!(static_claim_value("[\"a\",\"b\"]"), json!(["a", "b"]));
        assert_eq!(static_claim_value("{\"k\":1}"), json!({"k": 1}));
        assert_eq!(static_claim_value("\"quoted\""), json!("quoted"));
        assert_eq!(static_claim_value("${ uuidv4 }"), json!("${ uuidv4 }"));
    }
}
