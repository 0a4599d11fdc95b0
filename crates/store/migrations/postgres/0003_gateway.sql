-- Version 3 (PostgreSQL): Konnect control planes and the Kong entities each one holds.
-- Entities share one table: `data` is the validated entity as Kong returns it (secret fields sealed), and the
-- other columns are what uniqueness, references and listing need.

CREATE TABLE control_planes (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    description   TEXT NOT NULL,
    cluster_type  TEXT NOT NULL,
    auth_type     TEXT NOT NULL,
    cloud_gateway BOOLEAN NOT NULL,
    proxy_urls    TEXT NOT NULL,
    labels        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE gateway_entities (
    control_plane_id TEXT NOT NULL REFERENCES control_planes (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    id               TEXT NOT NULL,
    endpoint_key     TEXT,
    custom_id        TEXT,
    cache_key        TEXT,
    service_id       TEXT,
    route_id         TEXT,
    consumer_id      TEXT,
    name             TEXT,
    tags             TEXT NOT NULL,
    data             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (control_plane_id, kind, id),
    UNIQUE (control_plane_id, kind, endpoint_key),
    UNIQUE (control_plane_id, kind, custom_id),
    UNIQUE (control_plane_id, kind, cache_key)
);
CREATE INDEX gateway_entities_by_service ON gateway_entities (control_plane_id, service_id);
CREATE INDEX gateway_entities_by_route ON gateway_entities (control_plane_id, route_id);
CREATE INDEX gateway_entities_by_consumer ON gateway_entities (control_plane_id, consumer_id);
