//! In-memory snapshots of auth servers: everything the token and introspection endpoints read, loaded once and
//! dropped when the bus says the server changed, so the hot paths never touch the database for configuration.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use serde_json::Value;

use gatehouse_model::identity::{AuthServer, Claim, Client, Scope};
use gatehouse_model::issuer_url::IssuerUrlTemplate;
use gatehouse_model::{ClientId, SecretHash, Timestamp};
use gatehouse_runtime::Services;
use gatehouse_store::{Invalidation, StoreError};

use super::crypto::{KeyError, LEEWAY_SECS, Signer, Verifier};
use crate::template::{ClaimValue, TemplateContext, TemplateError};

/// A safety net: even if a notification were lost, a snapshot is reloaded after this long.
const MAX_AGE: Duration = Duration::from_secs(60);
const MAX_SERVERS: u64 = 10_000;

#[derive(Debug)]
pub struct ClientEntry {
    pub client: Client,
    /// Keyed hashes of the enabled secrets.
    pub secrets: Vec<SecretHash>,
    /// What claim templates see (`.AuthServer`, `.Client`); built only when the server has a template claim.
    pub template_context: Option<TemplateContext>,
}

impl ClientEntry {
    /// Compares against every secret without stopping at a match, in constant time per comparison.
    pub fn secret_matches(&self, candidate: &SecretHash) -> bool {
        self.secrets.iter().fold(false, |found, h| found | (h == candidate))
    }
}

/// A key as published in JWKS: the current key always, a retired one until the last token it signed expires.
#[derive(Debug, Clone)]
pub struct PublishedKey {
    pub jwk: Value,
    pub until: Option<Timestamp>,
}

#[derive(Debug)]
pub struct Snapshot {
    pub server: AuthServer,
    pub issuer: String,
    pub scopes: Vec<Scope>,
    pub claims: Vec<Claim>,
    /// `claims[i]`'s value, compiled once per snapshot. A stored value that no longer compiles (it was checked
    /// when written) fails the requests that need it, not the whole server.
    pub claim_values: Vec<Result<ClaimValue, TemplateError>>,
    pub clients: HashMap<ClientId, ClientEntry>,
    pub signer: Signer,
    pub verifiers: HashMap<String, Verifier>,
    pub keys: Vec<PublishedKey>,
    epoch: u64,
}

impl Snapshot {
    pub fn client(&self, id: &str) -> Option<&ClientEntry> {
        ClientId::parse(id).ok().and_then(|id| self.clients.get(&id))
    }

    /// The JWKS document at `now`.
    pub fn jwks(&self, now: Timestamp) -> Value {
        let live = |k: &&PublishedKey| k.until.is_none_or(|until| now.secs() < until.secs() + LEEWAY_SECS);
        Value::Object(
            [("keys".to_owned(), Value::Array(self.keys.iter().filter(live).map(|k| k.jwk.clone()).collect()))]
                .into_iter()
                .collect(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("auth server {0} has no current signing key")]
    NoKey(String),
}

pub struct SnapshotCache {
    services: Services,
    template: Arc<IssuerUrlTemplate>,
    cache: Cache<String, Option<Arc<Snapshot>>>,
    /// Bumped by every change to any auth server; a snapshot loaded under an older epoch is stale. Comparing
    /// epochs (rather than only evicting) also catches a load that started before a change and finished after it.
    epoch: Arc<AtomicU64>,
}

impl std::fmt::Debug for SnapshotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotCache").field("entries", &self.cache.entry_count()).finish_non_exhaustive()
    }
}

impl SnapshotCache {
    pub fn new(services: Services, template: Arc<IssuerUrlTemplate>) -> Arc<Self> {
        let epoch = Arc::new(AtomicU64::new(0));
        let hook_epoch = epoch.clone();
        services.store.bus().add_hook(Arc::new(move |event| {
            if matches!(event, Invalidation::AuthServer { .. } | Invalidation::Resync) {
                hook_epoch.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let cache = Cache::builder().max_capacity(MAX_SERVERS).time_to_live(MAX_AGE).build();
        Arc::new(Self { services, template, cache, epoch })
    }

    /// The snapshot of the auth server with this issuer key, or `None` if there is none. Concurrent misses for
    /// one key share a single load.
    pub async fn get(&self, issuer_key: &str) -> Result<Option<Arc<Snapshot>>, Arc<LoadError>> {
        for _ in 0..3 {
            let current = self.epoch.load(Ordering::SeqCst);
            let found = self.cache.try_get_with(issuer_key.to_owned(), self.load(issuer_key, current)).await?;
            match &found {
                Some(s) if s.epoch != current => self.cache.invalidate(issuer_key).await,
                // A negative entry is trusted only for the epoch it was loaded in (a server may have been created).
                None if self.epoch.load(Ordering::SeqCst) != current => self.cache.invalidate(issuer_key).await,
                _ => return Ok(found),
            }
        }
        // Changes keep racing the load: answer from a fresh load without caching it.
        self.load(issuer_key, self.epoch.load(Ordering::SeqCst)).await.map_err(Arc::new)
    }

    async fn load(&self, issuer_key: &str, epoch: u64) -> Result<Option<Arc<Snapshot>>, LoadError> {
        let store = &self.services.store;
        let Some(server) = store.find_auth_server_by_issuer_key(issuer_key).await? else { return Ok(None) };
        let scopes = store.all_scopes(server.id).await?;
        let claims = store.all_claims(server.id).await?;
        let mut clients: HashMap<ClientId, ClientEntry> = store
            .all_clients(server.id)
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), ClientEntry { client: c, secrets: Vec::new(), template_context: None }))
            .collect();
        let claim_values: Vec<_> = claims.iter().map(|c| ClaimValue::compile(&c.value)).collect();
        if claim_values.iter().any(|v| v.as_ref().map_or(true, ClaimValue::is_template)) {
            for entry in clients.values_mut() {
                entry.template_context = Some(TemplateContext::new(&server, &entry.client));
            }
        }
        for secret in store.enabled_client_secrets(server.id).await? {
            if let Some(entry) = clients.get_mut(&secret.client_id) {
                entry.secrets.push(secret.hash);
            }
        }
        let stored_keys = store.signing_keys(server.id).await?;
        let current = stored_keys
            .iter()
            .find(|k| k.retired_at.is_none())
            .ok_or_else(|| LoadError::NoKey(server.id.to_string()))?;
        let signer = Signer::open(current, &self.services.keys)?;
        let mut verifiers = HashMap::new();
        let mut keys = Vec::new();
        for key in &stored_keys {
            let until = match key.retired_at {
                None => None,
                // A retired key matters while a token it signed can still verify; with none, it is gone.
                Some(_) => match store.key_token_expiry(key.id).await? {
                    Some(t) => Some(t),
                    None => continue,
                },
            };
            if let Some(v) = Verifier::from_jwk(key.algorithm, &key.public_jwk) {
                verifiers.insert(key.id.to_string(), v);
                keys.push(PublishedKey { jwk: key.public_jwk.clone(), until });
            }
        }
        let issuer = server.issuer(&self.template);
        Ok(Some(Arc::new(Snapshot {
            server,
            issuer,
            scopes,
            claims,
            claim_values,
            clients,
            signer,
            verifiers,
            keys,
            epoch,
        })))
    }
}
