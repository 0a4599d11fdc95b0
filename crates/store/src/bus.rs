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
    /// The entities of a control plane changed: its configuration snapshot is rebuilt.
    GatewayConfig { control_plane_id: uuid::Uuid },
    /// A control plane was created, renamed or deleted.
    ControlPlanes,
    /// The data plane client certificates a control plane pins changed.
    DpClientCertificates { control_plane_id: uuid::Uuid },
    /// Notifications may have been missed (the bus reconnected, or a subscriber lagged): reload everything.
    Resync,
}

/// A callback run synchronously on every event, before `publish` returns.
pub type Hook = Arc<dyn Fn(&Invalidation) + Send + Sync>;

/// Fan-out to this node's subscribers. Hooks run inside `publish` — for local writes, inside the commit, before
/// the API call that made the change answers — so caches on this node never serve what the caller just changed;
/// channel subscribers hear it asynchronously.
pub struct LocalBus {
    sender: broadcast::Sender<Invalidation>,
    hooks: std::sync::RwLock<Vec<Hook>>,
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBus").field("subscribers", &self.sender.receiver_count()).finish_non_exhaustive()
    }
}

/// How many events a slow subscriber may fall behind before it is told to resync (`RecvError::Lagged`).
const CAPACITY: usize = 1024;

impl LocalBus {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { sender: broadcast::channel(CAPACITY).0, hooks: std::sync::RwLock::new(Vec::new()) })
    }

    pub fn publish(&self, event: Invalidation) {
        if let Ok(hooks) = self.hooks.read() {
            hooks.iter().for_each(|hook| hook(&event));
        }
        // No subscriber is not an error: nothing is cached yet.
        let _ = self.sender.send(event);
    }

    /// Registers a callback for every later event. Hooks must be quick and must not publish.
    pub fn add_hook(&self, hook: Hook) {
        if let Ok(mut hooks) = self.hooks.write() {
            hooks.push(hook);
        }
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

    #[test]
    fn hooks_run_before_publish_returns() {
        let bus = LocalBus::new();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        bus.add_hook(Arc::new(move |e| sink.lock().unwrap().push(e.clone())));
        bus.publish(Invalidation::Resync);
        assert_eq!(*seen.lock().unwrap(), vec![Invalidation::Resync]);
    }

    #[tokio::test]
    async fn subscribers_hear_published_events() {
        let bus = LocalBus::new();
        let mut rx = bus.subscribe();
        bus.publish(Invalidation::Resync);
        assert_eq!(rx.recv().await.unwrap(), Invalidation::Resync);
    }
}
