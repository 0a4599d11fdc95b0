-- Gatehouse schema, version 1 (SQLite). Append-only: never edit a migration once merged; add a new one.
-- Timestamps are microseconds since the Unix epoch; lists and maps are JSON text.

CREATE TABLE gatehouse_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE personal_access_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE auth_servers (
    id                TEXT PRIMARY KEY,
    issuer_key        TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL UNIQUE,
    audience          TEXT NOT NULL,
    description       TEXT NOT NULL,
    signing_algorithm TEXT NOT NULL,
    labels            TEXT NOT NULL,
    trusted_origins   TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    id                    TEXT PRIMARY KEY,
    auth_server_id        TEXT NOT NULL REFERENCES auth_servers (id) ON DELETE CASCADE,
    algorithm             TEXT NOT NULL,
    encrypted_private_key BLOB NOT NULL,
    public_jwk            TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    retired_at            INTEGER
);
CREATE INDEX signing_keys_by_server ON signing_keys (auth_server_id);

CREATE TABLE scopes (
    id                  TEXT PRIMARY KEY,
    auth_server_id      TEXT NOT NULL REFERENCES auth_servers (id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    description         TEXT NOT NULL,
    is_default          BOOLEAN NOT NULL,
    include_in_metadata BOOLEAN NOT NULL,
    enabled             BOOLEAN NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    UNIQUE (auth_server_id, name)
);

CREATE TABLE claims (
    id                    TEXT PRIMARY KEY,
    auth_server_id        TEXT NOT NULL REFERENCES auth_servers (id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    value                 TEXT NOT NULL,
    include_in_token      BOOLEAN NOT NULL,
    include_in_all_scopes BOOLEAN NOT NULL,
    include_in_scopes     TEXT NOT NULL,
    enabled               BOOLEAN NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    UNIQUE (auth_server_id, name)
);

CREATE TABLE clients (
    auth_server_id             TEXT NOT NULL REFERENCES auth_servers (id) ON DELETE CASCADE,
    id                         TEXT NOT NULL,
    name                       TEXT NOT NULL,
    grant_types                TEXT NOT NULL,
    response_types             TEXT NOT NULL,
    redirect_uris              TEXT NOT NULL,
    login_uri                  TEXT,
    access_token_duration      INTEGER NOT NULL,
    id_token_duration          INTEGER NOT NULL,
    allow_all_scopes           BOOLEAN NOT NULL,
    allow_scopes               TEXT NOT NULL,
    labels                     TEXT NOT NULL,
    token_endpoint_auth_method TEXT NOT NULL,
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL,
    PRIMARY KEY (auth_server_id, id),
    UNIQUE (auth_server_id, name)
);

CREATE TABLE client_secrets (
    id             TEXT PRIMARY KEY,
    auth_server_id TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    hash           BLOB NOT NULL,
    enabled        BOOLEAN NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    FOREIGN KEY (auth_server_id, client_id) REFERENCES clients (auth_server_id, id) ON DELETE CASCADE
);
CREATE INDEX client_secrets_by_client ON client_secrets (auth_server_id, client_id);
