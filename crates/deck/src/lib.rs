//! Declarative configuration, as decK does it: state files in decK's format 3.0 read with the position of every
//! node and rendered (`${{ env "DECK_X" }}`) into a target state ([`file`], [`target`]), compared with what a Kong
//! Admin API or a Konnect-mode platform API holds ([`client`]), turned into ordered changes with decK's console
//! output ([`plan`]) and applied ([`run`]); [`dump`] goes the other way.
//!
//! Validation is `model`'s (the server runs the same code), so an invalid file is refused before anything is
//! sent. Talking HTTP needs a client, so this crate depends on `reqwest` besides `model`.

pub mod client;
pub mod dump;
pub mod file;
pub mod identity;
pub mod plan;
pub mod run;
pub mod target;

pub use client::{Connection, Konnect};
pub use file::{Env, FileError, Source};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum DeckError {
    /// Problems in the inputs, each with its file, line and column.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Files(Vec<FileError>),
    /// The target could not be reached.
    #[error("{what}: {message}")]
    Http { what: String, message: String },
    /// The target refused a request.
    #[error("{what}: HTTP status {status} (message: {message:?})")]
    Api { what: String, status: u16, message: String },
    #[error("{0}")]
    Other(String),
}
