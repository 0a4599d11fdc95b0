//! Configuration snapshots for the proxy: every entity of the served control plane, rebuilt whenever the bus
//! says it changed (on this node at once, from other PostgreSQL nodes within the notification latency) and
//! handed over through a watch channel; the proxy swaps it in atomically.
//!
//! A rebuild reads every row, but converts only the rows whose text changed since the last build: services,
//! routes and plugins (one row, one element of the snapshot) whose text hashes as before are copied from the
//! last published snapshot, which is what converting that text again would give.

use std::collections::HashMap;
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
use gatehouse_store::{EntityRow, Invalidation, StoreError};

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
        let mut memory = Converted::default();
        let first = match build(&services, control_plane_id, &changes, &mut memory).await {
            Ok(config) => config,
            Err(BuildError::Store(e)) => return Err(e),
            // Serving nothing is the safe reading of a configuration that cannot be read: an authentication
            // plugin left out would open its routes.
            Err(BuildError::Snapshot(e)) => {
                tracing::error!(error = %e, "a stored gateway entity is not valid; the proxy serves no routes until it is fixed");
                ConfigSnapshot::empty(Some(control_plane_id), 0)
            }
        };
        let first = Arc::new(first);
        memory.published(&first);
        let (sender, receiver) = watch::channel(first);
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
                match build(&services, control_plane_id, &version, &mut memory).await {
                    Ok(mut config) => {
                        config.changed_at = changed_at;
                        tracing::debug!(version = config.version, "configuration rebuilt");
                        let config = Arc::new(config);
                        memory.published(&config);
                        if sender.send(config).is_err() {
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

/// What the last build made of the rows, so the next converts only the rows whose text changed.
#[derive(Debug, Default)]
struct Converted {
    /// The snapshot published last, which unchanged rows are copied from.
    snapshot: Arc<ConfigSnapshot>,
    /// A digest of each row's text (data and endpoint key) as the last build read it, for the kinds it copies.
    digests: HashMap<(EntityKind, uuid::Uuid), u64>,
    /// The digests of the build in progress; they become `digests` once its snapshot is published.
    pending: HashMap<(EntityKind, uuid::Uuid), u64>,
}

impl Converted {
    fn published(&mut self, snapshot: &Arc<ConfigSnapshot>) {
        self.snapshot = snapshot.clone();
        self.digests = std::mem::take(&mut self.pending);
    }

    /// Copies the converted form of an unchanged row from the last snapshot; `false` when the row changed, is new,
    /// or is of a kind that joins or gathers others (converted every time).
    fn reuse(&self, row: &EntityRow, digest: u64, config: &mut ConfigSnapshot) -> bool {
        if self.digests.get(&(row.kind, row.id)) != Some(&digest) {
            return false;
        }
        let last = &self.snapshot;
        match row.kind {
            EntityKind::Service => copy(&last.services, row.id, |e| e.id, &mut config.services),
            EntityKind::Route => copy(&last.routes, row.id, |e| e.id, &mut config.routes),
            EntityKind::Plugin => copy(&last.plugins, row.id, |e| e.id, &mut config.plugins),
            _ => false,
        }
    }
}

/// Pushes the element of `from` (sorted by id, as a published snapshot is) with this id onto `to`.
fn copy<T: Clone>(from: &[T], id: uuid::Uuid, key: impl Fn(&T) -> uuid::Uuid, to: &mut Vec<T>) -> bool {
    match from.binary_search_by_key(&id, key) {
        Ok(at) => from.get(at).map(|e| to.push(e.clone())).is_some(),
        Err(_) => false,
    }
}

fn row_digest(row: &EntityRow) -> u64 {
    let mut h = DefaultHasher::new();
    (&row.data, &row.endpoint_key).hash(&mut h);
    h.finish()
}

async fn build(
    services: &Services,
    cp: uuid::Uuid,
    changes: &AtomicU64,
    memory: &mut Converted,
) -> Result<ConfigSnapshot, BuildError> {
    // Read before loading: everything announced up to here is in what the load sees.
    let version = changes.load(Ordering::SeqCst);
    let mut config = ConfigSnapshot::empty(Some(cp), version);
    let mut rows = services.store.all_entity_rows(cp).await?;
    // An acl or a key joins its consumer, so consumers go in first.
    rows.sort_by_key(|e| e.kind.joins_another());
    memory.pending.clear();
    for row in rows {
        let digest = row_digest(&row);
        if memory.reuse(&row, digest, &mut config) {
            memory.pending.insert((row.kind, row.id), digest);
            continue;
        }
        let mut data = row.parse()?;
        if row.kind == EntityKind::KeyAuth {
            // The proxy gets the key's keyed hash only; the sealed key stays in the store.
            data.remove("key");
            data.insert("key_hash".into(), row.endpoint_key.map_or(Value::Null, Value::String));
            config.add(row.kind, &data)?;
            continue;
        }
        if secrets::open(&services.keys, row.kind, &mut data) > 0 {
            tracing::warn!(plugin = %row.id, "a plugin keeps secret config values in clear, written before they \
                were sealed; its next update seals them (PATCH /plugins/{{id}} with {{}} will do)");
        }
        config.add(row.kind, &data)?;
        if matches!(row.kind, EntityKind::Service | EntityKind::Route | EntityKind::Plugin) {
            memory.pending.insert((row.kind, row.id), digest);
        }
    }
    config.sort();
    Ok(config)
}
