//! Gatehouse's types and pure validation: entities, API bodies, error bodies and the rules that check them.
//!
//! Nothing here does I/O, so the CLI can validate offline and every rule is unit-testable.

pub mod body;
pub mod clock;
pub mod gateway;
pub mod id;
pub mod identity;
pub mod issuer_url;
pub mod kong;
pub mod labels;
pub mod listing;
pub mod metrics;
pub mod oauth;
pub mod pat;
pub mod problem;
pub mod redact;
pub mod secret;
pub mod timestamp;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use id::{AuthServerId, ClaimId, ClientId, ClientSecretId, PatId, ScopeId, SigningKeyId, TokenId};
pub use labels::Labels;
pub use problem::{InvalidParameter, Rule};
pub use secret::{SecretHash, SecretString};
pub use timestamp::Timestamp;
