-- The audit log: who did what to which object, and how it ended. Append-only,
-- beside the revision log; read newest first within one tenant. user_id has
-- no foreign key: an entry outlives the account it names.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms      INTEGER NOT NULL,
    user_id    INTEGER NULL,
    user_email TEXT    NOT NULL,
    tenant     TEXT    NULL,
    verb       TEXT    NOT NULL,
    kind       TEXT    NULL,
    name       TEXT    NULL,
    code       INTEGER NOT NULL,
    source     TEXT    NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant, id);
