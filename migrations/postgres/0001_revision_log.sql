-- The revision log: one row per key per write. (revision, sub) orders the
-- writes of one transaction; (key, revision) finds a key's history.
CREATE TABLE kv_log (
    revision        BIGINT  NOT NULL,
    sub             INTEGER NOT NULL,
    key             BYTEA   NOT NULL,
    create_revision BIGINT  NOT NULL,
    prev_revision   BIGINT  NOT NULL,
    version         BIGINT  NOT NULL,
    lease           BIGINT  NOT NULL,
    value           BYTEA   NOT NULL,
    deleted         BOOLEAN NOT NULL,
    PRIMARY KEY (revision, sub)
);
CREATE UNIQUE INDEX kv_log_key_revision ON kv_log (key, revision);

-- The live keys and the log row that holds each one's latest version.
CREATE TABLE kv_current (
    key          BYTEA   NOT NULL PRIMARY KEY,
    mod_revision BIGINT  NOT NULL,
    lease        BIGINT  NOT NULL
);
CREATE INDEX kv_current_lease ON kv_current (lease) WHERE lease <> 0;

-- One row: the newest committed revision and the compaction point.
CREATE TABLE store_meta (
    id               INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    revision         BIGINT  NOT NULL,
    compact_revision BIGINT  NOT NULL
);
INSERT INTO store_meta (id, revision, compact_revision) VALUES (1, 1, 0);

-- Leases, with a persisted deadline so that expiry survives a restart.
CREATE TABLE leases (
    id            BIGINT  NOT NULL PRIMARY KEY,
    ttl           BIGINT  NOT NULL,
    expires_at_ms BIGINT  NOT NULL
);
CREATE INDEX leases_expires_at ON leases (expires_at_ms);
