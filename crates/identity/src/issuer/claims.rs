//! The custom claims of a token or a userinfo answer: static values as stored, templates rendered for this
//! request. A template that fails fails the whole request; nothing partial is issued.

use serde_json::{Map, Value};

use gatehouse_model::identity::grant::claim_applies;
use gatehouse_model::{ClaimId, ScopeId, Timestamp};

use super::snapshot::{ClientEntry, Snapshot};

/// Logged with the claim id (through the trace id the `server_error` answer carries); templates see no secrets.
#[derive(Debug, thiserror::Error)]
#[error("claim {claim}: {error}")]
pub(super) struct ClaimFailed {
    claim: ClaimId,
    error: String,
}

/// Adds the enabled claims that apply to `granted` and whose `include_in_token` is `in_token`.
pub(super) fn add_custom_claims(
    snapshot: &Snapshot,
    entry: &ClientEntry,
    in_token: bool,
    granted: &[ScopeId],
    now: Timestamp,
    out: &mut Map<String, Value>,
) -> Result<(), ClaimFailed> {
    for (claim, value) in snapshot.claims.iter().zip(&snapshot.claim_values) {
        if claim.include_in_token != in_token || !claim_applies(claim, granted) {
            continue;
        }
        let failed = |error: String| ClaimFailed { claim: claim.id, error };
        let value = value.as_ref().map_err(|e| failed(e.to_string()))?;
        let rendered = match &entry.template_context {
            Some(context) => value.render(context, now).map_err(|e| failed(e.to_string()))?,
            None => value.render_static().ok_or_else(|| failed("no template context".into()))?,
        };
        out.insert(claim.name.clone(), rendered);
    }
    Ok(())
}
