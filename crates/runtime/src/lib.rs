//! The plumbing every Gatehouse listener shares: configuration, the master key and its derived keys, typed errors
//! rendered per surface, request extractors, personal-access-token authentication, safe binding and logging.

pub mod auth;
pub mod config;
pub mod errors;
pub mod extract;
pub mod health;
pub mod listener;
pub mod logging;
pub mod master_key;
pub mod openapi;
pub mod random;
pub mod request_log;

use std::sync::Arc;

use gatehouse_model::Clock;
use gatehouse_model::metrics::gatehouse::GatehouseMetrics;
use gatehouse_store::Store;

use crate::master_key::DerivedKeys;

/// What every handler of the platform and issuer listeners needs: storage, keys and time.
#[derive(Debug, Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub keys: Arc<DerivedKeys>,
    pub clock: Arc<dyn Clock>,
    /// The node's `gatehouse_` metric families (the store, the issuer and the publisher record into them).
    pub metrics: Arc<GatehouseMetrics>,
}
