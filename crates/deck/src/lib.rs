//! Declarative configuration, as decK does it: state files in decK's format 3.0 read with the position of every
//! node and rendered (`${{ env "DECK_X" }}`) into a target state ([`file`], [`target`]), compared with what a Kong
//! Admin API or a Konnect-mode platform API holds ([`client`]), turned into ordered changes with decK's console
//! output ([`plan`]) and applied ([`run`]); [`dump`] goes the other way, and [`convert`] rewrites Kong 2.x files
//! for Kong 3.x (`file convert`).
//!
//! Validation is `model`'s (the server runs the same code), so an invalid file is refused before anything is
//! sent. Talking HTTP needs a client, so this crate depends on `reqwest` besides `model`.

pub mod client;
pub mod convert;
pub mod dump;
pub mod file;
pub mod identity;
pub mod plan;
pub mod run;
pub mod target;

pub use client::{Connection, Konnect};
pub use file::{Env, FileError, Gap, Source};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum DeckError {
    /// Problems in the inputs, each with its file, line and column.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Files(Vec<FileError>),
    /// The files use features Gatehouse does not support: the first one found is named, then every one of them
    /// (so a team sees the whole gap at once), then the files' other problems.
    #[error("{}", unsupported_report(.gaps, .errors))]
    Unsupported { gaps: Vec<Gap>, errors: Vec<FileError> },
    /// The target could not be reached.
    #[error("{what}: {message}")]
    Http { what: String, message: String },
    /// The target refused a request.
    #[error("{what}: HTTP status {status} (message: {message:?})")]
    Api { what: String, status: u16, message: String },
    #[error("{0}")]
    Other(String),
}

/// How many places of one unsupported feature a report shows before counting the rest.
const PLACES_SHOWN: usize = 3;

fn unsupported_report(gaps: &[Gap], errors: &[FileError]) -> String {
    let mut out = String::new();
    if let Some(first) = gaps.first()
        && let Some(place) = first.places.first()
    {
        out.push_str(&format!("{place}: {} is not supported by Gatehouse\n", first.label()));
    }
    let uses: usize = gaps.iter().map(|g| g.places.len()).sum();
    out.push_str(&format!(
        "The files use {} feature{} Gatehouse does not support ({uses} use{} in all; docs/compatibility.md lists what it \
         supports):",
        gaps.len(),
        if gaps.len() == 1 { "" } else { "s" },
        if uses == 1 { "" } else { "s" },
    ));
    for gap in gaps {
        let mut places: Vec<String> = gap.places.iter().take(PLACES_SHOWN).map(ToString::to_string).collect();
        if gap.places.len() > PLACES_SHOWN {
            places.push(format!("and {} more", gap.places.len() - PLACES_SHOWN));
        }
        out.push_str(&format!("\n  - {}: {}", gap.label(), places.join(", ")));
    }
    for e in errors {
        out.push_str(&format!("\n{e}"));
    }
    out
}
