-- One key-ordered structure per write. The log is found by its primary key
-- (revision, sub) alone, so a write appends to it; kv_current, the only
-- key-ordered table, points at each live key's newest row by (revision,
-- sub). A row's previous version is (prev_revision, prev_sub), so a watch's
-- prev_kv, a read at a past revision and compaction all follow primary
-- keys, and the (key, revision) index goes.
ALTER TABLE kv_log ADD COLUMN prev_sub INTEGER NOT NULL DEFAULT 0;
UPDATE kv_log l SET prev_sub = p.sub FROM kv_log p
    WHERE l.prev_revision > 0 AND p.key = l.key AND p.revision = l.prev_revision;

ALTER TABLE kv_current ADD COLUMN mod_sub INTEGER NOT NULL DEFAULT 0;
UPDATE kv_current c SET mod_sub = l.sub FROM kv_log l
    WHERE l.key = c.key AND l.revision = c.mod_revision;

DROP INDEX kv_log_key_revision;

-- Room in each page for a key's new pointer, so that updating it is a
-- heap-only update that touches no index.
ALTER TABLE kv_current SET (fillfactor = 70);
