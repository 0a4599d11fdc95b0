-- Version 6 (PostgreSQL): Kong's `targets` reference their upstream, which storage checks on write and whose delete
-- takes its targets with it. A target is unique per upstream by its `cache_key` (`upstream|target`).

ALTER TABLE gateway_entities ADD COLUMN upstream_id TEXT;
CREATE INDEX gateway_entities_by_upstream ON gateway_entities (control_plane_id, upstream_id);
