//! The authorization server: Kong Identity's management API (`/v1/auth-servers/**`) and, later, the issuer
//! endpoints. Exposes router-building functions; the binary decides where they listen.

pub mod issuer;
pub mod keys;
pub mod management;
mod state;
pub mod template;

pub use issuer::{Issuer, IssuerSettings, IssuerState, issuer_router};
pub use management::{management_openapi, management_router};
pub use state::IdentityState;
