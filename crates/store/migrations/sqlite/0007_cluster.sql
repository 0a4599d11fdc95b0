-- Version 7: hybrid mode. A control plane's data planes as they last reported (Konnect's `…/nodes`), kept across
-- control-plane restarts, and the data-plane client certificates it pins (`…/dp-client-certificates`).

CREATE TABLE data_plane_nodes (
    control_plane_id TEXT NOT NULL REFERENCES control_planes (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    hostname TEXT NOT NULL,
    version TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    last_error TEXT,
    last_ping INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (control_plane_id, id)
);

CREATE TABLE dp_client_certificates (
    control_plane_id TEXT NOT NULL REFERENCES control_planes (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    cert TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (control_plane_id, id)
);
