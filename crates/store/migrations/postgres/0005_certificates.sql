-- Version 5 (PostgreSQL): Kong's `snis` reference their certificate, which storage checks on write and whose delete
-- takes its SNIs with it, as it does for the consumer of an acl. `certificates` and `ca_certificates` need no
-- column of their own (a CA certificate's unique digest is its `cache_key`).

ALTER TABLE gateway_entities ADD COLUMN certificate_id TEXT;
CREATE INDEX gateway_entities_by_certificate ON gateway_entities (control_plane_id, certificate_id);
