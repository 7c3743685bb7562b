-- Refresh tokens, stored as SHA-256 hashes: long-lived, sliding, revocable.
CREATE TABLE refresh_tokens (
    token_hash    TEXT    NOT NULL PRIMARY KEY,
    user_id       BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at_ms BIGINT  NOT NULL,
    revoked       BOOLEAN NOT NULL
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
