//! The set of revoked token ids, held in memory so introspection never asks the database. Filled from the store
//! at start and after a resync, kept current by the bus, and pruned as tokens expire.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use gatehouse_model::{Timestamp, TokenId};
use gatehouse_store::{Invalidation, Store, StoreError};

use super::crypto::LEEWAY_SECS;

#[derive(Debug, Default)]
pub struct RevocationSet {
    revoked: RwLock<HashMap<TokenId, i64>>,
}

impl RevocationSet {
    pub fn is_revoked(&self, id: TokenId) -> bool {
        self.revoked.read().map(|m| m.contains_key(&id)).unwrap_or(true)
    }

    pub fn add(&self, id: TokenId, expires_at: Timestamp) {
        if let Ok(mut m) = self.revoked.write() {
            m.insert(id, expires_at.micros());
        }
    }

    pub fn extend(&self, items: impl IntoIterator<Item = (TokenId, Timestamp)>) {
        if let Ok(mut m) = self.revoked.write() {
            m.extend(items.into_iter().map(|(id, exp)| (id, exp.micros())));
        }
    }

    /// Forgets revocations of tokens that can no longer verify anyway.
    pub fn prune(&self, now: Timestamp) {
        let cutoff = now.plus_secs(-LEEWAY_SECS).micros();
        if let Ok(mut m) = self.revoked.write() {
            m.retain(|_, exp| *exp >= cutoff);
        }
    }

    pub fn len(&self) -> usize {
        self.revoked.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub async fn reload(&self, store: &dyn Store, now: Timestamp) -> Result<(), StoreError> {
        let live = store.live_revocations(now.plus_secs(-LEEWAY_SECS)).await?;
        self.extend(live);
        Ok(())
    }

    /// Follows the bus: single revocations apply at once (also on the node that made them, before it answers);
    /// bulk revocations and resyncs reload from the store in the background.
    pub fn follow(self: &Arc<Self>, store: Arc<dyn Store>, clock: Arc<dyn gatehouse_model::Clock>) {
        let set = self.clone();
        let bus = store.bus().clone();
        bus.add_hook(Arc::new(move |event| match event {
            Invalidation::TokenRevoked { id, expires_at } => set.add(*id, Timestamp::from_micros(*expires_at)),
            Invalidation::ClientTokensRevoked { auth_server_id, client_id } => {
                let (set, store, server, client) = (set.clone(), store.clone(), *auth_server_id, client_id.clone());
                tokio::spawn(async move {
                    match store.client_revocations(server, &client).await {
                        Ok(items) => set.extend(items),
                        Err(e) => tracing::error!(error = %e, "could not load a client's revocations"),
                    }
                });
            }
            Invalidation::Resync => {
                let (set, store, now) = (set.clone(), store.clone(), clock.now());
                tokio::spawn(async move {
                    if let Err(e) = set.reload(store.as_ref(), now).await {
                        tracing::error!(error = %e, "could not reload revocations");
                    }
                });
            }
            _ => {}
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_check_and_prune() {
        let set = RevocationSet::default();
        let (a, b) = (TokenId::new(), TokenId::new());
        set.add(a, Timestamp::from_secs(100));
        set.extend([(b, Timestamp::from_secs(1000))]);
        assert!(set.is_revoked(a) && set.is_revoked(b));
        assert!(!set.is_revoked(TokenId::new()));
        set.prune(Timestamp::from_secs(200));
        assert!(!set.is_revoked(a), "expired tokens fail verification on their own");
        assert!(set.is_revoked(b));
        assert_eq!(set.len(), 1);
    }
}
