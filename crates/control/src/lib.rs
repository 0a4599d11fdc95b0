//! The control plane (planned): Konnect's `/v2/control-planes` and core entities, the Kong Admin API, entity
//! validation and plugin schemas, and publishing configuration snapshots to data planes. Depends on `model`,
//! `store` and `runtime`, like `identity`.
