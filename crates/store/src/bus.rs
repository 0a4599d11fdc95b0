//! The invalidation bus: how caches (the issuer's auth-server snapshots, later the proxy's configuration) learn
//! that the store changed. Every write transaction records what it touched; subscribers on this node hear it right
//! after the commit, and with PostgreSQL other nodes hear it through `LISTEN/NOTIFY`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use gatehouse_model::{AuthServerId, ClientId, TokenId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Invalidation {
    /// Something under this auth server changed: the server, its scopes, claims, clients, secrets or keys.
    AuthServer { id: AuthServerId },
    /// A personal access token was created or revoked.
    PersonalAccessTokens,
    /// One access token was revoked; it stays refused until `expires_at` (microseconds).
    TokenRevoked { id: TokenId, expires_at: i64 },
    /// Every token of a client was revoked; nodes reload that client's revocations.
    ClientTokensRevoked { auth_server_id: AuthServerId, client_id: ClientId },
    /// Notifications may have been missed (the bus reconnected, or a subscriber lagged): reload everything.
    Resync,
}

/// Fan-out to this node's subscribers.
#[derive(Debug)]
pub struct LocalBus {
    sender: broadcast::Sender<Invalidation>,
}

/// How many events a slow subscriber may fall behind before it is told to resync (`RecvError::Lagged`).
const CAPACITY: usize = 1024;

impl LocalBus {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { sender: broadcast::channel(CAPACITY).0 })
    }

    pub fn publish(&self, event: Invalidation) {
        // No subscriber is not an error: nothing is cached yet.
        let _ = self.sender.send(event);
    }

    /// A subscription. A receiver that gets `RecvError::Lagged` missed events and must treat it as
    /// [`Invalidation::Resync`].
    pub fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_json() {
        let e = Invalidation::AuthServer { id: AuthServerId::new() };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"kind\":\"auth_server\""));
        assert_eq!(serde_json::from_str::<Invalidation>(&json).unwrap(), e);
    }

    #[tokio::test]
    async fn subscribers_hear_published_events() {
        let bus = LocalBus::new();
        let mut rx = bus.subscribe();
        bus.publish(Invalidation::Resync);
        assert_eq!(rx.recv().await.unwrap(), Invalidation::Resync);
    }
}
