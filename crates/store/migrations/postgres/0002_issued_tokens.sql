-- Version 2 (PostgreSQL): one record per issued access token, and revocations kept until the token expires.
-- Records are not tied to clients by a foreign key: they are written in batches (group commit) and a client
-- deleted while one of its tokens is being minted must not fail the whole batch; deletes remove them explicitly.

CREATE TABLE issued_tokens (
    id                  TEXT PRIMARY KEY,
    auth_server_id      TEXT NOT NULL,
    client_id           TEXT NOT NULL,
    signing_key_id      TEXT NOT NULL,
    granted_scope_names TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL
);
CREATE INDEX issued_tokens_by_client ON issued_tokens (auth_server_id, client_id, created_at);
CREATE INDEX issued_tokens_by_expiry ON issued_tokens (expires_at);
CREATE INDEX issued_tokens_by_key ON issued_tokens (signing_key_id, expires_at);

CREATE TABLE token_revocations (
    id             TEXT PRIMARY KEY,
    auth_server_id TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX token_revocations_by_client ON token_revocations (auth_server_id, client_id);
CREATE INDEX token_revocations_by_expiry ON token_revocations (expires_at);
