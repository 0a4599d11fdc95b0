//! The data plane: Kong's router, the proxy on hyper, the upstream pool and plugins. It reads configuration
//! snapshots only and never touches the database; it talks to the issuer over HTTP like any other resource
//! server. Depends on `model` (and `net`) alone: even `rate-limiting`'s `cluster` counters, which live in the
//! database, are handed to it by the node as a [`counters::Counters`]; its `redis` counters talk to Redis
//! directly.

pub mod access_log;
pub mod balancer;
pub mod body;
pub mod cluster;
pub mod config;
pub mod consumers;
pub mod counters;
pub mod error;
mod framing;
/// The metric families, from `model` so every layer records into the same kind.
pub use gatehouse_model::metrics;
pub mod phases;
pub mod plugins;
pub mod proxy;
pub mod router;
pub mod service;
mod timer;
pub mod trace;
mod upstream;

pub use proxy::{Proxy, ProxySettings, serve};
