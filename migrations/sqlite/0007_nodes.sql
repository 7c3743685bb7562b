-- Join tokens, with which agents register, and node credentials, which a
-- registered agent then uses; both stored as SHA-256 hashes.
CREATE TABLE node_join_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash    TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NULL,
    revoked       BOOLEAN NOT NULL
);
-- One credential per node: registering again replaces it.
CREATE TABLE node_credentials (
    node_name     TEXT    NOT NULL PRIMARY KEY,
    token_hash    TEXT    NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);
