-- One key-ordered structure per write. The log is found by its primary key
-- (revision, sub) alone, so a write appends to it; kv_current, the only
-- key-ordered table, points at each live key's newest row by (revision,
-- sub). A row's previous version is (prev_revision, prev_sub), so a watch's
-- prev_kv, a read at a past revision and compaction all follow primary
-- keys, and the (key, revision) index goes.
ALTER TABLE kv_log ADD COLUMN prev_sub INTEGER NOT NULL DEFAULT 0;
UPDATE kv_log SET prev_sub = COALESCE((SELECT p.sub FROM kv_log p
    WHERE p.key = kv_log.key AND p.revision = kv_log.prev_revision), 0)
    WHERE prev_revision > 0;

ALTER TABLE kv_current ADD COLUMN mod_sub INTEGER NOT NULL DEFAULT 0;
UPDATE kv_current SET mod_sub = COALESCE((SELECT l.sub FROM kv_log l
    WHERE l.key = kv_current.key AND l.revision = kv_current.mod_revision), 0);

DROP INDEX kv_log_key_revision;
