//! The `gatehouse` binary's library half: starting a node (every listener, wired to storage and keys) and the
//! commands. `main.rs` only parses arguments; tests and `testkit` start nodes through [`node::start`].

pub mod backup;
pub mod cluster;
pub mod counters;
pub mod deck;
pub mod echo;
pub mod identity;
pub mod node;
pub mod process_metrics;
pub mod quickstart;
pub mod status;
pub mod token;

/// The commit the binary was built from (`unknown` outside git).
pub const COMMIT: &str = env!("GATEHOUSE_COMMIT");
/// What `gatehouse -V` prints after the name.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GATEHOUSE_COMMIT"), ")");
