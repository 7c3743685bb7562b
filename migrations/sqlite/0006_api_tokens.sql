-- API tokens: scoped to one tenant and a role, stored as SHA-256 hashes,
-- optionally expiring, revocable.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash    TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant        TEXT    NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    role          TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer')),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NULL,
    revoked       BOOLEAN NOT NULL
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant);
