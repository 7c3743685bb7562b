-- Accounts: users, tenants and who belongs to which tenant in which role,
-- beside the revision log.
CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    email          TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,
    platform_admin BOOLEAN NOT NULL,
    created_at_ms  INTEGER NOT NULL
);

CREATE TABLE tenants (
    name          TEXT    NOT NULL PRIMARY KEY,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE memberships (
    tenant  TEXT    NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer')),
    PRIMARY KEY (tenant, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- The key that signs access tokens, shared by every server process.
CREATE TABLE signing_keys (
    id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    secret BLOB    NOT NULL
);
