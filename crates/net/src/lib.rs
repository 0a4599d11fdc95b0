//! Connection plumbing every Gatehouse listener shares, the proxy's worker threads and the API listeners alike:
//! how many connections a listener keeps (in all and per source address, closing idle ones first when it is
//! full), when a silent or idle connection is closed, bounded request bodies, accept errors logged without
//! flooding, and the file-descriptor budget the limits are carved from.
//!
//! Each listener has a [`Gate`]. An accepted connection is [`Gate::admit`]ted or closed at once; an admitted one
//! carries an [`Activity`] that its requests hold a [`RequestGuard`] on, and [`drive`] serves it until it ends,
//! the server stops, or [`Activity::close_reason`] says it has been quiet too long or was evicted. A TLS listener
//! runs [`tls::handshake`] first, in the connection's task and under the same deadlines.

mod accept;
mod body;
mod client;
pub mod cluster;
mod connection;
mod gate;
mod limits;
pub mod tls;

pub use accept::AcceptErrors;
pub use body::{BodyTimeout, DeadlineBody, Tracked};
pub use client::client_address;
pub use connection::{Closed, drive};
pub use gate::{Activity, Admission, Gate, RequestGuard, network_of};
pub use limits::{ConnectionLimits, FdBudget, ListenerShare, raise_nofile_limit};
