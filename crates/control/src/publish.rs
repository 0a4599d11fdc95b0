//! Configuration snapshots for the proxy: every entity of the served control plane, rebuilt whenever the bus
//! says it changed (on this node at once, from other PostgreSQL nodes within the notification latency) and
//! handed over through a watch channel; the proxy swaps it in atomically.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

use serde_json::Value;
use tokio::sync::{Notify, watch};

use gatehouse_model::gateway::control_plane::{AuthType, ClusterType, ControlPlane};
use gatehouse_model::gateway::snapshot::{ConfigSnapshot, SnapshotError};
use gatehouse_model::gateway::{EntityKind, Normalized};
use gatehouse_runtime::Services;
use gatehouse_store::{Invalidation, StoreError};

use crate::secrets;

/// Finds the control plane named `name`, creating it when missing (a node always serves one).
pub async fn ensure_control_plane(services: &Services, name: &str) -> Result<ControlPlane, StoreError> {
    if let Some(cp) = services.store.find_control_plane_by_name(name).await? {
        return Ok(cp);
    }
    let now = services.clock.now();
    let cp = ControlPlane {
        id: uuid::Uuid::new_v4(),
        name: name.to_owned(),
        description: String::new(),
        cluster_type: ClusterType::ControlPlane,
        auth_type: AuthType::PinnedClientCerts,
        cloud_gateway: false,
        proxy_urls: Vec::new(),
        labels: Default::default(),
        created_at: now,
        updated_at: now,
    };
    match services.store.create_control_plane(&cp).await {
        Ok(()) => Ok(cp),
        // Another node created it first.
        Err(StoreError::Conflict(_)) => {
            services.store.find_control_plane_by_name(name).await?.ok_or(StoreError::NotFound)
        }
        Err(e) => Err(e),
    }
}

/// A stable digest of a configuration, like Kong's `configuration_hash`.
pub fn config_hash<'a>(entities: impl Iterator<Item = &'a Normalized>) -> String {
    let (mut a, mut b) = (DefaultHasher::new(), DefaultHasher::new());
    "gatehouse".hash(&mut b);
    for e in entities {
        let text = Value::Object(e.clone()).to_string();
        text.hash(&mut a);
        text.hash(&mut b);
    }
    format!("{:016x}{:016x}", a.finish(), b.finish())
}

#[derive(Debug)]
pub struct ConfigPublisher {
    pub control_plane_id: uuid::Uuid,
    receiver: watch::Receiver<Arc<ConfigSnapshot>>,
    /// Changes announced so far; a published configuration's `version` is the count it was built after, so
    /// `version >= changes()` means every change announced before includes in it.
    changes: Arc<AtomicU64>,
}

impl ConfigPublisher {
    /// Builds the first snapshot, then rebuilds on every change until the process ends.
    pub async fn start(services: Services, control_plane_id: uuid::Uuid) -> Result<Self, StoreError> {
        let changes = Arc::new(AtomicU64::new(0));
        let first = match build(&services, control_plane_id, &changes).await {
            Ok(config) => config,
            Err(BuildError::Store(e)) => return Err(e),
            // Serving nothing is the safe reading of a configuration that cannot be read: an authentication
            // plugin left out would open its routes.
            Err(BuildError::Snapshot(e)) => {
                tracing::error!(error = %e, "a stored gateway entity is not valid; the proxy serves no routes until it is fixed");
                ConfigSnapshot::empty(Some(control_plane_id), 0)
            }
        };
        let (sender, receiver) = watch::channel(Arc::new(first));
        let changed = Arc::new(Notify::new());
        // When the oldest change not yet built was announced: the proxy measures publish latency from it.
        let pending: Arc<Mutex<Option<std::time::Instant>>> = Arc::default();
        let (hook, counted, announced) = (changed.clone(), changes.clone(), pending.clone());
        let announce = move || {
            counted.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut at) = announced.lock() {
                at.get_or_insert_with(|| Instant::now().into_std());
            }
            hook.notify_one();
        };
        services.store.bus().add_hook(Arc::new(move |event| match event {
            Invalidation::GatewayConfig { control_plane_id: cp } if *cp == control_plane_id => announce(),
            Invalidation::Resync => announce(),
            _ => {}
        }));
        let version = changes.clone();
        tokio::spawn(async move {
            loop {
                changed.notified().await;
                let changed_at = pending.lock().ok().and_then(|mut at| at.take());
                match build(&services, control_plane_id, &version).await {
                    Ok(mut config) => {
                        config.changed_at = changed_at;
                        tracing::debug!(version = config.version, "configuration rebuilt");
                        if sender.send(Arc::new(config)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // Keep serving the last configuration; retry shortly.
                        tracing::error!(error = %e, "could not rebuild the gateway configuration");
                        if let (Some(earlier), Ok(mut at)) = (changed_at, pending.lock()) {
                            *at = Some(at.map_or(earlier, |later| later.min(earlier)));
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        changed.notify_one();
                    }
                }
            }
        });
        Ok(Self { control_plane_id, receiver, changes })
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<ConfigSnapshot>> {
        self.receiver.clone()
    }

    /// How many changes were announced; see the field's note.
    pub fn changes(&self) -> Arc<AtomicU64> {
        self.changes.clone()
    }
}

#[derive(Debug, thiserror::Error)]
enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

async fn build(services: &Services, cp: uuid::Uuid, changes: &AtomicU64) -> Result<ConfigSnapshot, BuildError> {
    // Read before loading: everything announced up to here is in what the load sees.
    let version = changes.load(Ordering::SeqCst);
    let mut config = ConfigSnapshot::empty(Some(cp), version);
    let mut entities = services.store.all_entities(cp).await?;
    // An acl or a key joins its consumer, so consumers go in first.
    entities.sort_by_key(|e| e.kind.joins_another());
    for entity in entities {
        let mut data = entity.data;
        if entity.kind == EntityKind::KeyAuth {
            // The proxy gets the key's keyed hash only; the sealed key stays in the store.
            data.remove("key");
            data.insert("key_hash".into(), entity.endpoint_key.map_or(Value::Null, Value::String));
            config.add(entity.kind, &data)?;
            continue;
        }
        if secrets::open(&services.keys, entity.kind, &mut data) > 0 {
            tracing::warn!(plugin = %entity.id, "a plugin keeps secret config values in clear, written before they \
                were sealed; its next update seals them (PATCH /plugins/{{id}} with {{}} will do)");
        }
        config.add(entity.kind, &data)?;
    }
    config.sort();
    Ok(config)
}
