//! The data plane: Kong's router, the proxy on hyper, the upstream pool and plugins (the proxy itself is planned;
//! its error responses are here). It reads configuration snapshots only and never touches the database; it talks
//! to the issuer over HTTP like any other resource server. Depends on `model` alone.

pub mod error;
